import { describe, expect, it } from "vitest";
import { fromNumbers, toNumbers, type Tensor } from "../../src/core/tensor.js";
import type { AttrValue, Node } from "../../src/graph/ir.js";
import { RESIZE_OPS } from "../../src/graph/ops/resize.js";

/** Resize: output shapes from scales / sizes, and reference values for the main modes. */
const node = (attrs: Record<string, AttrValue>): Node => ({ name: "n", op: "Resize", opset: 19, inputs: ["X", "", "scales", "sizes"], outputs: ["Y"], attrs });
const f32 = (shape: number[], v: number[]) => fromNumbers("float32", shape, v);
const run = (attrs: Record<string, AttrValue>, x: Tensor, scales?: number[], sizes?: number[]) =>
  RESIZE_OPS.Resize.eval!(node(attrs), [x, undefined, scales && f32([scales.length], scales), sizes && fromNumbers("int64", [sizes.length], sizes)])[0];

const x = f32([1, 1, 2, 2], [1, 2, 3, 4]);

describe("Resize", () => {
  it("nearest upsampling by scales (floor(in * scale) outputs)", () => {
    const y = run({ mode: "nearest" }, x, [1, 1, 2, 1.5]);
    expect(y.shape).toEqual([1, 1, 4, 3]);
    expect(toNumbers(y)).toEqual([1, 1, 2, 1, 1, 2, 3, 3, 4, 3, 3, 4]);
  });

  it("asymmetric / floor, the form Upsample is mapped to", () => {
    const y = run({ mode: "nearest", coordinate_transformation_mode: "asymmetric", nearest_mode: "floor" }, x, [1, 1, 2, 3]);
    expect(toNumbers(y).slice(0, 6)).toEqual([1, 1, 1, 2, 2, 2]);
  });

  it("half_pixel linear repeats the edges", () => {
    const y = run({ mode: "linear" }, f32([1, 4], [0, 4, 8, 12]), [1, 2]);
    expect(toNumbers(y)).toEqual([0, 1, 3, 5, 7, 9, 11, 12]);
  });

  it("align_corners hits both ends exactly", () => {
    const y = run({ mode: "linear", coordinate_transformation_mode: "align_corners" }, f32([3], [0, 10, 20]), undefined, [5]);
    expect(toNumbers(y)).toEqual([0, 5, 10, 15, 20]);
  });

  it("axes and keep_aspect_ratio_policy pick the output size", () => {
    const shape = (attrs: Record<string, AttrValue>, sizes: number[]) =>
      RESIZE_OPS.Resize.infer(node(attrs), [{ name: "X", dtype: "float32", shape: [1, 3, 4, 6] }, undefined, undefined, { name: "sizes", dtype: "int64", shape: [2], data: fromNumbers("int64", [2], sizes) }])![0].shape;
    expect(shape({ axes: [2, 3] }, [8, 9])).toEqual([1, 3, 8, 9]);
    expect(shape({ axes: [2, 3], keep_aspect_ratio_policy: "not_larger" }, [8, 9])).toEqual([1, 3, 6, 9]);
    expect(shape({ axes: [2, 3], keep_aspect_ratio_policy: "not_smaller" }, [8, 9])).toEqual([1, 3, 8, 12]);
  });

  it("cubic weights reproduce a linear ramp away from the edges", () => {
    const y = toNumbers(run({ mode: "cubic", coordinate_transformation_mode: "align_corners" }, f32([5], [0, 1, 2, 3, 4]), undefined, [9]));
    for (let i = 2; i <= 6; i++) expect(y[i]).toBeCloseTo(i / 2, 5);
    expect(y[1]).toBeCloseTo(0.40625, 5);
  });

  it("rejects unknown modes and missing parameters", () => {
    expect(() => run({ mode: "area" }, x, [1, 1, 2, 2])).toThrow(/mode 'area'/);
    expect(() => run({ mode: "nearest" }, x)).toThrow(/scales and sizes/);
  });
});
