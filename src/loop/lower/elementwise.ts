import { isFloat, type DType } from "../../core/dtype.js";
import { attrNum, attrStr, type Node } from "../../graph/ir.js";
import {
  add, and, bin, cast, cst, div, eq, gt, ge, le, loadBroadcast, lt, max, min, mul, or, select, sub, un,
  type Ref,
} from "../build.js";
import type { Expr } from "../ir.js";
import type { LowerCtx, Lowering } from "./types.js";
import { fromAt, type At } from "./at.js";

/** Arithmetic type for an input: float16 computes in float32, everything else in its own type. */
const work = (d: DType): DType => (d === "float16" ? "float32" : d);
const c = (v: number, like: Expr) => cst(v, like.dtype);
const truthy = (x: Expr) => (x.dtype === "bool" ? x : bin("!=", x, c(0, x)));

type Scalar = (xs: Expr[], n: Node) => Expr;

/**
 * float32 Sigmoid as onnxruntime's MLAS computes it: a rational function of x clamped to ±18, within
 * 2.2e-7 of 1/(1 + e^−x) and held to [0, 1]; NaN stays NaN. It needs no exp, whose vector form made
 * EfficientNet-B0's SiLUs cost more than the convolutions they follow (the network: 12.1 ms with
 * exp, 10.5 without). Other types take the exp form.
 */
const LOGISTIC_P = [4.37031012579801e-11, 1.15627324459942e-7, 6.08574864600143e-5, 8.51377133304701e-3, 2.48287947061529e-1];
const LOGISTIC_Q = [6.10247389755681e-13, 5.76102136993427e-9, 6.29106785017040e-6, 1.70198817374094e-3, 1.16817656904453e-1, 9.93151921023180e-1];
/** min and max let a NaN operand lose: added to their result, nanof(x) passes a NaN x on (and −0 comes out as +0). */
const nanOf = (x: Expr) => un("nanof", x);
const horner = (k: number[], t: Expr) => k.slice(1).reduce((acc, a) => add(mul(acc, t), c(a, t)), c(k[0], t));
const sigmoid = (x: Expr) => {
  if (x.dtype !== "float32") return div(c(1, x), add(c(1, x), un("exp", un("neg", x))));
  const v = max(min(x, c(18, x)), c(-18, x));
  const v2 = mul(v, v);
  const r = min(max(add(div(mul(horner(LOGISTIC_P, v2), v), horner(LOGISTIC_Q, v2)), c(0.5, x)), c(0, x)), c(1, x));
  return add(r, nanOf(x));
};

/**
 * float32 erf as Eigen, XLA and TVM compute it: x·P(x²)/Q(x²) on x clamped to ±4 (past which erf
 * is ±1 in float32), held to [−1, 1]; NaN stays NaN. With no libm call, a GELU in a MatMul's
 * epilogue vectorizes. Other types call erf.
 */
const ERF_P = [-2.72614225801306e-10, 2.77068142495902e-8, -2.10102402082508e-6, -5.69250639462346e-5, -7.34990630326855e-4, -2.95459980854025e-3, -1.60960333262415e-2];
const ERF_Q = [-1.45660718464996e-5, -2.13374055278905e-4, -1.68282697438203e-3, -7.37332916720468e-3, -1.42647390514189e-2];
const erf = (x: Expr) => {
  if (x.dtype !== "float32") return un("erf", x);
  const v = max(min(x, c(4, x)), c(-4, x));
  const v2 = mul(v, v);
  const r = min(max(div(mul(v, horner(ERF_P, v2)), horner(ERF_Q, v2)), c(-1, x)), c(1, x));
  return add(r, nanOf(x));
};

const SCALAR: Record<string, Scalar> = {
  Identity: ([x]) => x,
  Cast: ([x], n) => (n.attrs.to === "bool" ? truthy(x) : x),
  Abs: ([x]) => un("abs", x),
  Neg: ([x]) => un("neg", x),
  Exp: ([x]) => un("exp", x),
  Log: ([x]) => un("log", x),
  Sqrt: ([x]) => un("sqrt", x),
  Reciprocal: ([x]) => div(c(1, x), x),
  Floor: ([x]) => un("floor", x),
  Ceil: ([x]) => un("ceil", x),
  Round: ([x]) => un("round", x),
  Sin: ([x]) => un("sin", x),
  Cos: ([x]) => un("cos", x),
  Tanh: ([x]) => un("tanh", x),
  Erf: ([x]) => erf(x),
  Not: ([x]) => un("not", truthy(x)),
  Relu: ([x]) => max(x, c(0, x)),
  Sigmoid: ([x]) => sigmoid(x),
  Softplus: ([x]) => un("log", add(c(1, x), un("exp", x))),
  Elu: ([x], n) => select(lt(x, c(0, x)), mul(c(attrNum(n, "alpha", 1), x), sub(un("exp", x), c(1, x))), x),
  Selu: ([x], n) =>
    mul(
      c(attrNum(n, "gamma", 1.0507009873554805), x),
      select(le(x, c(0, x)), mul(c(attrNum(n, "alpha", 1.6732632423543772), x), sub(un("exp", x), c(1, x))), x),
    ),
  LeakyRelu: ([x], n) => select(lt(x, c(0, x)), mul(c(attrNum(n, "alpha", 0.01), x), x), x),
  HardSigmoid: ([x], n) => max(c(0, x), min(c(1, x), add(mul(c(attrNum(n, "alpha", 0.2), x), x), c(attrNum(n, "beta", 0.5), x)))),
  HardSwish: ([x]) => mul(x, max(c(0, x), min(c(1, x), add(mul(x, c(1 / 6, x)), c(0.5, x))))),
  Gelu: ([x], n) =>
    attrStr(n, "approximate", "none") === "tanh"
      ? mul(mul(c(0.5, x), x), add(c(1, x), un("tanh", mul(c(Math.sqrt(2 / Math.PI), x), add(x, mul(c(0.044715, x), mul(x, mul(x, x))))))))
      : mul(mul(c(0.5, x), x), add(c(1, x), erf(mul(x, c(Math.SQRT1_2, x))))),
  Add: ([a, b]) => add(a, b),
  Sub: ([a, b]) => sub(a, b),
  Mul: ([a, b]) => mul(a, b),
  Div: ([a, b]) => div(a, b),
  Pow: ([a, b]) => bin("pow", a, cast(b, a.dtype)),
  Mod: ([a, b], n) =>
    attrNum(n, "fmod", 0) || isFloat(a.dtype) ? bin("fmod", a, b) : bin("%", add(bin("%", a, b), b), b),
  PRelu: ([x, s]) => select(lt(x, c(0, x)), mul(s, x), x),
  Equal: ([a, b]) => eq(a, b),
  Greater: ([a, b]) => gt(a, b),
  Less: ([a, b]) => lt(a, b),
  GreaterOrEqual: ([a, b]) => ge(a, b),
  LessOrEqual: ([a, b]) => le(a, b),
  And: ([a, b]) => and(truthy(a), truthy(b)),
  Or: ([a, b]) => or(truthy(a), truthy(b)),
  Xor: ([a, b]) => bin("!=", truthy(a), truthy(b)),
  Max: (xs) => xs.reduce((a, b) => max(a, b)),
  Min: (xs) => xs.reduce((a, b) => min(a, b)),
  Sum: (xs) => xs.reduce((a, b) => add(a, b)),
  Mean: (xs) => div(xs.reduce((a, b) => add(a, b)), c(xs.length, xs[0])),
  Clip: ([x, lo, hi]) => {
    let r = x;
    if (lo) r = max(r, lo);
    if (hi) r = min(r, hi);
    return r;
  },
  Where: ([cond, a, b]) => select(truthy(cond), a, b),
};

/** An elementwise node's value at an output index: its inputs read with broadcasting, then the scalar op. */
const elementwiseAt =
  (fn: Scalar): At =>
  ({ node, ins }: LowerCtx) =>
  (idx) => {
    const xs = ins.map((r: Ref | undefined) => (r ? cast(loadBroadcast(r, idx), work(r.dtype)) : undefined));
    return fn(xs as Expr[], node);
  };

export const ELEMENTWISE_AT: Record<string, At> = Object.fromEntries(Object.entries(SCALAR).map(([op, fn]) => [op, elementwiseAt(fn)]));

/** One kernel per elementwise node: a loop nest over the output. */
export const ELEMENTWISE_LOWERINGS: Record<string, Lowering> = Object.fromEntries(
  Object.entries(ELEMENTWISE_AT).map(([op, at]) => [op, fromAt(at)]),
);
