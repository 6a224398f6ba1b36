import { fromNumbers, numel, strides, toNumbers, type Tensor } from "../../core/tensor.js";
import { attrInts, attrNum, attrStr, type Node, type Value } from "../ir.js";
import { normAxis, opFail, shapeOf, type OpDef } from "./types.js";

/**
 * Resize in its opset-19 form: X, roi?, scales?, sizes?. Shapes are static, so scales / sizes (and
 * roi for tf_crop_and_resize) must be constants; `resizePlan` turns them and the attributes into one
 * mapping per axis, shared by shape inference, the reference evaluator here and the lowering.
 * Each output coordinate x maps to an input coordinate x_original per coordinate_transformation_mode;
 * nearest picks one input index from it, linear and cubic weight the neighbouring indices (edge
 * values repeat beyond the borders), and with antialias the filter is stretched by 1/scale when
 * downscaling.
 */

export const COORD_MODES = [
  "half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_crop_and_resize", "tf_half_pixel_for_nn",
] as const;
export type CoordMode = (typeof COORD_MODES)[number];
export const NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"] as const;
export type NearestMode = (typeof NEAREST_MODES)[number];

/** How one axis is resampled. */
export interface AxisPlan {
  inLen: number;
  outLen: number;
  scale: number;
  /** tf_crop_and_resize region, as fractions of the input */
  roiStart: number;
  roiEnd: number;
  /** x_original == x for every output x: the axis is copied, not resampled */
  identity: boolean;
}

export interface ResizePlan {
  mode: "nearest" | "linear" | "cubic";
  coord: CoordMode;
  nearest: NearestMode;
  cubicA: number;
  excludeOutside: boolean;
  antialias: boolean;
  extrapolation: number;
  axes: AxisPlan[];
  outShape: number[];
}

function pick<T extends string>(n: Node, key: string, dflt: T, allowed: readonly T[]): T {
  const v = attrStr(n, key, dflt) as T;
  if (!allowed.includes(v)) opFail(n, `${key} '${v}' is not supported (${allowed.join(", ")})`);
  return v;
}

/** The mapping for X of shape `x`, given the constant roi / scales / sizes (undefined when absent). */
export function resizePlan(n: Node, x: number[], roi?: number[], scales?: number[], sizes?: number[]): ResizePlan {
  const rank = x.length;
  const mode = pick(n, "mode", "nearest", ["nearest", "linear", "cubic"] as const);
  const coord = pick(n, "coordinate_transformation_mode", "half_pixel", COORD_MODES);
  const nearest = pick(n, "nearest_mode", "round_prefer_floor", NEAREST_MODES);
  const policy = pick(n, "keep_aspect_ratio_policy", "stretch", ["stretch", "not_larger", "not_smaller"] as const);
  const axesAttr = attrInts(n, "axes", [...Array(rank).keys()]).map((a) => normAxis(n, a, rank));
  if (new Set(axesAttr).size !== axesAttr.length) opFail(n, `axes [${axesAttr.join(", ")}] name an axis twice`);
  const k = axesAttr.length;
  if (scales && !scales.length) scales = undefined;
  if (sizes && !sizes.length) sizes = undefined;
  if (!scales === !sizes) opFail(n, "exactly one of scales and sizes must be given");
  const given = (scales ?? sizes)!;
  if (given.length !== k) opFail(n, `${scales ? "scales" : "sizes"} has ${given.length} values, expected ${k} (one per resized axis)`);

  const scale = new Array<number>(rank).fill(1);
  const outShape = [...x];
  if (scales) {
    axesAttr.forEach((a, i) => {
      if (!(scales![i] > 0)) opFail(n, `scale ${scales![i]} must be positive`);
      scale[a] = scales![i];
      outShape[a] = Math.floor(x[a] * scales![i]);
    });
  } else if (policy === "stretch") {
    axesAttr.forEach((a, i) => ((outShape[a] = sizes![i]), (scale[a] = sizes![i] / x[a])));
  } else {
    const ratios = axesAttr.map((a, i) => sizes![i] / x[a]);
    const s = policy === "not_larger" ? Math.min(...ratios) : Math.max(...ratios);
    axesAttr.forEach((a) => ((scale[a] = s), (outShape[a] = Math.floor(s * x[a] + 0.5))));
  }
  if (outShape.some((d) => d < 1) || x.some((d) => d < 1)) opFail(n, `resizing [${x.join("x")}] gives an empty output [${outShape.join("x")}]`);

  const starts = new Array<number>(rank).fill(0), ends = new Array<number>(rank).fill(1);
  if (coord === "tf_crop_and_resize") {
    if (!roi) opFail(n, "tf_crop_and_resize needs a constant roi input");
    if (roi!.length !== 2 * k) opFail(n, `roi has ${roi!.length} values, expected ${2 * k}`);
    axesAttr.forEach((a, i) => ((starts[a] = roi![i]), (ends[a] = roi![k + i])));
  }
  const antialias = attrNum(n, "antialias", 0) !== 0 && mode !== "nearest";
  const axes = x.map((inLen, d) => ({
    inLen,
    outLen: outShape[d],
    scale: scale[d],
    roiStart: starts[d],
    roiEnd: ends[d],
    identity: inLen === outShape[d] && scale[d] === 1 && coord !== "tf_crop_and_resize" && coord !== "tf_half_pixel_for_nn",
  }));
  return {
    mode, coord, nearest, antialias, axes, outShape,
    cubicA: attrNum(n, "cubic_coeff_a", -0.75),
    excludeOutside: attrNum(n, "exclude_outside", 0) !== 0,
    extrapolation: attrNum(n, "extrapolation_value", 0),
  };
}

/**
 * Scalar float32 arithmetic the coordinate and filter formulas are written in once: plain JS numbers
 * rounded to float32 after every step for evaluation (so it matches the generated code bit for bit),
 * loop IR expressions for lowering.
 */
export interface Arith<T> {
  c(v: number): T;
  add(a: T, b: T): T;
  sub(a: T, b: T): T;
  mul(a: T, b: T): T;
  div(a: T, b: T): T;
  max(a: T, b: T): T;
  /** a < b (or a <= b) ? then : otherwise */
  ifLess(a: T, b: T, orEqual: boolean, then: T, otherwise: T): T;
}

/** x_original for output coordinate x (already a float) along axis `a`, per the spec's formulas. */
export function originalCoord<T>(A: Arith<T>, p: ResizePlan, a: AxisPlan, x: T): T {
  const halfPixel = () => A.sub(A.div(A.add(x, A.c(0.5)), A.c(a.scale)), A.c(0.5));
  switch (p.coord) {
    case "half_pixel": return halfPixel();
    case "pytorch_half_pixel": return a.outLen > 1 ? halfPixel() : A.c(0);
    case "asymmetric": return A.div(x, A.c(a.scale));
    case "tf_half_pixel_for_nn": return A.div(A.add(x, A.c(0.5)), A.c(a.scale));
    case "align_corners": return a.outLen > 1 ? A.div(A.mul(x, A.c(a.inLen - 1)), A.c(a.outLen - 1)) : A.c(0);
    case "half_pixel_symmetric": {
      const offset = (a.inLen / 2) * (1 - a.outLen / (a.scale * a.inLen));
      return A.add(A.c(offset), halfPixel());
    }
    case "tf_crop_and_resize": {
      const span = (a.roiEnd - a.roiStart) * (a.inLen - 1);
      if (a.outLen === 1) return A.c(((a.roiStart + a.roiEnd) / 2) * (a.inLen - 1));
      return A.add(A.c(a.roiStart * (a.inLen - 1)), A.div(A.mul(x, A.c(span)), A.c(a.outLen - 1)));
    }
  }
}

/**
 * The interpolation filter: taps `first .. first+count-1` relative to floor(x_original), and the
 * weight of a tap at signed distance d. Antialiasing stretches the filter by 1/scale on downscaling.
 */
export function filter(p: ResizePlan, a: AxisPlan): { first: number; count: number; support: number; stretch: number } {
  const stretch = p.antialias ? Math.min(a.scale, 1) : 1;
  const support = p.mode === "cubic" ? 2 : 1;
  const first = p.antialias ? Math.floor(-support / stretch) + 1 : 1 - support;
  return { first, count: 2 - 2 * first, support, stretch };
}

/**
 * Plain linear interpolation clamps x_original into the input first. With edge values repeating
 * this changes nothing mathematically, but border outputs then copy the edge value exactly instead
 * of summing two weights of it (which matters once an integer output truncates).
 */
export const clampsCoord = (p: ResizePlan) => p.mode === "linear" && !p.antialias;

/** Weight of a filter tap at distance x >= 0 (in input pixels, already scaled for antialias). */
export function tapWeight<T>(A: Arith<T>, p: ResizePlan, x: T): T {
  if (p.mode === "linear") return A.max(A.c(0), A.sub(A.c(1), x));
  const a = p.cubicA;
  const near = A.add(A.mul(A.mul(A.sub(A.mul(A.c(a + 2), x), A.c(a + 3)), x), x), A.c(1));
  const far = A.sub(A.mul(A.add(A.mul(A.sub(A.mul(A.c(a), x), A.c(5 * a)), x), A.c(8 * a)), x), A.c(4 * a));
  return A.ifLess(x, A.c(1), true, near, A.ifLess(x, A.c(2), false, far, A.c(0)));
}

const fr = Math.fround;
const F32: Arith<number> = {
  c: fr,
  add: (a, b) => fr(a + b),
  sub: (a, b) => fr(a - b),
  mul: (a, b) => fr(a * b),
  div: (a, b) => fr(a / b),
  max: Math.max,
  ifLess: (a, b, orEqual, then, otherwise) => ((orEqual ? a <= b : a < b) ? then : otherwise),
};

/** Input index of output coordinate x for nearest mode. */
export function nearestIndex(mode: NearestMode, xo: number, inLen: number): number {
  const i = mode === "floor" ? Math.floor(xo) : mode === "ceil" ? Math.ceil(xo) : mode === "round_prefer_floor" ? Math.ceil(xo - 0.5) : Math.floor(xo + 0.5);
  return Math.min(Math.max(i, 0), inLen - 1);
}

/**
 * Reference evaluation, in the generated code's order of operations: per output element, the
 * weighted sum over every resampled axis's taps (product of the per-axis weights).
 */
function evalResize(n: Node, x: Tensor, p: ResizePlan): Tensor {
  const xs = toNumbers(x);
  const inStr = strides(x.shape), outStr = strides(p.outShape);
  const total = numel(p.outShape);
  const out = new Float64Array(total);
  const facc = x.dtype === "float64" ? (v: number) => v : fr;
  const normalize = p.antialias || p.excludeOutside;
  for (let o = 0; o < total; o++) {
    // Per axis: the [input index, weight] taps.
    let outside = false;
    const taps = p.axes.map((a, d) => {
      const xr = Math.floor(o / outStr[d]) % a.outLen;
      if (a.identity) return [[xr, 1]];
      let xo = originalCoord(F32, p, a, xr);
      if (p.coord === "tf_crop_and_resize" && (xo < 0 || xo > a.inLen - 1)) outside = true;
      if (p.mode === "nearest") return [[nearestIndex(p.nearest, xo, a.inLen), 1]];
      if (clampsCoord(p)) xo = Math.min(Math.max(xo, 0), a.inLen - 1);
      const x0 = Math.floor(xo);
      const f = filter(p, a);
      const list: number[][] = [];
      for (let i = f.first; i < f.first + f.count; i++) {
        const j = x0 + i;
        const dist = f.stretch === 1 ? fr(j - xo) : fr(fr(j - xo) * fr(f.stretch));
        const w = p.excludeOutside && (j < 0 || j >= a.inLen) ? 0 : tapWeight(F32, p, Math.abs(dist));
        list.push([Math.min(Math.max(j, 0), a.inLen - 1), w]);
      }
      return list;
    });
    if (outside) {
      out[o] = p.extrapolation;
      continue;
    }
    let acc = 0, wsum = 0;
    const walk = (d: number, off: number, w: number | undefined) => {
      if (d === taps.length) {
        acc = facc(acc + facc((w ?? 1) * xs[off]));
        wsum = facc(wsum + (w ?? 1));
        return;
      }
      for (const [j, wj] of taps[d]) walk(d + 1, off + j * inStr[d], p.axes[d].identity || p.mode === "nearest" ? w : w === undefined ? wj : fr(w * wj));
    };
    walk(0, 0, undefined);
    out[o] = normalize ? facc(acc / wsum) : acc;
  }
  return fromNumbers(x.dtype, p.outShape, x.dtype === "float32" ? Float32Array.from(out) : out);
}

/** The constant parameters of a Resize node, or null while one of them is not folded yet. */
function params(ins: (Value | undefined)[], coord: string): (number[] | undefined)[] | null {
  const [, roi, scales, sizes] = ins;
  const need = [coord === "tf_crop_and_resize" ? roi : undefined, scales, sizes];
  if (need.some((v) => v && !v.data)) return null;
  return need.map((v) => (v?.data ? toNumbers(v.data) : undefined));
}

export const RESIZE_OPS: Record<string, OpDef> = {
  Resize: {
    infer(n, ins) {
      const x = shapeOf(n, ins[0]);
      const ps = params(ins, attrStr(n, "coordinate_transformation_mode", "half_pixel"));
      if (!ps) return null;
      return [{ dtype: ins[0]!.dtype, shape: resizePlan(n, x, ...ps).outShape }];
    },
    eval(n, [x, roi, scales, sizes]) {
      const num = (t: Tensor | undefined) => (t ? toNumbers(t) : undefined);
      return [evalResize(n, x!, resizePlan(n, x!.shape, num(roi), num(scales), num(sizes)))];
    },
    constInputs: [1, 2, 3],
  },
};
