import type { DType } from "../../core/dtype.js";
import { fromNumbers, numel, strides, toNumbers, type Tensor } from "../../core/tensor.js";
import { attrNum, attrStr, type Node } from "../ir.js";
import { broadcastShapes, opFail, shapeOf, type OpDef } from "./types.js";

/** Scalar semantics of the elementwise ops, shared by inference (output dtype) and evaluation. */
type Scalar = (xs: number[], n: Node) => number;

const erf = (x: number) => {
  // Abramowitz–Stegun 7.1.26 is too coarse for folding; use the series/continued-fraction split.
  const t = Math.abs(x);
  if (t < 2.5) {
    let sum = t, term = t;
    for (let k = 1; k < 60; k++) {
      term *= (-t * t) / k;
      sum += term / (2 * k + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = 0;
  for (let k = 60; k >= 1; k--) f = (k / 2) / (t + f);
  return Math.sign(x) * (1 - Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f));
};
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const gelu = (x: number, n: Node) =>
  attrStr(n, "approximate", "none") === "tanh"
    ? 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))
    : 0.5 * x * (1 + erf(x / Math.SQRT2));
const roundEven = (x: number) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

export const UNARY: Record<string, Scalar> = {
  Identity: ([x]) => x,
  Abs: ([x]) => Math.abs(x),
  Neg: ([x]) => -x,
  Exp: ([x]) => Math.exp(x),
  Log: ([x]) => Math.log(x),
  Sqrt: ([x]) => Math.sqrt(x),
  Reciprocal: ([x]) => 1 / x,
  Floor: ([x]) => Math.floor(x),
  Ceil: ([x]) => Math.ceil(x),
  Round: ([x]) => roundEven(x),
  Sin: ([x]) => Math.sin(x),
  Cos: ([x]) => Math.cos(x),
  Tanh: ([x]) => Math.tanh(x),
  Erf: ([x]) => erf(x),
  Relu: ([x]) => Math.max(x, 0),
  Sigmoid: ([x]) => sigmoid(x),
  Softplus: ([x]) => Math.log(1 + Math.exp(x)),
  Not: ([x]) => (x ? 0 : 1),
  Elu: ([x], n) => (x < 0 ? attrNum(n, "alpha", 1) * (Math.exp(x) - 1) : x),
  Selu: ([x], n) =>
    attrNum(n, "gamma", 1.0507009873554805) * (x <= 0 ? attrNum(n, "alpha", 1.6732632423543772) * (Math.exp(x) - 1) : x),
  LeakyRelu: ([x], n) => (x < 0 ? attrNum(n, "alpha", 0.01) * x : x),
  HardSigmoid: ([x], n) => Math.max(0, Math.min(1, attrNum(n, "alpha", 0.2) * x + attrNum(n, "beta", 0.5))),
  HardSwish: ([x]) => x * Math.max(0, Math.min(1, x / 6 + 0.5)),
  Gelu: ([x], n) => gelu(x, n),
  Cast: ([x]) => x,
};

export const BINARY: Record<string, Scalar> = {
  Add: ([a, b]) => a + b,
  Sub: ([a, b]) => a - b,
  Mul: ([a, b]) => a * b,
  Div: ([a, b]) => a / b,
  Pow: ([a, b]) => Math.pow(a, b),
  Mod: ([a, b], n) => (attrNum(n, "fmod", 0) ? a % b : a - Math.floor(a / b) * b),
  PRelu: ([x, s]) => (x < 0 ? s * x : x),
  Equal: ([a, b]) => +(a === b),
  Greater: ([a, b]) => +(a > b),
  Less: ([a, b]) => +(a < b),
  GreaterOrEqual: ([a, b]) => +(a >= b),
  LessOrEqual: ([a, b]) => +(a <= b),
  And: ([a, b]) => +(a && b),
  Or: ([a, b]) => +(a || b),
  Xor: ([a, b]) => +(!!a !== !!b),
};

/** Ops with any number of broadcast inputs. */
export const VARIADIC: Record<string, Scalar> = {
  Max: (xs) => xs.reduce((a, b) => (Number.isNaN(a) || a >= b ? a : b)),
  Min: (xs) => xs.reduce((a, b) => (Number.isNaN(a) || a <= b ? a : b)),
  Sum: (xs) => xs.reduce((a, b) => a + b),
  Mean: (xs) => xs.reduce((a, b) => a + b) / xs.length,
};

/** Clip(x, min?, max?) and Where(cond, x, y) broadcast too; their inputs differ in role. */
export const TERNARY: Record<string, Scalar> = {
  Clip: ([x, lo, hi]) => Math.min(Math.max(x, lo ?? -Infinity), hi ?? Infinity),
  Where: ([c, x, y]) => (c ? x : y),
};

const COMPARE = new Set(["Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Not"]);

export function elementwiseDType(n: Node, ins: DType[]): DType {
  if (n.op === "Cast") return n.attrs.to as DType;
  if (COMPARE.has(n.op)) return "bool";
  if (n.op === "Where") return ins[1];
  return ins[0];
}

/** Evaluates any elementwise op with broadcasting; absent Clip bounds become ±Infinity. */
function evalBroadcast(n: Node, ins: (Tensor | undefined)[], fn: Scalar): Tensor[] {
  const present = ins.filter((t): t is Tensor => !!t);
  const outShape = broadcastShapes(n, present.map((t) => t.shape));
  const rank = outShape.length;
  const total = numel(outShape);
  const outStrides = strides(outShape);
  const cols = ins.map((t) => {
    if (!t) return null;
    const st = strides(t.shape);
    const pad = rank - t.shape.length;
    const bst = outShape.map((_, i) => (i < pad || t.shape[i - pad] === 1 ? 0 : st[i - pad]));
    return { vals: toNumbers(t), bst };
  });
  const out = new Float64Array(total);
  // Absent optional inputs (Clip's bounds) stay undefined; their scalar functions default them.
  const xs = new Array<number>(ins.length);
  for (let i = 0; i < total; i++) {
    for (let k = 0; k < cols.length; k++) {
      const c = cols[k];
      if (!c) continue;
      let off = 0;
      let r = i;
      for (let d = 0; d < rank; d++) {
        const q = Math.floor(r / outStrides[d]);
        r -= q * outStrides[d];
        off += q * c.bst[d];
      }
      xs[k] = c.vals[off];
    }
    out[i] = fn(xs, n);
  }
  const dtype = elementwiseDType(n, ins.map((t) => t?.dtype ?? "float32"));
  const isF32 = dtype === "float32";
  return [fromNumbers(dtype, outShape, isF32 ? Float32Array.from(out) : out)];
}

function def(fn: Scalar): OpDef {
  return {
    infer(n, ins) {
      const present = ins.filter((v) => v !== undefined);
      if (!present.length) opFail(n, "has no inputs");
      const shape = broadcastShapes(n, present.map((v) => shapeOf(n, v)));
      return [{ dtype: elementwiseDType(n, ins.map((v) => v?.dtype ?? "float32")), shape }];
    },
    eval: (n, ins) => evalBroadcast(n, ins, fn),
  };
}

export const ELEMENTWISE_OPS: Record<string, OpDef> = Object.fromEntries(
  Object.entries({ ...UNARY, ...BINARY, ...VARIADIC, ...TERNARY }).map(([op, fn]) => [op, def(fn)]),
);
