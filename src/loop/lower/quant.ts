import { intRange, type DType } from "../../core/dtype.js";
import { numel } from "../../core/tensor.js";
import type { Node } from "../../graph/ir.js";
import { convGeometry, matmulShape } from "../../graph/ops/nn.js";
import {
  convParam, dequantizedType, granularity, matmulParam, quantizedType, quantWork, scaleIndex,
} from "../../graph/ops/quant.js";
import {
  add, and, cast, cst, div, ge, if_, int, let_, load, loadBroadcast, lt, max, min, mul, nest, set, store, sub, un, vr,
  type Ref,
} from "../build.js";
import type { Expr, Stmt } from "../ir.js";
import type { LowerCtx, Lowering } from "./types.js";

/**
 * Quantization kernels, all as plain loop nests:
 * - QuantizeLinear: y = saturate(round_half_even(x / scale) + zero_point), in float32 (float64 when an
 *   operand is float64); the scale and zero point are read per tensor, per axis or per block.
 * - DequantizeLinear: y = (x - zero_point) * scale.
 * - MatMulInteger / ConvInteger: int32 sums of (a - a_zp) * (b - b_zp). The products fit in int32;
 *   the sum accumulates in uint32, which wraps modulo 2^32 as the spec allows without signed-overflow UB.
 * - QLinearMatMul / QLinearConv: the same integer sum (plus the int32 bias for QLinearConv), requantized
 *   as saturate(round_half_even(sum * (s_a * s_b / s_y)) + y_zp) in float32.
 * Convolutions are direct loop nests over (output, input channel of the group, kernel window); window
 * positions that fall into the padding are skipped by a guard, which equals padding x with its zero
 * point, and the guard is only emitted for dims where the window can actually leave the input.
 */

const i32 = (e: Expr) => cast(e, "int32");

/** Clamps a rounded float to `d`'s range; the store then converts it exactly. */
function saturate(v: Expr, d: DType): Expr {
  const [lo, hi] = intRange(d);
  return min(max(v, cst(lo, v.dtype)), cst(hi, v.dtype));
}

const quantizeLinear: Lowering = ({ node, ins: [x, s, zp], outs: [y], names }) => {
  const x_ = x!, s_ = s!;
  const g = granularity(node, x_.shape, s_.shape, zp?.shape);
  const w = quantWork(node, x_.dtype, s_.dtype);
  const yt = quantizedType(node, zp?.dtype);
  return nest(names, y.shape, (idx) => {
    const si = scaleIndex(g, s_.shape.length, idx, int(0), (e, b) => div(e, int(b)));
    let q = un("round", div(cast(load(x_, idx), w), cast(load(s_, si), w)));
    if (zp) q = add(q, cast(load(zp, si), w));
    return [store(y, idx, saturate(q, yt))];
  });
};

const dequantizeLinear: Lowering = ({ node, ins: [x, s, zp], outs: [y], names }) => {
  const x_ = x!, s_ = s!;
  const g = granularity(node, x_.shape, s_.shape, zp?.shape);
  const w = quantWork(node, dequantizedType(node, s_.dtype), s_.dtype);
  return nest(names, y.shape, (idx) => {
    const si = scaleIndex(g, s_.shape.length, idx, int(0), (e, b) => div(e, int(b)));
    let v = cast(load(x_, idx), w);
    if (zp) v = sub(v, cast(load(zp, si), w));
    return [store(y, idx, mul(v, cast(load(s_, si), w)))];
  });
};

/** Reads a per-row (A) / per-column (B) matmul parameter for output batch index `batch` and row/column `rc`. */
function matmulParamAt(node: Node, p: Ref, op: number[], side: "a" | "b", batch: Expr[], rc: Expr): Expr {
  switch (matmulParam(node, p.shape, op, side, "parameter")) {
    case "scalar": return load(p, p.shape.map(() => int(0)));
    case "vector": return load(p, [rc]);
    case "broadcast": return loadBroadcast(p, side === "a" ? [...batch, rc, int(0)] : [...batch, int(0), rc]);
  }
}

/** The operand's element for output batch index `batch`, numpy-broadcasting its batch dims. */
function operandAt(r: Ref, batch: Expr[], row: Expr, col: Expr, vectorDrop: "row" | "col"): Expr {
  if (r.shape.length === 1) return load(r, [vectorDrop === "row" ? col : row]);
  const own = r.shape.slice(0, -2);
  const pad = batch.length - own.length;
  return load(r, [...own.map((d, i) => (d === 1 ? int(0) : batch[i + pad])), row, col]);
}

/**
 * Shared matmul loop: out[batch, m, n] = finish(sum_k (a - a_zp(m)) * (b - b_zp(n)), batch, m, n).
 * `a_zp` and `b_zp` are parameters laid out per tensor / row / column.
 */
function matmulLoop(
  { node, names }: LowerCtx, a: Ref, b: Ref, azp: Ref | undefined, bzp: Ref | undefined, y: Ref,
  finish: (acc: Expr, batch: Expr[], m: Expr, n: Expr) => Expr,
): Stmt[] {
  const { batch, K } = matmulShape(node, a.shape, b.shape);
  const nb = batch.length;
  return nest(names, y.shape, (idx) => {
    const bi = idx.slice(0, nb);
    const m = a.shape.length === 1 ? int(0) : idx[nb];
    const n = b.shape.length === 1 ? int(0) : idx[idx.length - 1];
    const acc = names.next("acc");
    const body = nest(names, [K], ([k]) => {
      const av = sub(i32(operandAt(a, bi, m, k, "row")), azp ? i32(matmulParamAt(node, azp, a.shape, "a", bi, m)) : int(0));
      const bv = sub(i32(operandAt(b, bi, k, n, "col")), bzp ? i32(matmulParamAt(node, bzp, b.shape, "b", bi, n)) : int(0));
      return [set(acc, add(vr(acc, "uint32"), cast(mul(av, bv), "uint32")))];
    }, false);
    return [let_(acc, "uint32", cst(0, "uint32")), ...body, store(y, idx, finish(i32(vr(acc, "uint32")), bi, m, n))];
  });
}

/** saturate(round(acc * s_a * s_b / s_y) + y_zp) for the output type, in float32. */
function requantize(acc: Expr, sa: Expr, sb: Expr, sy: Expr, yzp: Expr | undefined, yt: DType): Expr {
  const f = (e: Expr) => cast(e, "float32");
  const scale = div(mul(f(sa), f(sb)), f(sy));
  let v = un("round", mul(f(acc), scale));
  if (yzp) v = add(v, f(yzp));
  return saturate(v, yt);
}

const scalarAt = (r: Ref) => load(r, r.shape.map(() => int(0)));

const matMulInteger: Lowering = (c) => {
  const [a, b, azp, bzp] = c.ins;
  return matmulLoop(c, a!, b!, azp, bzp, c.outs[0], (acc) => acc);
};

const qlinearMatMul: Lowering = (c) => {
  const [a, sa, azp, b, sb, bzp, sy, yzp] = c.ins;
  const y = c.outs[0];
  return matmulLoop(c, a!, b!, azp, bzp, y, (acc, bi, m, n) =>
    requantize(
      acc,
      matmulParamAt(c.node, sa!, a!.shape, "a", bi, m),
      matmulParamAt(c.node, sb!, b!.shape, "b", bi, n),
      scalarAt(sy!),
      yzp && scalarAt(yzp),
      y.dtype,
    ),
  );
};

/**
 * Shared direct convolution: out[n, m, o...] = finish(bias[m] + sum over (c, k...) of
 * (x[n, g*C/G + c, o*s - pb + k*d] - x_zp) * (w[m, c, k...] - w_zp(m)), m).
 */
function convLoop(
  { node, names }: LowerCtx, x: Ref, w: Ref, xzp: Ref | undefined, wzp: Ref | undefined, bias: Ref | undefined, y: Ref,
  finish: (acc: Expr, m: Expr) => Expr,
): Stmt[] {
  const geo = convGeometry(node, x.shape, w.shape, bias?.shape);
  const inSp = x.shape.slice(2);
  const cPerGroup = w.shape[1];
  const mPerGroup = w.shape[0] / geo.group;
  const wzpAt = (m: Expr) => (!wzp ? int(0) : convParam(node, wzp.shape, w.shape[0], "w zero point") === "scalar" ? i32(scalarAt(wzp)) : i32(load(wzp, [m])));
  return nest(names, y.shape, ([nIdx, m, ...o]) => {
    const acc = names.next("acc");
    const body = nest(names, [cPerGroup, ...geo.kernel], ([ci, ...k]) => {
      const channel = geo.group === 1 ? ci : add(mul(div(m, int(mPerGroup)), int(cPerGroup)), ci);
      const pos = o.map((od, d) => add(sub(mul(od, int(geo.strides[d])), int(geo.padsBegin[d])), mul(k[d], int(geo.dilations[d]))));
      const checks: Expr[] = [];
      pos.forEach((p, d) => {
        const lowest = -geo.padsBegin[d];
        const highest = (geo.out[d] - 1) * geo.strides[d] - geo.padsBegin[d] + (geo.kernel[d] - 1) * geo.dilations[d];
        if (lowest < 0) checks.push(ge(p, int(0)));
        if (highest >= inSp[d]) checks.push(lt(p, int(inSp[d])));
      });
      const xv = sub(i32(load(x, [nIdx, channel, ...pos])), xzp ? i32(scalarAt(xzp)) : int(0));
      const wv = sub(i32(load(w, [m, ci, ...k])), wzpAt(m));
      const step = set(acc, add(vr(acc, "uint32"), cast(mul(xv, wv), "uint32")));
      return checks.length ? [if_(checks.reduce((p, q) => and(p, q)), [step])] : [step];
    }, false);
    const init = bias ? cast(load(bias, [m]), "uint32") : cst(0, "uint32");
    return [let_(acc, "uint32", init), ...body, store(y, [nIdx, m, ...o], finish(i32(vr(acc, "uint32")), m))];
  });
}

const convInteger: Lowering = (c) => {
  const [x, w, xzp, wzp] = c.ins;
  return convLoop(c, x!, w!, xzp, wzp, undefined, c.outs[0], (acc) => acc);
};

const qlinearConv: Lowering = (c) => {
  const [x, sx, xzp, w, sw, wzp, sy, yzp, bias] = c.ins;
  const y = c.outs[0];
  const swAt = (m: Expr) => (numel(sw!.shape) === 1 ? scalarAt(sw!) : load(sw!, [m]));
  return convLoop(c, x!, w!, xzp, wzp, bias, y, (acc, m) => requantize(acc, scalarAt(sx!), swAt(m), scalarAt(sy!), yzp && scalarAt(yzp), y.dtype));
};

export const QUANT_LOWERINGS: Record<string, Lowering> = {
  QuantizeLinear: quantizeLinear,
  DequantizeLinear: dequantizeLinear,
  MatMulInteger: matMulInteger,
  QLinearMatMul: qlinearMatMul,
  ConvInteger: convInteger,
  QLinearConv: qlinearConv,
};
