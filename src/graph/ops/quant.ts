import { dtypeFromOnnx, intRange, isFloat, ONNX_TYPE_NAMES, type DType } from "../../core/dtype.js";
import { fromNumbers, numel, strides, toNumbers, type Tensor } from "../../core/tensor.js";
import { attrNum, type Node, type Value } from "../ir.js";
import { convGeometry, matmulShape } from "./nn.js";
import { broadcastShapes, normAxis, opFail, shapeOf, type OpDef } from "./types.js";

/**
 * Linear quantization: QuantizeLinear / DequantizeLinear (per-tensor, per-axis and blocked scales),
 * and the integer kernels QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger. The helpers here
 * (granularity, parameter layouts, output types) are shared with loop/lower/quant.ts.
 */

/** Integer types a quantized tensor may have. */
export const QUANT_TYPES: DType[] = ["uint8", "int8", "uint16", "int16"];

/** Which scale element each element of x uses: one for all, one per index of `axis`, or one per block along `axis`. */
export type Granularity = { kind: "tensor" } | { kind: "axis"; axis: number } | { kind: "block"; axis: number; block: number };

export function granularity(n: Node, x: number[], scale: number[], zeroPoint?: number[]): Granularity {
  if (zeroPoint && zeroPoint.join("x") !== scale.join("x")) {
    opFail(n, `scale [${scale.join("x")}] and zero point [${zeroPoint.join("x")}] must have the same shape`);
  }
  const block = attrNum(n, "block_size", 0);
  if (block < 0) opFail(n, `block_size ${block} must not be negative`);
  if (!block && numel(scale) === 1 && scale.length <= 1) return { kind: "tensor" };
  const axis = normAxis(n, attrNum(n, "axis", 1), x.length);
  if (!block) {
    if (scale.length !== 1 || scale[0] !== x[axis]) {
      opFail(n, `scale [${scale.join("x")}] is neither a scalar nor a vector of x's dim ${axis} (${x[axis]})`);
    }
    return { kind: "axis", axis };
  }
  const ok = scale.length === x.length && scale.every((s, d) => (d === axis ? s === Math.ceil(x[d] / block) : s === x[d]));
  if (!ok) opFail(n, `scale [${scale.join("x")}] does not fit blocks of ${block} along axis ${axis} of x [${x.join("x")}]`);
  return { kind: "block", axis, block };
}

/** The scale index of x's element `idx` (works on numbers and on loop expressions alike). */
export function scaleIndex<T>(g: Granularity, scaleRank: number, idx: T[], zero: T, divide: (a: T, b: number) => T): T[] {
  if (g.kind === "tensor") return new Array<T>(scaleRank).fill(zero);
  if (g.kind === "axis") return [idx[g.axis]];
  return idx.map((e, d) => (d === g.axis ? divide(e, g.block) : e));
}

function dtypeAttr(n: Node, key: string): DType | undefined {
  const code = attrNum(n, key, 0);
  if (!code) return undefined;
  const d = dtypeFromOnnx(code);
  if (!d) opFail(n, `${key} ${ONNX_TYPE_NAMES[code] ?? code} is not supported`);
  return d;
}

/** QuantizeLinear's output type: the zero point's, else output_dtype, else uint8. */
export function quantizedType(n: Node, zp: DType | undefined): DType {
  const d = zp ?? dtypeAttr(n, "output_dtype") ?? "uint8";
  if (!QUANT_TYPES.includes(d)) opFail(n, `quantizing to ${d} is not supported (${QUANT_TYPES.join(", ")})`);
  return d;
}

/** DequantizeLinear's output type: output_dtype, else the scale's. */
export function dequantizedType(n: Node, scale: DType): DType {
  const d = dtypeAttr(n, "output_dtype") ?? scale;
  if (!isFloat(d)) opFail(n, `output type ${d} is not a float type`);
  return d;
}

/** Float type the (de)quantization arithmetic runs in: float64 when any operand asks for it, else float32. */
export const quantWork = (n: Node, ...ds: (DType | undefined)[]): DType =>
  ds.includes("float64") || dtypeAttr(n, "precision") === "float64" ? "float64" : "float32";

const roundEven = (v: number) => {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** Clamps like the generated fminf(fmaxf(v, lo), hi): NaN becomes lo. */
const saturate = (v: number, lo: number, hi: number) => (Number.isNaN(v) ? lo : Math.min(Math.max(v, lo), hi));

/** Element-wise (de)quantization in JS, with float32 rounding where the generated code uses float32. */
function evalQuant(n: Node, [x, scale, zp]: (Tensor | undefined)[], quantize: boolean): Tensor {
  const g = granularity(n, x!.shape, scale!.shape, zp?.shape);
  const f32 = quantWork(n, x!.dtype, scale!.dtype) === "float32";
  const fr = f32 ? Math.fround : (v: number) => v;
  const xs = toNumbers(x!), ss = toNumbers(scale!), zs = zp ? toNumbers(zp) : [0];
  const xStr = strides(x!.shape), sStr = strides(scale!.shape);
  const out = new Float64Array(xs.length);
  const outType = quantize ? quantizedType(n, zp?.dtype) : dequantizedType(n, scale!.dtype);
  const [lo, hi] = intRange(outType);
  for (let i = 0; i < xs.length; i++) {
    const idx = x!.shape.map((d, k) => Math.floor(i / xStr[k]) % d);
    const si = scaleIndex(g, scale!.shape.length, idx, 0, (a, b) => Math.floor(a / b)).reduce((s, v, k) => s + v * sStr[k], 0);
    const z = zp ? zs[si] : 0;
    out[i] = quantize ? saturate(roundEven(fr(fr(xs[i]) / fr(ss[si]))) + z, lo, hi) : fr(fr(xs[i] - z) * fr(ss[si]));
  }
  return fromNumbers(outType, [...x!.shape], out);
}

const has = (v: Value | undefined): v is Value => v !== undefined;

function checkQuantInput(n: Node, v: Value | undefined, what: string) {
  if (has(v) && !QUANT_TYPES.includes(v.dtype) && v.dtype !== "int32") opFail(n, `${what} has type ${v.dtype}, expected an integer type`);
}

/** The integer kernels take 8-bit operands only (their products must fit in int32). */
function check8bit(n: Node, v: Value | undefined, what: string) {
  if (has(v) && v.dtype !== "uint8" && v.dtype !== "int8") opFail(n, `${what} has type ${v.dtype}, expected uint8 or int8`);
}

/**
 * Layout of a per-row (A side) or per-column (B side) matmul parameter (zero point or scale) against
 * operand shape `op` [..., R, C]: a scalar or 1-element tensor, a vector of the rows (A) / columns (B),
 * or a tensor broadcasting like [..., R, 1] (A) / [..., 1, C] (B).
 */
export type ParamLayout = "scalar" | "vector" | "broadcast";

export function matmulParam(n: Node, p: number[], op: number[], side: "a" | "b", what: string): ParamLayout {
  if (numel(p) === 1) return "scalar";
  const op2 = side === "a" ? (op.length === 1 ? [1, op[0]] : op) : op.length === 1 ? [op[0], 1] : op;
  const along = side === "a" ? op2[op2.length - 2] : op2[op2.length - 1];
  if (p.length === 1 && p[0] === along) return "vector";
  const want = side === "a" ? [...op2.slice(0, -1), 1] : [...op2.slice(0, -2), 1, op2[op2.length - 1]];
  if (p.length <= want.length && broadcastShapes(n, [p, want]).join("x") === want.join("x")) return "broadcast";
  return opFail(n, `${what} [${p.join("x")}] is not per tensor or per ${side === "a" ? "row" : "column"} of [${op.join("x")}]`);
}

/** Per-output-channel conv parameter (w zero point / scale): a scalar or a vector of M. */
export function convParam(n: Node, p: number[], m: number, what: string): "scalar" | "vector" {
  if (numel(p) === 1 && p.length <= 1) return "scalar";
  if (p.length === 1 && p[0] === m) return "vector";
  return opFail(n, `${what} [${p.join("x")}] must be a scalar or have ${m} elements (one per output channel)`);
}

function scalarParam(n: Node, v: Value | undefined, what: string) {
  if (v && numel(shapeOf(n, v, what)) !== 1) opFail(n, `${what} must be a scalar (per-tensor quantization)`);
}

const quantizeDef: OpDef = {
  infer(n, [x, s, zp]) {
    granularity(n, shapeOf(n, x), shapeOf(n, s, "scale"), zp && shapeOf(n, zp, "zero point"));
    return [{ dtype: quantizedType(n, zp?.dtype), shape: [...x!.shape!] }];
  },
  eval: (n, ins) => [evalQuant(n, ins, true)],
};

const dequantizeDef: OpDef = {
  infer(n, [x, s, zp]) {
    checkQuantInput(n, x, "x");
    granularity(n, shapeOf(n, x), shapeOf(n, s, "scale"), zp && shapeOf(n, zp, "zero point"));
    return [{ dtype: dequantizedType(n, s!.dtype), shape: [...x!.shape!] }];
  },
  eval: (n, ins) => [evalQuant(n, ins, false)],
};

/** QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp) and MatMulInteger(A, B, a_zp?, b_zp?). */
function matmulParams(n: Node, ins: (Value | undefined)[]) {
  const q = n.op === "QLinearMatMul";
  const [a, b] = q ? [ins[0], ins[3]] : [ins[0], ins[1]];
  const aShape = shapeOf(n, a, "A"), bShape = shapeOf(n, b, "B");
  check8bit(n, a, "A");
  check8bit(n, b, "B");
  const aParams = q ? [ins[1], ins[2]] : [ins[2]];
  const bParams = q ? [ins[4], ins[5]] : [ins[3]];
  for (const p of aParams.filter(has)) matmulParam(n, shapeOf(n, p), aShape, "a", "A's scale / zero point");
  for (const p of bParams.filter(has)) matmulParam(n, shapeOf(n, p), bShape, "b", "B's scale / zero point");
  if (q) (scalarParam(n, ins[6], "y_scale"), scalarParam(n, ins[7], "y_zero_point"));
  return matmulShape(n, aShape, bShape);
}

/** QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B?) and ConvInteger(x, w, x_zp?, w_zp?). */
function convParams(n: Node, ins: (Value | undefined)[]) {
  const q = n.op === "QLinearConv";
  const [x, w] = q ? [ins[0], ins[3]] : [ins[0], ins[1]];
  check8bit(n, x, "x");
  check8bit(n, w, "w");
  const xShape = shapeOf(n, x, "x"), wShape = shapeOf(n, w, "w");
  const bias = q ? ins[8] : undefined;
  if (bias && bias.dtype !== "int32") opFail(n, `bias must be int32, got ${bias.dtype}`);
  const geo = convGeometry(n, xShape, wShape, bias && shapeOf(n, bias, "bias"));
  for (const p of (q ? [ins[1], ins[2], ins[6], ins[7]] : [ins[2]]).filter(has)) scalarParam(n, p, "x / y scale and zero point");
  for (const p of (q ? [ins[4], ins[5]] : [ins[3]]).filter(has)) convParam(n, shapeOf(n, p), wShape[0], "w's scale / zero point");
  return { geo, shape: [xShape[0], wShape[0], ...geo.out] };
}

/** The quantized output type of QLinear*: y_zero_point's type, else the first operand's. */
const qlinearType = (x: Value | undefined, yzp: Value | undefined): DType => yzp?.dtype ?? x!.dtype;

export const QUANT_OPS: Record<string, OpDef> = {
  QuantizeLinear: quantizeDef,
  DequantizeLinear: dequantizeDef,
  QLinearMatMul: { infer: (n, ins) => [{ dtype: qlinearType(ins[0], ins[7]), shape: matmulParams(n, ins).out }] },
  MatMulInteger: { infer: (n, ins) => [{ dtype: "int32", shape: matmulParams(n, ins).out }] },
  QLinearConv: { infer: (n, ins) => [{ dtype: qlinearType(ins[0], ins[7]), shape: convParams(n, ins).shape }] },
  ConvInteger: { infer: (n, ins) => [{ dtype: "int32", shape: convParams(n, ins).shape }] },
};
