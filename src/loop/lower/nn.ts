import { intRange, isFloat, isSigned, type DType } from "../../core/dtype.js";
import { attrNum } from "../../graph/ir.js";
import {
  convGeometry, convTransposeGeometry, gemmDims, layerNormAxes, matmulShape, poolGeometry, softmaxAxes, type Window,
} from "../../graph/ops/nn.js";
import { opFail } from "../../graph/ops/types.js";
import {
  add, and, cast, cst, div, eq, ge, int, let_, load, loadBroadcast, lt, max, mod, mul, nest, set, store, sub, un, unflat, vr, if_,
  type Names, type Ref,
} from "../build.js";
import type { Expr, Stmt } from "../ir.js";
import type { Lowering } from "./types.js";

/**
 * Lowerings of the neural-network ops: plain, correct loop nests (one kernel per node). The
 * outermost output loop is parallel; reductions run in local accumulators of the working type
 * (float32 for float16/float32, float64 for float64, 64-bit for integer MatMul).
 */

const work = (d: DType): DType => (d === "float64" ? "float64" : isFloat(d) ? "float32" : isSigned(d) ? "int64" : "uint64");
const rd = (r: Ref, idx: Expr[], w: DType) => cast(load(r, idx), w);
const local = (name: string, w: DType) => vr(name, w);
const accumulate = (name: string, w: DType, v: Expr) => set(name, add(local(name, w), v));

/** Whether a position ranging over [min[d], max[d]] can leave [lo[d], hi[d]) in some dim. */
const canLeave = (min: number[], max: number[], lo: number[], hi: number[]) => min.some((m, d) => m < lo[d] || max[d] >= hi[d]);

/**
 * `lo[d] <= pos[d] < hi[d]` for every dim where it can fail, given that pos[d] ranges over
 * [min[d], max[d]]; undefined when no position can leave the range (then no guard is emitted).
 */
function within(pos: Expr[], min: number[], max: number[], lo: number[], hi: number[]): Expr | undefined {
  const conds: Expr[] = [];
  pos.forEach((p, d) => {
    if (min[d] < lo[d]) conds.push(ge(p, int(lo[d])));
    if (max[d] >= hi[d]) conds.push(lt(p, int(hi[d])));
  });
  return conds.length ? conds.reduce((a, b) => and(a, b)) : undefined;
}

const guarded = (c: Expr | undefined, body: Stmt[]): Stmt[] => (c ? [if_(c, body)] : body);

/** Input position o·s − pB + k·d of window tap k of output o. */
const windowPos = (geo: Window, o: Expr[], k: Expr[]) =>
  o.map((od, d) => add(sub(mul(od, int(geo.strides[d])), int(geo.padsBegin[d])), mul(k[d], int(geo.dilations[d]))));

/** The static range of windowPos over all outputs and taps, per dim. */
const windowRange = (geo: Window) => ({
  min: geo.padsBegin.map((p) => -p),
  max: geo.out.map((n, d) => (n - 1) * geo.strides[d] - geo.padsBegin[d] + (geo.kernel[d] - 1) * geo.dilations[d]),
});

/**
 * Conv (N-d, grouped, strided, dilated, padded): for each output (n, m, o...), with g = m / (M/group),
 *   y = bias[m] + Σ_{ci < C/group} Σ_k x[n, g·C/group + ci, o·s − pB + k·d] · w[m, ci, k]
 * where taps landing in the padding are skipped.
 */
const conv: Lowering = ({ node, ins: [x, w, b], outs: [y], names }) => {
  const geo = convGeometry(node, x!.shape, w!.shape, b?.shape);
  const wt = work(y.dtype);
  const Cg = w!.shape[1], Mg = w!.shape[0] / geo.group;
  const sp = x!.shape.slice(2);
  const { min, max } = windowRange(geo);
  return nest(names, y.shape, ([n, m, ...o]) => {
    const acc = names.next("acc");
    const c0 = geo.group === 1 ? int(0) : mul(div(m, int(Mg)), int(Cg));
    const taps = nest(names, [Cg, ...geo.kernel], ([ci, ...k]) => {
      const pos = windowPos(geo, o, k);
      const term = mul(rd(x!, [n, add(c0, ci), ...pos], wt), rd(w!, [m, ci, ...k], wt));
      return guarded(within(pos, min, max, sp.map(() => 0), sp), [accumulate(acc, wt, term)]);
    }, false);
    return [let_(acc, wt, b ? rd(b, [m], wt) : cst(0, wt)), ...taps, store(y, [n, m, ...o], local(acc, wt))];
  });
};

/**
 * ConvTranspose (N-d, grouped), gathered per output: output position o receives input i through tap k
 * when o + pB = i·s + k·d, so for each tap t = o + pB − k·d must be a multiple of s with t/s inside
 * the input:  y[n, m, o] = bias[m] + Σ_{ci < C/group} Σ_k x[n, g·C/group + ci, t/s] · w[g·C/group + ci, m mod M/group, k].
 */
const convTranspose: Lowering = ({ node, ins: [x, w, b], outs: [y], names }) => {
  const geo = convTransposeGeometry(node, x!.shape, w!.shape, b?.shape);
  const wt = work(y.dtype);
  const Cg = x!.shape[1] / geo.group, Mg = w!.shape[1];
  const sp = x!.shape.slice(2);
  return nest(names, y.shape, ([n, m, ...o]) => {
    const acc = names.next("acc");
    const c0 = geo.group === 1 ? int(0) : mul(div(m, int(Mg)), int(Cg));
    const mg = geo.group === 1 ? m : Mg === 1 ? int(0) : mod(m, int(Mg));
    const taps = nest(names, [Cg, ...geo.kernel], ([ci, ...k]) => {
      const t = o.map((od, d) => sub(add(od, int(geo.padsBegin[d])), mul(k[d], int(geo.dilations[d]))));
      const conds: Expr[] = [];
      t.forEach((td, d) => {
        const s = geo.strides[d];
        const tMin = geo.padsBegin[d] - (geo.kernel[d] - 1) * geo.dilations[d];
        const tMax = geo.out[d] - 1 + geo.padsBegin[d];
        // t >= 0 first: && short-circuits, so the division and the load only see valid t
        if (tMin < 0) conds.push(ge(td, int(0)));
        if (s > 1) conds.push(eq(mod(td, int(s)), int(0)));
        if (tMax > (sp[d] - 1) * s) conds.push(lt(td, int((sp[d] - 1) * s + 1)));
      });
      const i = t.map((td, d) => div(td, int(geo.strides[d])));
      const cin = add(c0, ci);
      const term = mul(rd(x!, [n, cin, ...i], wt), rd(w!, [cin, mg, ...k], wt));
      return guarded(conds.length ? conds.reduce((a, c) => and(a, c)) : undefined, [accumulate(acc, wt, term)]);
    }, false);
    return [let_(acc, wt, b ? rd(b, [m], wt) : cst(0, wt)), ...taps, store(y, [n, m, ...o], local(acc, wt))];
  });
};

/** MaxPool: max over the window's in-bounds taps (padding never wins). */
const maxPool: Lowering = ({ node, ins: [x], outs, names }) => {
  if (outs[1]?.buf) opFail(node, "MaxPool's Indices output is not supported");
  const y = outs[0];
  const geo = poolGeometry(node, x!.shape);
  const wt = isFloat(y.dtype) ? work(y.dtype) : y.dtype;
  const sp = x!.shape.slice(2);
  const { min, max: hi } = windowRange(geo);
  return nest(names, y.shape, ([n, c, ...o]) => {
    const acc = names.next("acc");
    const taps = nest(names, geo.kernel, (k) => {
      const pos = windowPos(geo, o, k);
      return guarded(within(pos, min, hi, sp.map(() => 0), sp), [set(acc, max(local(acc, wt), rd(x!, [n, c, ...pos], wt)))]);
    }, false);
    const lowest = isFloat(wt) ? cst(-Infinity, wt) : cst(intRange(wt)[0], wt);
    return [let_(acc, wt, lowest), ...taps, store(y, [n, c, ...o], local(acc, wt))];
  });
};

/**
 * AveragePool: sum of the in-bounds taps divided by the number of taps counted: in-bounds ones, or
 * with count_include_pad those inside the padded extent [−pB, size + pE) (ceil_mode windows can
 * run past it). The count is a constant when no window is clipped.
 */
const averagePool: Lowering = ({ node, ins: [x], outs: [y], names }) => {
  const geo = poolGeometry(node, x!.shape);
  const wt = work(y.dtype);
  const sp = x!.shape.slice(2);
  const includePad = attrNum(node, "count_include_pad", 0) !== 0;
  const { min, max: hi } = windowRange(geo);
  const real = [sp.map(() => 0), sp];
  const countRange = includePad ? [geo.padsBegin.map((p) => -p), sp.map((s, d) => s + geo.padsEnd[d])] : real;
  const counted = canLeave(min, hi, countRange[0], countRange[1]);
  return nest(names, y.shape, ([n, c, ...o]) => {
    const acc = names.next("acc");
    const cnt = names.next("cnt");
    const taps = nest(names, geo.kernel, (k) => {
      const pos = windowPos(geo, o, k);
      const sum = accumulate(acc, wt, rd(x!, [n, c, ...pos], wt));
      const inc = counted ? [set(cnt, add(vr(cnt), int(1)))] : [];
      const inReal = within(pos, min, hi, real[0], real[1]);
      if (!includePad) return guarded(inReal, [sum, ...inc]);
      return [...guarded(inReal, [sum]), ...guarded(within(pos, min, hi, countRange[0], countRange[1]), inc)];
    }, false);
    const divisor = counted ? cast(max(vr(cnt), int(1)), wt) : cst(geo.kernel.reduce((a, b) => a * b, 1), wt);
    return [
      let_(acc, wt, cst(0, wt)),
      ...(counted ? [let_(cnt, "int32", int(0))] : []),
      ...taps,
      store(y, [n, c, ...o], div(local(acc, wt), divisor)),
    ];
  });
};

/**
 * Runs `body` once per index of the dims not in `axes` (a parallel nest); `each(f)` inside it is a
 * sequential nest over the `axes` dims whose body `f` gets the full index.
 */
function perGroup(
  names: Names, shape: number[], axes: number[],
  body: (each: (f: (idx: Expr[]) => Stmt[]) => Stmt[], outer: Expr[]) => Stmt[],
): Stmt[] {
  const keep = shape.map((_, d) => d).filter((d) => !axes.includes(d));
  return nest(names, keep.map((d) => shape[d]), (outer) => {
    const each = (f: (idx: Expr[]) => Stmt[]) =>
      nest(names, axes.map((d) => shape[d]), (red) => f(shape.map((_, d) => (axes.includes(d) ? red[axes.indexOf(d)] : outer[keep.indexOf(d)]))), false);
    return body(each, outer);
  });
}

const spatialAxes = (r: Ref) => r.shape.slice(2).map((_, i) => i + 2);

/** GlobalAveragePool / GlobalMaxPool: one reduction over all spatial dims per (n, c). */
function globalPool(isMax: boolean): Lowering {
  return ({ ins: [x], outs: [y], names }) => {
    const wt = work(y.dtype);
    const spatial = x!.shape.slice(2);
    const count = spatial.reduce((a, b) => a * b, 1);
    // Two spatial axes, contiguous, are walked as one: one vector accumulator per channel rather
    // than a horizontal sum per row, and the index still folds back to one (h·W + w).
    const flatSpatial = spatial.length === 2;
    return perGroup(names, x!.shape, spatialAxes(x!), (perAxis, [n, c]) => {
      const each = flatSpatial ? (f: (idx: Expr[]) => Stmt[]) => nest(names, [count], ([i]) => f([n, c, ...unflat(spatial, i)]), false) : perAxis;
      const acc = names.next("acc");
      const v = (idx: Expr[]) => rd(x!, idx, wt);
      const zeros = spatial.map(() => int(0));
      return [
        let_(acc, wt, isMax ? cst(-Infinity, wt) : cst(0, wt)),
        ...each((idx) => [set(acc, isMax ? max(local(acc, wt), v(idx)) : add(local(acc, wt), v(idx)))]),
        store(y, [n, c, ...zeros], isMax ? local(acc, wt) : div(local(acc, wt), cst(count, wt))),
      ];
    });
  };
}

/** Gemm: Y[i, j] = alpha · Σ_k A'[i, k] · B'[k, j] + beta · C[i, j] (C broadcast; A', B' optionally transposed). */
const gemm: Lowering = ({ node, ins: [a, b, c], outs: [y], names }) => {
  const { K } = gemmDims(node, a!.shape, b!.shape);
  const ta = attrNum(node, "transA", 0), tb = attrNum(node, "transB", 0);
  const alpha = attrNum(node, "alpha", 1), beta = attrNum(node, "beta", 1);
  const wt = work(y.dtype);
  return nest(names, y.shape, ([i, j]) => {
    const acc = names.next("acc");
    const dot = nest(names, [K], ([k]) => [
      accumulate(acc, wt, mul(rd(a!, ta ? [k, i] : [i, k], wt), rd(b!, tb ? [j, k] : [k, j], wt))),
    ], false);
    let r = alpha === 1 ? local(acc, wt) : mul(cst(alpha, wt), local(acc, wt));
    if (c && beta !== 0) {
      const cv = cast(loadBroadcast(c, [i, j]), wt);
      r = add(r, beta === 1 ? cv : mul(cst(beta, wt), cv));
    }
    return [let_(acc, wt, cst(0, wt)), ...dot, store(y, [i, j], r)];
  });
};

/** MatMul (numpy): Y[batch, i, j] = Σ_k A[batch', i, k] · B[batch'', k, j], batch dims broadcast, 1-D operands handled. */
const matmul: Lowering = ({ node, ins: [a, b], outs: [y], names }) => {
  const { batch, K } = matmulShape(node, a!.shape, b!.shape);
  const wt = work(y.dtype);
  const nb = batch.length;
  const batchIdx = (r: Ref, idx: Expr[]) => {
    const bs = r.shape.slice(0, -2);
    return bs.map((d, i) => (d === 1 ? int(0) : idx[i + nb - bs.length]));
  };
  return nest(names, y.shape, (idx) => {
    const acc = names.next("acc");
    const i = a!.shape.length === 1 ? undefined : idx[nb];
    const j = b!.shape.length === 1 ? undefined : idx[idx.length - 1];
    const dot = nest(names, [K], ([k]) => {
      const ai = i ? [...batchIdx(a!, idx), i, k] : [k];
      const bi = j ? [...batchIdx(b!, idx), k, j] : [k];
      return [accumulate(acc, wt, mul(rd(a!, ai, wt), rd(b!, bi, wt)))];
    }, false);
    return [let_(acc, wt, cst(0, wt)), ...dot, store(y, idx, local(acc, wt))];
  });
};

/** BatchNormalization (inference): y = (x − mean[c]) · scale[c] / sqrt(var[c] + eps) + B[c]. */
const batchNorm: Lowering = ({ node, ins: [x, s, b, m, v], outs, names }) => {
  if (outs.slice(1).some((o) => o.buf)) opFail(node, "training-mode outputs (running mean/var) are not supported");
  const y = outs[0];
  const wt = work(y.dtype);
  const eps = cst(attrNum(node, "epsilon", 1e-5), wt);
  return nest(names, y.shape, (idx) => {
    const c = [idx[1]];
    const inv = div(rd(s!, c, wt), un("sqrt", add(rd(v!, c, wt), eps)));
    return [store(y, idx, add(mul(sub(rd(x!, idx, wt), rd(m!, c, wt)), inv), rd(b!, c, wt)))];
  });
};

/**
 * Mean and 1/sqrt(var + eps) over a group, two-pass (mean, then mean squared deviation) as ONNX's
 * function bodies compute them; returns the statements and the names of the two locals.
 */
function moments(names: Names, each: (f: (idx: Expr[]) => Stmt[]) => Stmt[], x: Ref, count: number, eps: number, wt: DType) {
  const mean = names.next("mean"), sq = names.next("var"), inv = names.next("inv");
  const stmts = [
    let_(mean, wt, cst(0, wt)),
    ...each((idx) => [accumulate(mean, wt, rd(x, idx, wt))]),
    set(mean, div(local(mean, wt), cst(count, wt))),
    let_(sq, wt, cst(0, wt)),
    ...each((idx) => {
      const d = sub(rd(x, idx, wt), local(mean, wt));
      return [accumulate(sq, wt, mul(d, d))];
    }),
    let_(inv, wt, div(cst(1, wt), un("sqrt", add(div(local(sq, wt), cst(count, wt)), cst(eps, wt))))),
  ];
  return { stmts, mean: local(mean, wt), inv: local(inv, wt) };
}

/** InstanceNormalization: per (n, c), y = (x − mean) / sqrt(var + eps) · scale[c] + B[c] over the spatial dims. */
const instanceNorm: Lowering = ({ node, ins: [x, s, b], outs: [y], names }) => {
  const wt = work(y.dtype);
  const count = x!.shape.slice(2).reduce((p, q) => p * q, 1);
  return perGroup(names, x!.shape, spatialAxes(x!), (each, [, c]) => {
    const st = moments(names, each, x!, count, attrNum(node, "epsilon", 1e-5), wt);
    const scale = mul(st.inv, rd(s!, [c], wt));
    return [
      ...st.stmts,
      ...each((idx) => [store(y, idx, add(mul(sub(rd(x!, idx, wt), st.mean), scale), rd(b!, [c], wt)))]),
    ];
  });
};

/**
 * LayerNormalization: over the dims from `axis` on, y = (x − mean) · invstd · Scale + B (Scale and B
 * broadcast over the normalized dims); Mean and InvStdDev are stored when requested.
 */
const layerNorm: Lowering = ({ node, ins: [x, s, b], outs: [y, meanOut, invOut], names }) => {
  const wt = work(y.dtype);
  const axes = layerNormAxes(node, x!.shape.length);
  const count = axes.reduce((p, d) => p * x!.shape[d], 1);
  return perGroup(names, x!.shape, axes, (each, outer) => {
    const st = moments(names, each, x!, count, attrNum(node, "epsilon", 1e-5), wt);
    const statIdx = [...outer, ...axes.map(() => int(0))];
    const stats = [meanOut && meanOut.buf ? [store(meanOut, statIdx, st.mean)] : [], invOut && invOut.buf ? [store(invOut, statIdx, st.inv)] : []].flat();
    return [
      ...st.stmts,
      ...stats,
      ...each((idx) => {
        const inner = idx.slice(axes[0]);
        let r = mul(mul(sub(rd(x!, idx, wt), st.mean), st.inv), cast(loadBroadcast(s!, inner), wt));
        if (b) r = add(r, cast(loadBroadcast(b, inner), wt));
        return [store(y, idx, r)];
      }),
    ];
  });
};

/**
 * Softmax / LogSoftmax over `axis` (or, legacy coerce2d, over all dims from axis on), numerically
 * stable: m = max x, s = Σ exp(x − m), then exp(x − m) / s or x − m − log s.
 */
function softmax(isLog: boolean): Lowering {
  return ({ node, ins: [x], outs: [y], names }) => {
    const wt = work(y.dtype);
    return perGroup(names, x!.shape, softmaxAxes(node, x!.shape.length), (each) => {
      const mx = names.next("max"), sum = names.next("sum");
      const shifted = (idx: Expr[]) => sub(rd(x!, idx, wt), local(mx, wt));
      return [
        let_(mx, wt, cst(-Infinity, wt)),
        ...each((idx) => [set(mx, max(local(mx, wt), rd(x!, idx, wt)))]),
        let_(sum, wt, cst(0, wt)),
        ...each((idx) => [accumulate(sum, wt, un("exp", shifted(idx)))]),
        ...(isLog
          ? [set(sum, un("log", local(sum, wt))), ...each((idx) => [store(y, idx, sub(shifted(idx), local(sum, wt)))])]
          : [set(sum, div(cst(1, wt), local(sum, wt))), ...each((idx) => [store(y, idx, mul(un("exp", shifted(idx)), local(sum, wt)))])]),
      ];
    });
  };
}

export const NN_LOWERINGS: Record<string, Lowering> = {
  Conv: conv,
  ConvTranspose: convTranspose,
  MaxPool: maxPool,
  AveragePool: averagePool,
  GlobalAveragePool: globalPool(false),
  GlobalMaxPool: globalPool(true),
  Gemm: gemm,
  MatMul: matmul,
  BatchNormalization: batchNorm,
  InstanceNormalization: instanceNorm,
  LayerNormalization: layerNorm,
  Softmax: softmax(false),
  LogSoftmax: softmax(true),
};
