import { nest, store, type Ref } from "../build.js";
import type { Expr } from "../ir.js";
import type { LowerCtx, Lowering } from "./types.js";

/**
 * The expression form of an op: its output value at a multi-dimensional index, as an expression of
 * its inputs' values. Fusion inlines these into consumers (a producer computed where it is read)
 * and into epilogues; an op's kernel is then just a loop nest storing `at` over its output.
 */
export type At = (c: LowerCtx) => (idx: Expr[]) => Expr;

export const fromAt =
  (at: At): Lowering =>
  (c) => {
    const f = at(c);
    const out: Ref = c.outs[0];
    return nest(c.names, out.shape, (idx) => [store(out, idx, f(idx))]);
  };
