import { fromNumbers, strides, toNumbers, type Tensor } from "../../core/tensor.js";
import { attrNum, type Node } from "../ir.js";
import { constInts, normAxis, opFail, shapeOf, type OpDef } from "./types.js";

/**
 * Reductions in their opset-18 form: data, axes? (input 1), attrs keepdims (default 1) and
 * noop_with_empty_axes. Absent or empty axes reduce every axis, or pass the data through unchanged
 * when noop_with_empty_axes=1.
 */

/** The sorted, normalized axes a reduction folds; null when it is the identity. */
export function reduceAxes(n: Node, rank: number, axes: number[]): number[] | null {
  if (!axes.length) return attrNum(n, "noop_with_empty_axes", 0) ? null : [...Array(rank).keys()];
  const set = new Set(axes.map((a) => normAxis(n, a, rank)));
  if (set.size !== axes.length) opFail(n, `axes [${axes.join(", ")}] name an axis twice`);
  return [...set].sort((a, b) => a - b);
}

/** Output shape: reduced axes become 1 (keepdims=1) or disappear (keepdims=0). */
export function reducedShape(n: Node, shape: number[], axes: number[] | null): number[] {
  if (!axes) return [...shape];
  return attrNum(n, "keepdims", 1) ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

/** Reference semantics of one reduction over the doubles of one output position's group. */
interface Fold {
  init: number;
  step(acc: number, x: number): number;
  finish(acc: number, count: number): number;
}

const id = (a: number) => a;
const FOLDS: Record<string, Fold> = {
  ReduceSum: { init: 0, step: (a, x) => a + x, finish: id },
  ReduceMean: { init: 0, step: (a, x) => a + x, finish: (a, c) => a / c },
  ReduceMax: { init: -Infinity, step: (a, x) => (Number.isNaN(a) || a >= x ? a : x), finish: id },
  ReduceMin: { init: Infinity, step: (a, x) => (Number.isNaN(a) || a <= x ? a : x), finish: id },
  ReduceProd: { init: 1, step: (a, x) => a * x, finish: id },
  ReduceL1: { init: 0, step: (a, x) => a + Math.abs(x), finish: id },
  ReduceL2: { init: 0, step: (a, x) => a + x * x, finish: (a) => Math.sqrt(a) },
  ReduceLogSumExp: { init: 0, step: (a, x) => a + Math.exp(x), finish: (a) => Math.log(a) },
  ReduceSumSquare: { init: 0, step: (a, x) => a + x * x, finish: id },
};

export const REDUCE_OP_NAMES = Object.keys(FOLDS);

function evalReduce(n: Node, data: Tensor, axesT: Tensor | undefined): Tensor {
  const fold = FOLDS[n.op];
  const axes = reduceAxes(n, data.shape.length, axesT ? toNumbers(axesT) : []);
  if (!axes) return { ...data, shape: [...data.shape] };
  const outShape = reducedShape(n, data.shape, axes);
  // Each input element's output position: its index with the reduced axes zeroed, in keepdims strides.
  const keptShape = data.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const inStrides = strides(data.shape);
  const keptStrides = strides(keptShape);
  const outCount = keptShape.reduce((a, b) => a * b, 1);
  const acc = new Float64Array(outCount).fill(fold.init);
  const xs = toNumbers(data);
  for (let i = 0; i < xs.length; i++) {
    let o = 0;
    for (let d = 0; d < data.shape.length; d++) {
      if (!axes.includes(d)) o += (Math.floor(i / inStrides[d]) % data.shape[d]) * keptStrides[d];
    }
    acc[o] = fold.step(acc[o], xs[i]);
  }
  const count = axes.reduce((c, a) => c * data.shape[a], 1);
  const out = Array.from(acc, (a) => fold.finish(a, count));
  return fromNumbers(data.dtype, outShape, data.dtype === "float32" ? Float32Array.from(out) : out);
}

const reduceDef: OpDef = {
  infer(n, ins) {
    const shape = shapeOf(n, ins[0]);
    const axes = ins[1] ? constInts(ins[1]) : [];
    if (!axes) return null;
    return [{ dtype: ins[0]!.dtype, shape: reducedShape(n, shape, reduceAxes(n, shape.length, axes)) }];
  },
  eval: (n, ins) => [evalReduce(n, ins[0]!, ins[1])],
  constInputs: [1],
};

export const REDUCE_OPS: Record<string, OpDef> = Object.fromEntries(REDUCE_OP_NAMES.map((op) => [op, reduceDef]));
