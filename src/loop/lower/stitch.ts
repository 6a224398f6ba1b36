import { add, cst, div, int, max } from "../build.js";
import type { Expr } from "../ir.js";

/**
 * Reductions stitched into the epilogue of the kernel that produces their input (select-fusion's
 * stitchable): each result the kernel stores is folded into the reduced element it belongs
 * to instead of being written. Threads fold into partial results of their own (the kernel's
 * parallel loop may split one reduced element between them), which start at `init` and are
 * combined and finished after the kernel's loops.
 */
export interface Stitch {
  init: number;
  combine: (acc: Expr, x: Expr) => Expr;
  /** the reduced value from the combined partials, `count` input elements per output element */
  finish: (acc: Expr, count: number) => Expr;
  /** the output element (of `rank` axes) an input element at `idx` folds into */
  into: (idx: Expr[], rank: number) => Expr[];
}

/** (n, c) and the spatial axes kept as 1, if the output keeps them. */
const perChannel = (idx: Expr[], rank: number) => [idx[0], idx[1], ...Array.from({ length: rank - 2 }, () => int(0))];
const mean: Stitch = { init: 0, combine: add, finish: (a, count) => div(a, cst(count)), into: perChannel };
const largest: Stitch = { init: -Infinity, combine: max, finish: (a) => a, into: perChannel };

export const STITCH: Record<string, Stitch> = {
  GlobalAveragePool: mean,
  ReduceMean: mean,
  GlobalMaxPool: largest,
  ReduceMax: largest,
};
