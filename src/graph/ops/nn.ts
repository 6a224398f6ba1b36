import { isFloat, type DType } from "../../core/dtype.js";
import { fromNumbers, numel, strides, toNumbers, type Tensor } from "../../core/tensor.js";
import { attrInts, attrNum, attrStr, type Node, type Value } from "../ir.js";
import { broadcastShapes, normAxis, opFail, shapeOf, type OpDef, type TypeShape } from "./types.js";

/**
 * Neural-network ops: convolutions, pools, Gemm/MatMul, normalizations and softmax. The window
 * geometry (output size and effective padding per spatial dim) is computed here once and shared with
 * the lowerings in loop/lower/nn.ts, so the graph shapes and the generated loops cannot disagree.
 */

/** Sliding-window geometry over the spatial dims (all dims after N and C). */
export interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** padding before and after each spatial dim (for ConvTranspose: cropped from the full output) */
  padsBegin: number[];
  padsEnd: number[];
  /** output spatial shape */
  out: number[];
}

function spatialAttr(n: Node, key: string, count: number, dflt: number): number[] {
  const v = attrInts(n, key, new Array<number>(count).fill(dflt));
  if (v.length !== count) opFail(n, `attribute ${key} has ${v.length} values, expected ${count}`);
  return v;
}

function autoPad(n: Node): "NOTSET" | "SAME_UPPER" | "SAME_LOWER" | "VALID" {
  const a = attrStr(n, "auto_pad", "NOTSET") || "NOTSET";
  if (a !== "NOTSET" && a !== "SAME_UPPER" && a !== "SAME_LOWER" && a !== "VALID") opFail(n, `auto_pad '${a}' is not supported`);
  return a as "NOTSET" | "SAME_UPPER" | "SAME_LOWER" | "VALID";
}

/** Splits `total` padding per auto_pad: the odd element goes at the end for SAME_UPPER, at the start otherwise. */
const splitPad = (total: number, upper: boolean): [number, number] => {
  const small = Math.floor(total / 2);
  return upper ? [small, total - small] : [total - small, small];
};

/**
 * Geometry of a strided, dilated, padded window (Conv and the pools). ceil_mode rounds the output
 * size up, but a window that would start inside the end padding is dropped (ONNX / PyTorch rule).
 */
export function slidingWindow(n: Node, inSpatial: number[], kernel: number[], ceilMode = false): Window {
  const nd = inSpatial.length;
  const st = spatialAttr(n, "strides", nd, 1);
  const dil = spatialAttr(n, "dilations", nd, 1);
  if ([...st, ...dil, ...kernel].some((v) => v < 1)) opFail(n, "strides, dilations and kernel_shape must be positive");
  const mode = autoPad(n);
  const pads = mode === "NOTSET" ? spatialAttr(n, "pads", 2 * nd, 0) : new Array<number>(2 * nd).fill(0);
  if (pads.some((p) => p < 0)) opFail(n, "negative pads are not supported");
  const w: Window = { kernel, strides: st, dilations: dil, padsBegin: [], padsEnd: [], out: [] };
  for (let d = 0; d < nd; d++) {
    const ext = (kernel[d] - 1) * dil[d] + 1;
    let pB = pads[d], pE = pads[d + nd], out: number;
    if (mode === "SAME_UPPER" || mode === "SAME_LOWER") {
      out = Math.ceil(inSpatial[d] / st[d]);
      [pB, pE] = splitPad(Math.max(0, (out - 1) * st[d] + ext - inSpatial[d]), mode === "SAME_UPPER");
    } else {
      const span = inSpatial[d] + pB + pE - ext;
      out = (ceilMode ? Math.ceil(span / st[d]) : Math.floor(span / st[d])) + 1;
      if (ceilMode && (out - 1) * st[d] >= inSpatial[d] + pB) out--;
    }
    if (out < 1) opFail(n, `the window (${ext} wide in spatial dim ${d}) does not fit the padded input of size ${inSpatial[d] + pB + pE}`);
    w.padsBegin.push(pB);
    w.padsEnd.push(pE);
    w.out.push(out);
  }
  return w;
}

function checkKernelAttr(n: Node, kernel: number[]) {
  const k = n.attrs.kernel_shape;
  if (Array.isArray(k) && (k.length !== kernel.length || k.some((v, i) => v !== kernel[i]))) {
    opFail(n, `kernel_shape [${k.join(",")}] does not match the weights' spatial shape [${kernel.join(",")}]`);
  }
}

function checkFloat(n: Node, d: DType) {
  if (!isFloat(d)) opFail(n, `${d} inputs are not supported (float types only)`);
}

/** Conv: X [N, C, ...], W [M, C/group, ...k], B [M]. */
export function convGeometry(n: Node, x: number[], w: number[], b?: number[]): Window & { group: number } {
  const group = attrNum(n, "group", 1);
  if (x.length < 3) opFail(n, `input must have rank >= 3 (N, C, spatial...), got [${x.join("x")}]`);
  if (w.length !== x.length) opFail(n, `weights [${w.join("x")}] and input [${x.join("x")}] differ in rank`);
  if (group < 1 || x[1] % group || w[0] % group || w[1] * group !== x[1]) {
    opFail(n, `input channels ${x[1]}, weights [${w.join("x")}] and group ${group} are inconsistent`);
  }
  if (b && (b.length !== 1 || b[0] !== w[0])) opFail(n, `bias [${b.join("x")}] must have shape [${w[0]}]`);
  const kernel = w.slice(2);
  checkKernelAttr(n, kernel);
  return { ...slidingWindow(n, x.slice(2), kernel), group };
}

/**
 * ConvTranspose: X [N, C, ...], W [C, M/group, ...k], B [M]. Output size from pads, or pads from
 * output_shape / auto_pad (total padding split like Conv's SAME; extra output_shape beyond the
 * natural size is clamped to zero padding, so the surplus end positions just get the bias).
 */
export function convTransposeGeometry(n: Node, x: number[], w: number[], b?: number[]): Window & { group: number; outChannels: number } {
  const group = attrNum(n, "group", 1);
  if (x.length < 3) opFail(n, `input must have rank >= 3 (N, C, spatial...), got [${x.join("x")}]`);
  if (w.length !== x.length) opFail(n, `weights [${w.join("x")}] and input [${x.join("x")}] differ in rank`);
  if (group < 1 || x[1] % group || w[0] !== x[1]) opFail(n, `input channels ${x[1]}, weights [${w.join("x")}] and group ${group} are inconsistent`);
  const outChannels = w[1] * group;
  if (b && (b.length !== 1 || b[0] !== outChannels)) opFail(n, `bias [${b.join("x")}] must have shape [${outChannels}]`);
  const nd = x.length - 2;
  const kernel = w.slice(2);
  checkKernelAttr(n, kernel);
  const st = spatialAttr(n, "strides", nd, 1);
  const dil = spatialAttr(n, "dilations", nd, 1);
  const outPad = spatialAttr(n, "output_padding", nd, 0);
  if ([...st, ...dil, ...kernel].some((v) => v < 1)) opFail(n, "strides, dilations and kernel_shape must be positive");
  const mode = autoPad(n);
  const pads = mode === "NOTSET" ? spatialAttr(n, "pads", 2 * nd, 0) : new Array<number>(2 * nd).fill(0);
  if (pads.some((p) => p < 0)) opFail(n, "negative pads are not supported");
  const shapeAttr = attrInts(n, "output_shape");
  if (shapeAttr.length && shapeAttr.length !== nd && shapeAttr.length !== nd + 2) {
    opFail(n, `output_shape has ${shapeAttr.length} values, expected ${nd}`);
  }
  const wanted = shapeAttr.slice(-nd);
  const win: Window = { kernel, strides: st, dilations: dil, padsBegin: [], padsEnd: [], out: [] };
  for (let d = 0; d < nd; d++) {
    const full = st[d] * (x[d + 2] - 1) + outPad[d] + (kernel[d] - 1) * dil[d] + 1;
    let pB = pads[d], pE = pads[d + nd];
    if (shapeAttr.length || mode === "SAME_UPPER" || mode === "SAME_LOWER") {
      const out = shapeAttr.length ? wanted[d] : x[d + 2] * st[d];
      [pB, pE] = splitPad(Math.max(0, full - out), mode === "SAME_UPPER");
      pE = full - pB - out;
    } else if (mode === "VALID") {
      pB = pE = 0;
    }
    const out = full - pB - pE;
    if (out < 1) opFail(n, `output spatial dim ${d} would be ${out}`);
    win.padsBegin.push(pB);
    win.padsEnd.push(pE);
    win.out.push(out);
  }
  return { ...win, group, outChannels };
}

/** Pools: X [N, C, ...], kernel_shape attribute required. */
export function poolGeometry(n: Node, x: number[]): Window {
  if (x.length < 3) opFail(n, `input must have rank >= 3 (N, C, spatial...), got [${x.join("x")}]`);
  const kernel = attrInts(n, "kernel_shape");
  if (kernel.length !== x.length - 2) opFail(n, `kernel_shape must have ${x.length - 2} values`);
  return slidingWindow(n, x.slice(2), kernel, attrNum(n, "ceil_mode", 0) !== 0);
}

/**
 * Whether every window of an undilated pool holds at least one element of the map (`size`, its
 * spatial dims): none lies wholly in the padding, so a tap outside the map may read the nearest
 * element of it instead (the window holds that element too), which a max ignores.
 */
export const windowsInMap = (geo: Window, size: number[]) =>
  geo.dilations.every((d) => d === 1) &&
  size.every((d, a) => geo.kernel[a] - 1 - geo.padsBegin[a] >= 0 && (geo.out[a] - 1) * geo.strides[a] - geo.padsBegin[a] <= d - 1);

/** Gemm: A [M, K] (or [K, M] with transA), B [K, N] (or [N, K] with transB). */
export function gemmDims(n: Node, a: number[], b: number[]): { M: number; N: number; K: number } {
  if (a.length !== 2 || b.length !== 2) opFail(n, `A [${a.join("x")}] and B [${b.join("x")}] must be matrices`);
  const [M, K] = attrNum(n, "transA", 0) ? [a[1], a[0]] : a;
  const [Kb, N] = attrNum(n, "transB", 0) ? [b[1], b[0]] : b;
  if (K !== Kb) opFail(n, `inner dimensions differ: A gives ${K}, B gives ${Kb}`);
  return { M, N, K };
}

/**
 * MatMul with numpy semantics: a 1-D A is a row vector [1, K] and a 1-D B a column [K, 1], the
 * added dim being dropped from the result; leading (batch) dims broadcast.
 */
export function matmulShape(n: Node, a: number[], b: number[]): { batch: number[]; M: number; N: number; K: number; out: number[] } {
  if (!a.length || !b.length) opFail(n, "operands must have rank >= 1");
  const a2 = a.length === 1 ? [1, a[0]] : a;
  const b2 = b.length === 1 ? [b[0], 1] : b;
  const K = a2[a2.length - 1];
  if (b2[b2.length - 2] !== K) opFail(n, `inner dimensions differ: [${a.join("x")}] x [${b.join("x")}]`);
  const batch = broadcastShapes(n, [a2.slice(0, -2), b2.slice(0, -2)]);
  const M = a2[a2.length - 2], N = b2[b2.length - 1];
  const out = [...batch, ...(a.length === 1 ? [] : [M]), ...(b.length === 1 ? [] : [N])];
  return { batch, M, N, K, out };
}

/** Softmax's normalized dims: just `axis`, or (legacy coerce2d) every dim from `axis` on. */
export function softmaxAxes(n: Node, rank: number): number[] {
  const axis = normAxis(n, attrNum(n, "axis", n.attrs.coerce2d ? 1 : -1), rank);
  if (!n.attrs.coerce2d) return [axis];
  return Array.from({ length: rank - axis }, (_, i) => axis + i);
}

/** LayerNormalization's normalized dims: `axis` to the end. */
export function layerNormAxes(n: Node, rank: number): number[] {
  const axis = normAxis(n, attrNum(n, "axis", -1), rank);
  return Array.from({ length: rank - axis }, (_, i) => axis + i);
}

function noExtraOutputs(n: Node, from: number, what: string) {
  if (n.outputs.slice(from).some((o) => o)) opFail(n, `${what} is not supported`);
}

function expectShape(n: Node, v: Value | undefined, shape: number[], what: string) {
  const s = shapeOf(n, v, what);
  if (s.length !== shape.length || s.some((d, i) => d !== shape[i])) opFail(n, `${what} [${s.join("x")}] must have shape [${shape.join("x")}]`);
}

// ---- reference evaluation helpers ------------------------------------------------------------

function forEachIndex(shape: number[], fn: (idx: number[]) => void) {
  const total = numel(shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < total; i++) {
    fn(idx);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

/** Flat element indices of each group formed by the dims `axes`, groups in row-major order of the other dims. */
function groups(shape: number[], axes: number[]): number[][] {
  const st = strides(shape);
  const keep = shape.map((_, d) => d).filter((d) => !axes.includes(d));
  const out: number[][] = [];
  forEachIndex(keep.map((d) => shape[d]), (o) => {
    const base = keep.reduce((a, d, i) => a + o[i] * st[d], 0);
    const g: number[] = [];
    forEachIndex(axes.map((d) => shape[d]), (r) => g.push(axes.reduce((a, d, i) => a + r[i] * st[d], base)));
    out.push(g);
  });
  return out;
}

const tensor = (like: Tensor, shape: number[], vals: ArrayLike<number>) => fromNumbers(like.dtype, shape, vals);

/** Index of `idx` (an index into the broadcast result's trailing dims) in a tensor of `shape`. */
function bcastOffset(shape: number[], idx: number[]): number {
  const st = strides(shape);
  const pad = idx.length - shape.length;
  return shape.reduce((a, d, i) => a + (d === 1 ? 0 : idx[i + pad] * st[i]), 0);
}

/** Calls `tap` with the input position of every window tap of every output element `yi` (padding included). */
function evalWindows(geo: Window, yShape: number[], tap: (pos: number[], yi: number[]) => void) {
  forEachIndex(yShape, (yi) => {
    const o = yi.slice(2);
    forEachIndex(geo.kernel, (k) => tap(o.map((od, d) => od * geo.strides[d] - geo.padsBegin[d] + k[d] * geo.dilations[d]), yi));
  });
}

const inside = (pos: number[], lo: number[], hi: number[]) => pos.every((p, d) => p >= lo[d] && p < hi[d]);

function evalPool(n: Node, x: Tensor, avg: boolean): Tensor {
  const geo = poolGeometry(n, x.shape);
  const yShape = [x.shape[0], x.shape[1], ...geo.out];
  const xv = toNumbers(x);
  const xs = strides(x.shape);
  const sp = x.shape.slice(2);
  const includePad = attrNum(n, "count_include_pad", 0) !== 0;
  const y = new Float64Array(numel(yShape));
  const cnt = new Float64Array(y.length);
  y.fill(avg ? 0 : -Infinity);
  const ys = strides(yShape);
  evalWindows(geo, yShape, (pos, yi) => {
    const o = yi.reduce((a, v, d) => a + v * ys[d], 0);
    const real = inside(pos, sp.map(() => 0), sp);
    if (real) {
      const v = xv[yi[0] * xs[0] + yi[1] * xs[1] + pos.reduce((a, p, d) => a + p * xs[d + 2], 0)];
      y[o] = avg ? y[o] + v : Math.max(y[o], v);
    }
    if (includePad ? inside(pos, geo.padsBegin.map((p) => -p), sp.map((s, d) => s + geo.padsEnd[d])) : real) cnt[o]++;
  });
  if (avg) for (let i = 0; i < y.length; i++) y[i] /= cnt[i];
  return tensor(x, yShape, y);
}

function evalConv(n: Node, x: Tensor, w: Tensor, b: Tensor | undefined): Tensor {
  const geo = convGeometry(n, x.shape, w.shape, b?.shape);
  const [N, C] = x.shape;
  const M = w.shape[0], Cg = C / geo.group, Mg = M / geo.group;
  const yShape = [N, M, ...geo.out];
  const xv = toNumbers(x), wv = toNumbers(w), bv = b ? toNumbers(b) : undefined;
  const xs = strides(x.shape), ws = strides(w.shape);
  const sp = x.shape.slice(2);
  const y = new Float64Array(numel(yShape));
  let i = 0;
  forEachIndex(yShape, ([nn, m, ...o]) => {
    const g = Math.floor(m / Mg);
    let acc = bv ? bv[m] : 0;
    for (let ci = 0; ci < Cg; ci++) {
      forEachIndex(geo.kernel, (k) => {
        const pos = o.map((od, d) => od * geo.strides[d] - geo.padsBegin[d] + k[d] * geo.dilations[d]);
        if (!inside(pos, sp.map(() => 0), sp)) return;
        const xi = nn * xs[0] + (g * Cg + ci) * xs[1] + pos.reduce((a, p, d) => a + p * xs[d + 2], 0);
        const wi = m * ws[0] + ci * ws[1] + k.reduce((a, kk, d) => a + kk * ws[d + 2], 0);
        acc += xv[xi] * wv[wi];
      });
    }
    y[i++] = acc;
  });
  return tensor(x, yShape, y);
}

function evalConvTranspose(n: Node, x: Tensor, w: Tensor, b: Tensor | undefined): Tensor {
  const geo = convTransposeGeometry(n, x.shape, w.shape, b?.shape);
  const [N, C] = x.shape;
  const Cg = C / geo.group, Mg = w.shape[1];
  const yShape = [N, geo.outChannels, ...geo.out];
  const ys = strides(yShape), ws = strides(w.shape);
  const xv = toNumbers(x), wv = toNumbers(w), bv = b ? toNumbers(b) : undefined;
  const y = new Float64Array(numel(yShape));
  if (bv) for (let i = 0; i < y.length; i++) y[i] = bv[Math.floor(i / ys[1]) % geo.outChannels];
  // Scatter form: every input element adds its weighted kernel to the output positions it reaches.
  let xi = 0;
  forEachIndex(x.shape, ([nn, c, ...i]) => {
    const g = Math.floor(c / Cg);
    const xval = xv[xi++];
    for (let mg = 0; mg < Mg; mg++) {
      forEachIndex(geo.kernel, (k) => {
        const pos = i.map((id, d) => id * geo.strides[d] + k[d] * geo.dilations[d] - geo.padsBegin[d]);
        if (!inside(pos, pos.map(() => 0), geo.out)) return;
        const yi = nn * ys[0] + (g * Mg + mg) * ys[1] + pos.reduce((a, p, d) => a + p * ys[d + 2], 0);
        y[yi] += xval * wv[c * ws[0] + mg * ws[1] + k.reduce((a, kk, d) => a + kk * ws[d + 2], 0)];
      });
    }
  });
  return tensor(x, yShape, y);
}

function evalSoftmax(n: Node, x: Tensor, log: boolean): Tensor {
  const xv = toNumbers(x);
  const y = new Float64Array(xv.length);
  for (const g of groups(x.shape, softmaxAxes(n, x.shape.length))) {
    const mx = Math.max(...g.map((i) => xv[i]));
    const sum = g.reduce((a, i) => a + Math.exp(xv[i] - mx), 0);
    for (const i of g) y[i] = log ? xv[i] - mx - Math.log(sum) : Math.exp(xv[i] - mx) / sum;
  }
  return tensor(x, x.shape, y);
}

/** Mean and 1/sqrt(var + eps) of each group (two-pass, as ONNX's function bodies define them). */
function moments(xv: number[], g: number[], eps: number): [number, number] {
  const mean = g.reduce((a, i) => a + xv[i], 0) / g.length;
  const v = g.reduce((a, i) => a + (xv[i] - mean) ** 2, 0) / g.length;
  return [mean, 1 / Math.sqrt(v + eps)];
}

// ---- op definitions ------------------------------------------------------------------------

const same = (x: Value | undefined, n: Node): TypeShape[] => [{ dtype: x!.dtype, shape: shapeOf(n, x) }];

/** Global pooling: every spatial position of a channel reduced to one value with `reduce`. */
function globalPool(reduce: (vs: number[]) => number): OpDef {
  const outShape = (xs: number[]) => [xs[0], xs[1], ...xs.slice(2).map(() => 1)];
  return {
    infer(n, [x]) {
      checkFloat(n, x!.dtype);
      const xs = shapeOf(n, x);
      if (xs.length < 2) opFail(n, "input must have rank >= 2");
      return [{ dtype: x!.dtype, shape: outShape(xs) }];
    },
    eval(n, [x]) {
      const xv = toNumbers(x!);
      const gs = groups(x!.shape, x!.shape.slice(2).map((_, i) => i + 2));
      return [tensor(x!, outShape(x!.shape), gs.map((g) => reduce(g.map((i) => xv[i]))))];
    },
  };
}

function softmaxOp(isLog: boolean): OpDef {
  return {
    infer(n, [x]) {
      checkFloat(n, x!.dtype);
      softmaxAxes(n, shapeOf(n, x).length);
      return same(x, n);
    },
    eval: (n, [x]) => [evalSoftmax(n, x!, isLog)],
  };
}

export const NN_OPS: Record<string, OpDef> = {
  Conv: {
    infer(n, [x, w, b]) {
      checkFloat(n, x!.dtype);
      const xs = shapeOf(n, x), ws = shapeOf(n, w, "weights");
      const geo = convGeometry(n, xs, ws, b ? shapeOf(n, b, "bias") : undefined);
      return [{ dtype: x!.dtype, shape: [xs[0], ws[0], ...geo.out] }];
    },
    eval: (n, [x, w, b]) => [evalConv(n, x!, w!, b)],
  },
  ConvTranspose: {
    infer(n, [x, w, b]) {
      checkFloat(n, x!.dtype);
      const xs = shapeOf(n, x), ws = shapeOf(n, w, "weights");
      const geo = convTransposeGeometry(n, xs, ws, b ? shapeOf(n, b, "bias") : undefined);
      return [{ dtype: x!.dtype, shape: [xs[0], geo.outChannels, ...geo.out] }];
    },
    eval: (n, [x, w, b]) => [evalConvTranspose(n, x!, w!, b)],
  },
  MaxPool: {
    infer(n, [x]) {
      noExtraOutputs(n, 1, "MaxPool's Indices output");
      const d = x!.dtype;
      if (!isFloat(d) && d !== "int8" && d !== "uint8") opFail(n, `${d} input is not supported`);
      const xs = shapeOf(n, x);
      return [{ dtype: d, shape: [xs[0], xs[1], ...poolGeometry(n, xs).out] }];
    },
    eval: (n, [x]) => [evalPool(n, x!, false)],
  },
  AveragePool: {
    infer(n, [x]) {
      checkFloat(n, x!.dtype);
      const xs = shapeOf(n, x);
      return [{ dtype: x!.dtype, shape: [xs[0], xs[1], ...poolGeometry(n, xs).out] }];
    },
    eval: (n, [x]) => [evalPool(n, x!, true)],
  },
  GlobalAveragePool: globalPool((vs) => vs.reduce((x, y) => x + y, 0) / vs.length),
  GlobalMaxPool: globalPool((vs) => Math.max(...vs)),
  Gemm: {
    infer(n, [a, b, c]) {
      const { M, N } = gemmDims(n, shapeOf(n, a), shapeOf(n, b));
      if (c && broadcastShapes(n, [[M, N], shapeOf(n, c, "C")]).some((d, i) => d !== [M, N][i])) {
        opFail(n, `C [${c.shape!.join("x")}] does not broadcast to [${M}x${N}]`);
      }
      return [{ dtype: a!.dtype, shape: [M, N] }];
    },
    eval(n, [a, b, c]) {
      const { M, N, K } = gemmDims(n, a!.shape, b!.shape);
      const ta = attrNum(n, "transA", 0), tb = attrNum(n, "transB", 0);
      const alpha = attrNum(n, "alpha", 1), beta = attrNum(n, "beta", 1);
      const av = toNumbers(a!), bv = toNumbers(b!), cv = c ? toNumbers(c) : undefined;
      const y = new Float64Array(M * N);
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let acc = 0;
          for (let k = 0; k < K; k++) acc += av[ta ? k * M + i : i * K + k] * bv[tb ? j * K + k : k * N + j];
          y[i * N + j] = alpha * acc + (cv ? beta * cv[bcastOffset(c!.shape, [i, j])] : 0);
        }
      }
      return [tensor(a!, [M, N], y)];
    },
  },
  MatMul: {
    infer(n, [a, b]) {
      if (a!.dtype !== b!.dtype) opFail(n, `operand types differ (${a!.dtype}, ${b!.dtype})`);
      return [{ dtype: a!.dtype, shape: matmulShape(n, shapeOf(n, a), shapeOf(n, b)).out }];
    },
    eval(n, [a, b]) {
      const { batch, M, N, K, out } = matmulShape(n, a!.shape, b!.shape);
      const a3 = a!.shape.length === 1 ? [1, K] : a!.shape;
      const b3 = b!.shape.length === 1 ? [K, 1] : b!.shape;
      const av = toNumbers(a!), bv = toNumbers(b!);
      const y = new Float64Array(numel(out));
      let o = 0;
      forEachIndex(batch, (bi) => {
        const ao = bcastOffset(a3.slice(0, -2), bi) * M * K, bo = bcastOffset(b3.slice(0, -2), bi) * K * N;
        for (let i = 0; i < M; i++) {
          for (let j = 0; j < N; j++) {
            let acc = 0;
            for (let k = 0; k < K; k++) acc += av[ao + i * K + k] * bv[bo + k * N + j];
            y[o++] = acc;
          }
        }
      });
      return [tensor(a!, out, y)];
    },
  },
  BatchNormalization: {
    infer(n, ins) {
      if (attrNum(n, "training_mode", 0)) opFail(n, "training mode is not supported (inference only)");
      noExtraOutputs(n, 1, "training-mode outputs (running mean/var)");
      checkFloat(n, ins[0]!.dtype);
      const xs = shapeOf(n, ins[0]);
      if (xs.length < 2) opFail(n, "input must have rank >= 2");
      if (attrNum(n, "spatial", 1) === 0 && shapeOf(n, ins[1]).length > 1) opFail(n, "per-activation statistics (spatial=0) are not supported");
      ["scale", "B", "mean", "var"].forEach((what, k) => expectShape(n, ins[k + 1], [xs[1]], what));
      return same(ins[0], n);
    },
    eval(n, [x, s, b, m, v]) {
      const eps = attrNum(n, "epsilon", 1e-5);
      const [sv, bv, mv, vv] = [s!, b!, m!, v!].map(toNumbers);
      const C = x!.shape[1], inner = numel(x!.shape.slice(2));
      const y = toNumbers(x!).map((xv, i) => {
        const c = Math.floor(i / inner) % C;
        return ((xv - mv[c]) * sv[c]) / Math.sqrt(vv[c] + eps) + bv[c];
      });
      return [tensor(x!, x!.shape, y)];
    },
  },
  InstanceNormalization: {
    infer(n, [x, s, b]) {
      checkFloat(n, x!.dtype);
      const xs = shapeOf(n, x);
      if (xs.length < 3) opFail(n, "input must have rank >= 3 (N, C, spatial...)");
      expectShape(n, s, [xs[1]], "scale");
      expectShape(n, b, [xs[1]], "B");
      return same(x, n);
    },
    eval(n, [x, s, b]) {
      const eps = attrNum(n, "epsilon", 1e-5);
      const xv = toNumbers(x!), sv = toNumbers(s!), bv = toNumbers(b!);
      const y = new Float64Array(xv.length);
      groups(x!.shape, x!.shape.slice(2).map((_, i) => i + 2)).forEach((g, gi) => {
        const c = gi % x!.shape[1];
        const [mean, inv] = moments(xv, g, eps);
        for (const i of g) y[i] = (xv[i] - mean) * inv * sv[c] + bv[c];
      });
      return [tensor(x!, x!.shape, y)];
    },
  },
  LayerNormalization: {
    infer(n, [x, s, b]) {
      checkFloat(n, x!.dtype);
      const xs = shapeOf(n, x);
      const axes = layerNormAxes(n, xs.length);
      const inner = xs.slice(axes[0]);
      for (const [v, what] of [[s, "Scale"], [b, "B"]] as const) {
        if (v && broadcastShapes(n, [inner, shapeOf(n, v, what)]).some((d, i) => d !== inner[i])) {
          opFail(n, `${what} [${v.shape!.join("x")}] does not broadcast to the normalized shape [${inner.join("x")}]`);
        }
      }
      const stats = [...xs.slice(0, axes[0]), ...inner.map(() => 1)];
      return [{ dtype: x!.dtype, shape: xs }, { dtype: "float32", shape: stats }, { dtype: "float32", shape: stats }];
    },
    eval(n, [x, s, b]) {
      const eps = attrNum(n, "epsilon", 1e-5);
      const axes = layerNormAxes(n, x!.shape.length);
      const inner = x!.shape.slice(axes[0]);
      const xv = toNumbers(x!), sv = toNumbers(s!), bv = b ? toNumbers(b) : undefined;
      const y = new Float64Array(xv.length);
      const gs = groups(x!.shape, axes);
      const means: number[] = [], invs: number[] = [];
      const innerIdx: number[][] = [];
      forEachIndex(inner, (r) => innerIdx.push([...r]));
      for (const g of gs) {
        const [mean, inv] = moments(xv, g, eps);
        means.push(mean);
        invs.push(inv);
        g.forEach((i, j) => {
          y[i] = (xv[i] - mean) * inv * sv[bcastOffset(s!.shape, innerIdx[j])] + (bv ? bv[bcastOffset(b!.shape, innerIdx[j])] : 0);
        });
      }
      const stats = [...x!.shape.slice(0, axes[0]), ...inner.map(() => 1)];
      return [tensor(x!, x!.shape, y), fromNumbers("float32", stats, means), fromNumbers("float32", stats, invs)];
    },
  },
  Softmax: softmaxOp(false),
  LogSoftmax: softmaxOp(true),
};
