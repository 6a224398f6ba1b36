import { afterAll, describe, expect, it } from "vitest";
import { compileModel, runGraphPasses } from "../../src/driver/pipeline.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { bytesMoved } from "../../src/graph/cost.js";
import { loadTarget } from "../../src/target/load.js";
import { expectLikeOrt } from "../helpers/against-ort.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

let seed = 3;
const rand = (n: number) => Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const X = [1, 6, 6, 5];
const OUTS = ["y0", "y1", "y2", "y3", "z"];

/**
 * Splits whose results are read in place: channels 2 + 4 into a Relu and a Conv, and rows in three
 * equal parts into an Add and a Mul; and a Split one of whose results is a graph output, which stays.
 */
const bytes = modelBytes({
  inputs: [valueInfo("x", T.FLOAT, X)],
  initializers: [
    tensorProto("sizes", T.INT64, [2], { int64Data: [2, 4] }),
    tensorProto("sizes2", T.INT64, [2], { int64Data: [2, 3] }),
    tensorProto("w", T.FLOAT, [3, 4, 1, 1], { floatData: rand(12) }),
  ],
  nodes: [
    node("Split", ["x", "sizes"], ["c0", "c1"], [attr.i("axis", 1)]),
    node("Relu", ["c0"], ["y0"]),
    node("Conv", ["c1", "w"], ["y1"]),
    node("Split", ["x"], ["r0", "r1", "r2"], [attr.i("axis", -2)]),
    node("Add", ["r0", "r1"], ["s"]),
    node("Mul", ["s", "r2"], ["y2"]),
    node("Split", ["y2", "sizes2"], ["h0", "z"], [attr.i("axis", 3)]),
    node("Sigmoid", ["h0"], ["y3"]),
  ],
  outputs: OUTS.map((n) => valueInfo(n, T.FLOAT)),
});

const work = tempDir("edgec-split-");
afterAll(() => work.cleanup());
const file = work.write("split.onnx", bytes);

describe("split-slices", () => {
  it("turns a Split whose results are read in place into Slices that its readers compute", () => {
    const g = runGraphPasses(importOnnx(file, {}).graph, {});
    const ops = g.nodes.flatMap((n) => n.fused?.body ?? [n]).map((n) => n.op);
    expect(ops.filter((op) => op === "Split")).toHaveLength(1);
    expect(ops.filter((op) => op === "Slice")).toHaveLength(5);
    // Every Slice is computed inside a kernel, none is a kernel of its own.
    expect(g.nodes.filter((n) => n.op === "Slice")).toHaveLength(0);
    for (const v of ["c0", "c1", "r0", "r1", "r2"]) expect(g.memory.offsets[v], v).toBeUndefined();
    const unsplit = runGraphPasses(importOnnx(file, {}).graph, { cpuFusions: true, fuse: false });
    expect(bytesMoved(g)).toBeLessThan(bytesMoved(unsplit));
    expect(compileModel(file, { target: loadTarget("host") }).program.kernels.length).toBeLessThan(compileModel(file, { target: loadTarget("host"), fuse: false }).program.kernels.length);
  });

  it("runs as onnxruntime does", async () => {
    const x = Float32Array.from(rand(X.reduce((a, b) => a * b, 1)));
    await expectLikeOrt(file, work.dir + "/host", x, X, OUTS, { target: loadTarget("host") });
  });
});
