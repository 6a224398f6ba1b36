import { describe, expect, it } from "vitest";
import type { DType } from "../../src/core/dtype.js";
import { fromNumbers, toNumbers } from "../../src/core/tensor.js";
import type { AttrValue, Node, Value } from "../../src/graph/ir.js";
import { NN_OPS } from "../../src/graph/ops/nn.js";

/** Shape inference of the NN ops (window arithmetic) and a few reference evaluations. */
const node = (op: string, attrs: Record<string, AttrValue> = {}, outputs = ["y"], opset = 22): Node => ({
  name: "n", op, opset, inputs: [], outputs, attrs,
});
const val = (shape: number[], dtype: DType = "float32"): Value => ({ name: "v", dtype, shape });
const shapeOfOut = (op: string, attrs: Record<string, AttrValue>, ins: number[][]) =>
  NN_OPS[op].infer(node(op, attrs), ins.map((s) => val(s)))![0].shape;

describe("Conv shape inference", () => {
  it("explicit pads and strides", () => {
    expect(shapeOfOut("Conv", { pads: [1, 0, 1, 0], strides: [2, 2] }, [[1, 1, 7, 5], [1, 1, 3, 3]])).toEqual([1, 1, 4, 2]);
  });

  it("SAME_UPPER keeps ceil(in / stride) whatever the kernel and dilation", () => {
    expect(shapeOfOut("Conv", { auto_pad: "SAME_UPPER", strides: [2, 3] }, [[1, 3, 7, 8], [4, 3, 3, 2]])).toEqual([1, 4, 4, 3]);
    expect(shapeOfOut("Conv", { auto_pad: "SAME_UPPER", dilations: [3, 2], group: 2 }, [[2, 4, 9, 6], [8, 2, 3, 3]])).toEqual([2, 8, 9, 6]);
  });

  it("dilations widen the window; VALID uses no padding", () => {
    expect(shapeOfOut("Conv", { dilations: [2, 2], strides: [2, 2], pads: [1, 1, 1, 1] }, [[2, 3, 8, 8], [2, 3, 3, 3]])).toEqual([2, 2, 3, 3]);
    expect(shapeOfOut("Conv", { auto_pad: "VALID", strides: [2, 2] }, [[1, 2, 6, 6], [3, 2, 2, 3]])).toEqual([1, 3, 3, 2]);
  });

  it("rejects inconsistent groups", () => {
    expect(() => shapeOfOut("Conv", { group: 3 }, [[1, 4, 5, 5], [6, 2, 3, 3]])).toThrow(/group/);
  });
});

describe("ConvTranspose shape inference", () => {
  it("from strides, pads and output_padding", () => {
    expect(shapeOfOut("ConvTranspose", { strides: [3, 2], pads: [1, 2, 1, 2] }, [[1, 1, 3, 3], [1, 2, 3, 3]])).toEqual([1, 2, 7, 3]);
    expect(shapeOfOut("ConvTranspose", { group: 2 }, [[1, 2, 3, 3], [2, 3, 3, 3]])).toEqual([1, 6, 5, 5]);
  });

  it("output_shape fixes the spatial size", () => {
    expect(shapeOfOut("ConvTranspose", { strides: [3, 2], output_shape: [10, 8] }, [[1, 1, 3, 3], [1, 2, 3, 3]])).toEqual([1, 2, 10, 8]);
  });

  it("SAME_UPPER gives in * stride", () => {
    expect(shapeOfOut("ConvTranspose", { auto_pad: "SAME_UPPER", strides: [2, 2] }, [[1, 1, 3, 4], [1, 2, 3, 3]])).toEqual([1, 2, 6, 8]);
  });
});

describe("pool shape inference", () => {
  it("ceil_mode rounds up", () => {
    expect(shapeOfOut("MaxPool", { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 }, [[1, 1, 4, 4]])).toEqual([1, 1, 2, 2]);
    expect(shapeOfOut("MaxPool", { kernel_shape: [3, 3], strides: [2, 2] }, [[1, 1, 4, 4]])).toEqual([1, 1, 1, 1]);
  });

  it("ceil_mode drops a window that would start in the end padding", () => {
    // width 8 + pad 1, kernel 2, stride 3: ceil gives 4 windows, the 4th would start at 9 (padding)
    expect(shapeOfOut("MaxPool", { kernel_shape: [1, 2], strides: [1, 3], pads: [0, 0, 0, 1], ceil_mode: 1 }, [[1, 1, 1, 8]])).toEqual([1, 1, 1, 3]);
  });

  it("Indices output is refused", () => {
    expect(() => NN_OPS.MaxPool.infer(node("MaxPool", { kernel_shape: [2, 2] }, ["y", "idx"]), [val([1, 1, 4, 4])])).toThrow(/Indices/);
  });

  it("global pools keep rank", () => {
    expect(shapeOfOut("GlobalAveragePool", {}, [[2, 3, 5, 7]])).toEqual([2, 3, 1, 1]);
  });
});

describe("matrix ops", () => {
  it("MatMul broadcasts batch dims and drops 1-D operand dims", () => {
    expect(shapeOfOut("MatMul", {}, [[3, 1, 3, 4], [1, 2, 4, 2]])).toEqual([3, 2, 3, 2]);
    expect(shapeOfOut("MatMul", {}, [[4], [2, 4, 3]])).toEqual([2, 3]);
    expect(shapeOfOut("MatMul", {}, [[2, 3, 4], [4]])).toEqual([2, 3]);
    expect(shapeOfOut("MatMul", {}, [[4], [4]])).toEqual([]);
  });

  it("Gemm evaluates alpha·A'B' + beta·C", () => {
    const a = fromNumbers("float32", [2, 2], [1, 2, 3, 4]);
    const b = fromNumbers("float32", [2, 2], [1, 0, 1, 1]);
    const c = fromNumbers("float32", [2], [10, 20]);
    const [y] = NN_OPS.Gemm.eval!(node("Gemm", { alpha: 2, beta: 0.5, transB: 1 }), [a, b, c]);
    // B' = [[1, 1], [0, 1]]: A·B' = [[1, 3], [3, 7]]
    expect(toNumbers(y)).toEqual([7, 16, 11, 24]);
  });
});

describe("softmax", () => {
  it("legacy coerce2d normalizes over all dims from axis on", () => {
    const x = fromNumbers("float32", [1, 2, 2], [0, 0, 0, 0]);
    const [y] = NN_OPS.Softmax.eval!(node("Softmax", { axis: 1, coerce2d: 1 }, ["y"], 11), [x]);
    expect(toNumbers(y)).toEqual([0.25, 0.25, 0.25, 0.25]);
    const [z] = NN_OPS.Softmax.eval!(node("Softmax", { axis: 1 }), [x]);
    expect(toNumbers(z)).toEqual([0.5, 0.5, 0.5, 0.5]);
  });

  it("is stable for large inputs", () => {
    const [y] = NN_OPS.LogSoftmax.eval!(node("LogSoftmax", {}), [fromNumbers("float32", [2], [10000, 10000])]);
    expect(toNumbers(y)[0]).toBeCloseTo(-Math.LN2, 6);
  });
});
