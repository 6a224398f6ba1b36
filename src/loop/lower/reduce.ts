import { intRange, isFloat, isSigned, type DType } from "../../core/dtype.js";
import { toNumbers } from "../../core/tensor.js";
import { reduceAxes, reducedShape, REDUCE_OP_NAMES } from "../../graph/ops/reduce.js";
import { opFail } from "../../graph/ops/types.js";
import { add, bin, cast, cst, div, eq, let_, load, max, min, mul, nest, select, set, store, un, vr } from "../build.js";
import type { Expr, Stmt } from "../ir.js";
import type { LowerCtx, Lowering } from "./types.js";

/**
 * Reductions: a parallel loop nest over the output; per output element a local accumulator is
 * initialised, an inner loop nest over the reduced axes folds the matching input elements into it,
 * and the finished value is stored. Floats accumulate in float32 (float64 for float64); integer
 * sums and products in 64-bit, so intermediate results cannot overflow the input type; Max/Min in
 * the element type itself. ReduceLogSumExp makes two passes (max, then sum of exp(x - max)) so
 * large inputs do not overflow exp.
 */

interface Fold {
  acc(x: DType): DType;
  init(acc: DType): Expr;
  step(acc: Expr, x: Expr): Expr;
  finish(acc: Expr, count: number): Expr;
}

const floatAcc = (d: DType): DType => (d === "float64" ? "float64" : isFloat(d) ? "float32" : "float64");
const sumAcc = (d: DType): DType => (isFloat(d) ? floatAcc(d) : isSigned(d) ? "int64" : "uint64");
const ownAcc = (d: DType): DType => (d === "float16" ? "float32" : d);
const zero = (d: DType) => cst(0, d);
const id = (a: Expr) => a;
const absOf = (x: Expr) => (isSigned(x.dtype) ? un("abs", x) : x);

/** The largest (hi) or smallest value of a type, as a constant the C renderer prints exactly. */
function extreme(d: DType, hi: boolean): Expr {
  if (isFloat(d)) return cst(hi ? Infinity : -Infinity, d);
  if (d === "int64") return { k: "const", dtype: d, v: hi ? 2n ** 63n - 1n : -(2n ** 63n) };
  if (d === "uint64") return { k: "const", dtype: d, v: hi ? 2n ** 64n - 1n : 0n };
  return cst(intRange(d)[hi ? 1 : 0], d);
}

const mean = (a: Expr, count: number) => (count ? div(a, cst(count, a.dtype)) : a);

const FOLDS: Record<string, Fold> = {
  ReduceSum: { acc: sumAcc, init: zero, step: add, finish: id },
  ReduceMean: { acc: sumAcc, init: zero, step: add, finish: mean },
  ReduceMax: { acc: ownAcc, init: (d) => extreme(d, false), step: max, finish: id },
  ReduceMin: { acc: ownAcc, init: (d) => extreme(d, true), step: min, finish: id },
  ReduceProd: { acc: sumAcc, init: (d) => cst(1, d), step: mul, finish: id },
  ReduceL1: { acc: sumAcc, init: zero, step: (a, x) => add(a, absOf(x)), finish: id },
  ReduceL2: { acc: floatAcc, init: zero, step: (a, x) => add(a, mul(x, x)), finish: (a) => un("sqrt", a) },
  ReduceSumSquare: { acc: sumAcc, init: zero, step: (a, x) => add(a, mul(x, x)), finish: id },
};

function lowerReduce({ node, ins, outs, names }: LowerCtx): Stmt[] {
  const x = ins[0]!;
  const out = outs[0];
  const axesIn = ins[1];
  if (axesIn && !axesIn.data) opFail(node, "axes must be a constant");
  const rank = x.shape.length;
  const axes = reduceAxes(node, rank, axesIn?.data ? toNumbers(axesIn.data) : []);
  if (!axes) return nest(names, out.shape, (idx) => [store(out, idx, load(x, idx))]);
  const keep = reducedShape(node, x.shape, axes).length === rank;
  const extents = axes.map((a) => x.shape[a]);
  const count = extents.reduce((a, b) => a * b, 1);

  return nest(names, out.shape, (oIdx) => {
    /** Input index from the output index and the reduced axes' loop variables. */
    const inIdx = (rIdx: Expr[]): Expr[] => {
      let kept = 0;
      return x.shape.map((_, d) => {
        const r = axes.indexOf(d);
        if (r >= 0) return rIdx[r];
        return oIdx[keep ? d : kept++];
      });
    };
    const overReduced = (body: (xv: Expr) => Stmt[]) => nest(names, extents, (rIdx) => body(load(x, inIdx(rIdx))), false);

    if (node.op === "ReduceLogSumExp") {
      const w = floatAcc(x.dtype);
      const m = names.next("mx"), s = names.next("acc"), sh = names.next("sh");
      const inf = cst(Infinity, w);
      return [
        let_(m, w, cst(-Infinity, w)),
        ...overReduced((xv) => [set(m, max(vr(m, w), cast(xv, w)))]),
        // Shift by the max unless it is infinite (all -inf, or an inf input): exp then handles it.
        let_(sh, w, select(eq(un("abs", vr(m, w)), inf), zero(w), vr(m, w))),
        let_(s, w, zero(w)),
        ...overReduced((xv) => [set(s, add(vr(s, w), un("exp", bin("-", cast(xv, w), vr(sh, w)))))]),
        store(out, oIdx, add(vr(sh, w), un("log", vr(s, w)))),
      ];
    }
    const f = FOLDS[node.op];
    const w = f.acc(x.dtype);
    const a = names.next("acc");
    return [
      let_(a, w, f.init(w)),
      ...overReduced((xv) => [set(a, f.step(vr(a, w), cast(xv, w)))]),
      store(out, oIdx, f.finish(vr(a, w), count)),
    ];
  });
}

export const REDUCE_LOWERINGS: Record<string, Lowering> = Object.fromEntries(REDUCE_OP_NAMES.map((op) => [op, lowerReduce]));
