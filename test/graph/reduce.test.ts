import { describe, expect, it } from "vitest";
import type { DType } from "../../src/core/dtype.js";
import { fromNumbers, toNumbers, type Tensor } from "../../src/core/tensor.js";
import type { AttrValue, Node, Value } from "../../src/graph/ir.js";
import { REDUCE_OPS } from "../../src/graph/ops/reduce.js";

/** Shape inference and reference evaluation of the reductions (opset-18 form: axes as input 1). */
const node = (op: string, attrs: Record<string, AttrValue> = {}): Node => ({ name: "n", op, opset: 18, inputs: ["x", "axes"], outputs: ["y"], attrs });
const axesValue = (axes: number[]): Value => ({ name: "axes", dtype: "int64", shape: [axes.length], data: fromNumbers("int64", [axes.length], axes) });
const infer = (op: string, attrs: Record<string, AttrValue>, shape: number[], axes?: number[]) =>
  REDUCE_OPS[op].infer(node(op, attrs), [{ name: "x", dtype: "float32", shape }, axes && axesValue(axes)])![0].shape;
const run = (op: string, attrs: Record<string, AttrValue>, x: Tensor, axes?: number[]) =>
  REDUCE_OPS[op].eval!(node(op, attrs), [x, axes && fromNumbers("int64", [axes.length], axes)])[0];

// x[i][j][k] = 4i + 2j + k for shape [3, 2, 2]
const x = fromNumbers("float32", [3, 2, 2], [...Array(12).keys()]);
const ints = (dtype: DType, shape: number[], v: number[]) => fromNumbers(dtype, shape, v);

describe("reduction shape inference", () => {
  it("keepdims=1 keeps reduced axes as 1, keepdims=0 drops them", () => {
    expect(infer("ReduceSum", {}, [3, 2, 2], [1])).toEqual([3, 1, 2]);
    expect(infer("ReduceSum", { keepdims: 0 }, [3, 2, 2], [1])).toEqual([3, 2]);
    expect(infer("ReduceMax", { keepdims: 0 }, [3, 2, 2], [0, 2])).toEqual([2]);
  });

  it("negative axes count from the end", () => {
    expect(infer("ReduceMean", { keepdims: 0 }, [3, 2, 5], [-1])).toEqual([3, 2]);
  });

  it("absent or empty axes reduce everything unless noop_with_empty_axes=1", () => {
    expect(infer("ReduceSum", {}, [3, 2, 2])).toEqual([1, 1, 1]);
    expect(infer("ReduceSum", { keepdims: 0 }, [3, 2, 2], [])).toEqual([]);
    expect(infer("ReduceSum", { noop_with_empty_axes: 1 }, [3, 2, 2], [])).toEqual([3, 2, 2]);
  });

  it("waits for non-constant axes and rejects bad ones", () => {
    const n = node("ReduceSum");
    expect(REDUCE_OPS.ReduceSum.infer(n, [{ name: "x", dtype: "float32", shape: [2, 2] }, { name: "axes", dtype: "int64", shape: [1] }])).toBeNull();
    expect(() => infer("ReduceSum", {}, [2, 2], [2])).toThrow(/out of range/);
    expect(() => infer("ReduceSum", {}, [2, 2], [1, -1])).toThrow(/twice/);
  });
});

describe("reduction evaluation", () => {
  it("sums over a middle axis with and without keepdims", () => {
    const y = run("ReduceSum", {}, x, [1]);
    expect(y.shape).toEqual([3, 1, 2]);
    expect(toNumbers(y)).toEqual([2, 4, 10, 12, 18, 20]);
    expect(run("ReduceSum", { keepdims: 0 }, x, [-2]).shape).toEqual([3, 2]);
  });

  it("mean, max, min and prod over several axes", () => {
    expect(toNumbers(run("ReduceMean", { keepdims: 0 }, x, [0, 2]))).toEqual([4.5, 6.5]);
    expect(toNumbers(run("ReduceMax", {}, x))).toEqual([11]);
    expect(toNumbers(run("ReduceMin", { keepdims: 0 }, x, [0]))).toEqual([0, 1, 2, 3]);
    expect(toNumbers(run("ReduceProd", { keepdims: 0 }, x, [2]))).toEqual([0, 6, 20, 42, 72, 110]);
  });

  it("L1, L2, sum of squares and log-sum-exp", () => {
    const v = fromNumbers("float32", [2, 2], [3, -4, -1, 1]);
    expect(toNumbers(run("ReduceL1", { keepdims: 0 }, v, [1]))).toEqual([7, 2]);
    expect(toNumbers(run("ReduceL2", { keepdims: 0 }, v, [1]))[0]).toBeCloseTo(5, 6);
    expect(toNumbers(run("ReduceSumSquare", { keepdims: 0 }, v, [1]))).toEqual([25, 2]);
    expect(toNumbers(run("ReduceLogSumExp", { keepdims: 0 }, v, [0]))[0]).toBeCloseTo(Math.log(Math.exp(3) + Math.exp(-1)), 5);
  });

  it("noop_with_empty_axes=1 returns the data unchanged", () => {
    const y = run("ReduceSum", { noop_with_empty_axes: 1 }, x, []);
    expect(y.shape).toEqual([3, 2, 2]);
    expect(toNumbers(y)).toEqual(toNumbers(x));
  });

  it("integer reductions keep their type (mean truncates)", () => {
    const y = run("ReduceMean", { keepdims: 0 }, ints("int32", [2, 3], [1, 2, 4, -1, -2, -4]), [1]);
    expect(y.dtype).toBe("int32");
    expect(toNumbers(y)).toEqual([2, -2]);
    expect(toNumbers(run("ReduceMax", { keepdims: 0 }, ints("int64", [3], [-5, 7, 2]), [0]))).toEqual([7]);
  });
});
