import { add, and, cast, cst, div, ge, if_, int, load, lt, mod, mul, nest, type Ref } from "../build.js";
import type { Expr, Stmt } from "../ir.js";
import type { LowerCtx } from "./types.js";

/** The phases a window of k taps, dilation d, stride s reads along one axis: (i·d) mod s. */
export const phasesRead = (k: number, d: number, s: number): Set<number> => new Set(Array.from({ length: k }, (_, i) => (i * d) % s));

/** Phase p's positions j < extent whose element j·s + p − pad lies inside [0, size): [lo, hi). */
export function inside(size: number, pad: number, p: number, s: number, extent: number): [number, number] {
  const lo = Math.min(extent, Math.max(0, Math.ceil((pad - p) / s)));
  return [lo, Math.max(lo, Math.min(extent, Math.floor((size - 1 + pad - p) / s) + 1))];
}

/** Statements a copied element counts as (a load, a store and their index arithmetic). */
const COPY_WORK = 4;

/**
 * Copies x [N, C, H, W] into `dest` as the sh·sw phases of its zero-padded form:
 * dest[a][b][n][c][r][col] = xpad[n][c][r·sh + a][col·sw + b] for r < Hq, col < Wq, where xpad is x
 * placed at (ph, pw) in zeros. Only the phases `used(a, b)` says are read get copied. Row by row,
 * each row of every phase at once (one loop, so one fork and join of the threads; the sw phases
 * of a row read the same input row, in cache for the next): the columns that fall in the input
 * read it (every sw-th element), the others are zero. Rows outermost and split between
 * threads like a product's columns over the phase grid, so each thread copies about the rows its
 * tiles read and finds them in its own cache: its work counts each element as COPY_WORK
 * statements, which parallelizes copies of 32K elements and more on the default parallelMinWork
 * (ResNet-18 on 2 threads: 0.95–0.96× the time in two A/B runs; every copy in parallel made
 * SqueezeNet at 64×64 15% slower).
 */
export function phaseCopy(c: LowerCtx, x: Ref, dest: Ref, g: { sh: number; sw: number; ph: number; pw: number; Hq: number; Wq: number }, used = (_a: number, _b: number) => true): Stmt[] {
  const { names } = c;
  const [N, C, H, W] = x.shape;
  const { sh, sw, ph, pw, Hq, Wq } = g;
  const phases = Array.from({ length: sh * sw }, (_, i) => [Math.floor(i / sw), i % sw]).filter(([a, bq]) => used(a, bq));
  const rows = nest(names, [Hq, N * C], ([r, nc]) =>
    phases.map(([a, bq]) => {
      const [lo, hi] = inside(W, pw, bq, sw, Wq);
      const at = (col: Expr) => add(mul(add(mul(add(int((a * sw + bq) * N * C), nc), int(Hq)), r), int(Wq)), col);
      const fill = (from: number, to: number, v: (col: Expr) => Expr): Stmt[] =>
        to <= from ? [] : nest(names, [to - from], ([i]) => [{ k: "store", buf: dest.buf, idx: at(add(int(from), i)), val: v(add(int(from), i)) }], false);
      const ih = add(mul(r, int(sh)), int(a - ph));
      const read = (col: Expr) => cast(load(x, [div(nc, int(C)), mod(nc, int(C)), ih, add(mul(col, int(sw)), int(bq - pw))]), "float32");
      const row = [...fill(0, lo, () => cst(0)), ...fill(lo, hi, read), ...fill(hi, Wq, () => cst(0))];
      return if_(and(ge(ih, int(0)), lt(ih, int(H))), row, fill(0, Wq, () => cst(0)));
    }),
  );
  return rows.map((s) => (s.k === "for" ? { ...s, work: COPY_WORK * phases.length * N * C * Hq * Wq } : s));
}
