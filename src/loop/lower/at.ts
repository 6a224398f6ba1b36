import { nest, store, unflat, type Ref } from "../build.js";
import type { Expr } from "../ir.js";
import type { LowerCtx, Lowering } from "./types.js";

/**
 * The expression form of an op: its output value at a multi-dimensional index, as an expression of
 * its inputs' values. Fusion inlines these into consumers (a producer computed where it is read)
 * and into epilogues; an op's kernel is then just a loop nest storing `at` over its output.
 */
export type At = (c: LowerCtx) => (idx: Expr[]) => Expr;

/**
 * Whether the last two axes of the output are worth running as one loop on a CPU (any nest may; the
 * index is unflattened again): its rows are not a whole number of vectors (a 14-wide row on 16
 * lanes runs as an 8- and a 4-lane vector and two scalars), and every input either spans both
 * axes or is broadcast along both, so the flat position reads each one contiguously (a per-channel
 * scale, say) and whole vectors run across rows. Only the direct inputs are checked: a producer
 * inlined into one that reads it elsewhere (a crop) can still leave the merged loop scalar.
 */
function rowsRunTogether(c: LowerCtx, out: number[]): boolean {
  const lanes = c.cpu?.lanes ?? 1;
  if (lanes < 2 || out.length < 2 || out[out.length - 1] % lanes === 0 || out[out.length - 2] === 1) return false;
  const tail = (s: number[]) => [s[s.length - 2] ?? 1, s[s.length - 1] ?? 1];
  const [h, w] = tail(out);
  return c.ins.every((r) => {
    if (!r) return true;
    const [a, b] = tail(r.shape);
    return (a === h && b === w) || (a === 1 && b === 1);
  });
}

export const fromAt =
  (at: At): Lowering =>
  (c) => {
    const f = at(c);
    const out: Ref = c.outs[0];
    if (!rowsRunTogether(c, out.shape)) return nest(c.names, out.shape, (idx) => [store(out, idx, f(idx))]);
    const rows = out.shape.slice(-2);
    return nest(c.names, [...out.shape.slice(0, -2), rows[0] * rows[1]], (idx) => {
      const full = [...idx.slice(0, -1), ...unflat(rows, idx[idx.length - 1])];
      return [store(out, full, f(full))];
    });
  };
