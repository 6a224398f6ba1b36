import { describe, expect, it } from "vitest";
import { fromNumbers, toNumbers, type Tensor } from "../../src/core/tensor.js";
import type { Node, Value } from "../../src/graph/ir.js";
import { MOVEMENT_OPS } from "../../src/graph/ops/movement.js";

const node = (op: string, attrs: Node["attrs"] = {}, outputs = ["y"], opset = 18): Node => ({ name: "n", op, opset, inputs: [], outputs, attrs });
const f32 = (shape: number[], xs: number[]) => fromNumbers("float32", shape, xs);
const i64 = (xs: (number | bigint)[]): Tensor => ({ dtype: "int64", shape: [xs.length], data: BigInt64Array.from(xs.map(BigInt)) });
const iota = (n: number) => Array.from({ length: n }, (_, i) => i);
/** A graph value: constant when given a tensor, shape-only otherwise. */
const val = (t: Tensor, constant = true): Value => ({ name: "v", dtype: t.dtype, shape: t.shape, data: constant ? t : undefined });

const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;

describe("Reshape", () => {
  const x = f32([2, 3, 4], iota(24));

  it("0 copies the input dim and -1 takes the rest", () => {
    const out = MOVEMENT_OPS.Reshape.infer(node("Reshape"), [val(x, false), val(i64([0, -1, 2]))]);
    expect(out).toEqual([{ dtype: "float32", shape: [2, 6, 2] }]);
  });

  it("waits (null) while the shape is not a constant", () => {
    expect(MOVEMENT_OPS.Reshape.infer(node("Reshape"), [val(x, false), val(i64([0, -1]), false)])).toBeNull();
  });

  it("keeps int64 values exact", () => {
    const big: Tensor = { dtype: "int64", shape: [2, 2], data: BigInt64Array.of(INT64_MAX, -1n, INT64_MIN, 2n ** 60n + 1n) };
    const [y] = MOVEMENT_OPS.Reshape.eval!(node("Reshape"), [big, i64([-1])]);
    expect(y.shape).toEqual([4]);
    expect([...(y.data as BigInt64Array)]).toEqual([INT64_MAX, -1n, INT64_MIN, 2n ** 60n + 1n]);
  });

  it("rejects a shape with the wrong element count", () => {
    expect(() => MOVEMENT_OPS.Reshape.infer(node("Reshape"), [val(x, false), val(i64([5, -1]))])).toThrow(/cannot reshape/);
  });
});

describe("Slice", () => {
  const x = f32([4, 5], iota(20));

  it("walks backwards with negative steps from a negative start to INT64_MIN", () => {
    const ins = [x, i64([-1, 4]), i64([INT64_MIN, -100]), i64([0, 1]), i64([-1, -2])];
    const [y] = MOVEMENT_OPS.Slice.eval!(node("Slice"), ins);
    expect(y.shape).toEqual([4, 3]);
    expect(toNumbers(y)).toEqual([19, 17, 15, 14, 12, 10, 9, 7, 5, 4, 2, 0]);
  });

  it("clamps INT64_MAX ends and takes negative axes", () => {
    const ins = [x, i64([1, -3]), i64([INT64_MAX, INT64_MAX]), i64([-2, -1]), i64([2, 1])];
    const [y] = MOVEMENT_OPS.Slice.eval!(node("Slice"), ins);
    expect(y.shape).toEqual([2, 3]);
    expect(toNumbers(y)).toEqual([7, 8, 9, 17, 18, 19]);
    expect(MOVEMENT_OPS.Slice.infer(node("Slice"), ins.map((t, i) => val(t, i > 0)))).toEqual([{ dtype: "float32", shape: [2, 3] }]);
  });
});

describe("Split", () => {
  it("num_outputs over an uneven axis gives ceil-sized chunks and a smaller last one", () => {
    const n = node("Split", { axis: 1, num_outputs: 3 }, ["a", "b", "c"]);
    const x = f32([2, 7], iota(14));
    expect(MOVEMENT_OPS.Split.infer(n, [val(x, false)])!.map((o) => o.shape)).toEqual([[2, 3], [2, 3], [2, 1]]);
    const [a, b, c] = MOVEMENT_OPS.Split.eval!(n, [x]);
    expect(toNumbers(a)).toEqual([0, 1, 2, 7, 8, 9]);
    expect(toNumbers(b)).toEqual([3, 4, 5, 10, 11, 12]);
    expect(toNumbers(c)).toEqual([6, 13]);
  });
});

describe("Gather", () => {
  const x = f32([3, 4, 2], iota(24));

  it("wraps negative indices of any rank", () => {
    const ind = fromNumbers("int32", [2, 2], [-1, 0, 3, -4]);
    const [y] = MOVEMENT_OPS.Gather.eval!(node("Gather", { axis: 1 }), [x, ind]);
    expect(y.shape).toEqual([3, 2, 2, 2]);
    expect(toNumbers(y).slice(0, 8)).toEqual([6, 7, 0, 1, 6, 7, 0, 1]);
  });

  it("a scalar index drops the axis", () => {
    const [y] = MOVEMENT_OPS.Gather.eval!(node("Gather", { axis: 0 }), [x, fromNumbers("int64", [], [-1])]);
    expect(y.shape).toEqual([4, 2]);
    expect(toNumbers(y)).toEqual(iota(8).map((i) => 16 + i));
  });

  it("rejects a constant index out of range", () => {
    expect(() => MOVEMENT_OPS.Gather.infer(node("Gather", { axis: 1 }), [val(x, false), val(i64([4]))])).toThrow(/out of range/);
  });
});

describe("Pad", () => {
  const x = f32([1, 3], [1, 2, 3]);

  it("reflect repeats with period 2(d-1) even past the axis size (numpy semantics)", () => {
    const [y] = MOVEMENT_OPS.Pad.eval!(node("Pad", { mode: "reflect" }), [x, i64([0, 5, 0, 6])]);
    expect(toNumbers(y)).toEqual([2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2, 1]);
  });

  it("wrap and a constant value with axes", () => {
    const [w] = MOVEMENT_OPS.Pad.eval!(node("Pad", { mode: "wrap" }), [x, i64([0, 5, 0, 6])]);
    expect(toNumbers(w)).toEqual([2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
    const [c] = MOVEMENT_OPS.Pad.eval!(node("Pad"), [x, i64([1, -1]), f32([], [9]), i64([-1])]);
    expect(toNumbers(c)).toEqual([9, 1, 2]);
  });
});

describe("shape ops", () => {
  it("Shape honours start and end", () => {
    const x = { dtype: "float32" as const, shape: [2, 3, 4, 5], data: new Float32Array(0) };
    const [s] = MOVEMENT_OPS.Shape.eval!(node("Shape", { start: -3, end: -1 }), [x]);
    expect(s.dtype).toBe("int64");
    expect(toNumbers(s)).toEqual([3, 4]);
  });

  it("Dropout in training mode is refused", () => {
    const x = f32([2], [1, 2]);
    const training = val(fromNumbers("bool", [], [1]));
    expect(() => MOVEMENT_OPS.Dropout.infer(node("Dropout", {}, ["y"], 13), [val(x, false), undefined, training])).toThrow(/training/);
  });
});
