import { afterAll, describe, expect, it } from "vitest";
import { runGraphPasses } from "../../src/driver/pipeline.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { bytesMoved } from "../../src/graph/cost.js";
import { loadTarget } from "../../src/target/load.js";
import { expectLikeOrt } from "../helpers/against-ort.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

let seed = 5;
const rand = (n: number) => Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const weight = (name: string, dims: number[]) => tensorProto(name, T.FLOAT, dims, { floatData: rand(dims.reduce((a, b) => a * b, 1)).map((v) => v * 0.3) });

/**
 * x → Conv+Relu (6 ch), Conv+Relu (5 ch, also read by a Sigmoid output), MaxPool (4 ch) → Concat on
 * the channel axis → AveragePool (not a Conv, which rewrite-concat would split over the slices); and a Concat on the height axis, whose inputs are not contiguous
 * slices of its output.
 */
const bytes = modelBytes({
  inputs: [valueInfo("x", T.FLOAT, [1, 4, 8, 8])],
  initializers: [weight("wa", [6, 4, 1, 1]), weight("wb", [5, 4, 3, 3])],
  nodes: [
    node("Conv", ["x", "wa"], ["a"]),
    node("Relu", ["a"], ["ra"]),
    node("Conv", ["x", "wb"], ["b"], [attr.ints("pads", [1, 1, 1, 1])]),
    node("Relu", ["b"], ["rb"]),
    node("MaxPool", ["x"], ["p"], [attr.ints("kernel_shape", [3, 3]), attr.ints("pads", [1, 1, 1, 1])]),
    node("Concat", ["ra", "rb", "p"], ["cat"], [attr.i("axis", 1)]),
    node("AveragePool", ["cat"], ["y"], [attr.ints("kernel_shape", [2, 2]), attr.ints("strides", [2, 2])]),
    node("Sigmoid", ["rb"], ["z"]),
    node("Concat", ["ra", "ra"], ["rows"], [attr.i("axis", 2)]),
    node("Tanh", ["rows"], ["w"]),
  ],
  outputs: [valueInfo("y", T.FLOAT), valueInfo("z", T.FLOAT), valueInfo("w", T.FLOAT)],
});

const work = tempDir("edgec-concat-view-");
afterAll(() => work.cleanup());
const file = work.write("cat.onnx", bytes);

describe("concat views", () => {
  it("writes each input of a channel Concat straight into its slice, and copies where slices are not contiguous", () => {
    const g = runGraphPasses(importOnnx(file, {}).graph, {});
    const cat = g.nodes.filter((n) => n.op === "ConcatView");
    expect(cat.map((n) => n.outputs[0])).toEqual(["cat"]);
    // The other Concat (axis 2 of a 6-channel tensor: 6 separate runs) is still a kernel of its own.
    expect(g.nodes.flatMap((n) => n.fused?.body ?? [n]).filter((n) => n.op === "Concat").map((n) => n.outputs[0])).toEqual(["rows"]);
    // Relu is its Conv's epilogue, writing into the slice; no kernel copies ra, rb or p again.
    expect(g.nodes.find((n) => n.outputs[0] === "ra")?.fused?.reason).toBe("Conv kernel, epilogue [Relu]");
    const off = g.memory.offsets;
    expect([off.rb - off.cat, off.p - off.cat, off.ra - off.cat]).toEqual([6 * 64 * 4, 11 * 64 * 4, 0]);
    const off2 = runGraphPasses(importOnnx(file, {}).graph, { cpuFusions: false });
    expect(off2.nodes.some((n) => n.op === "ConcatView")).toBe(false);
    expect(bytesMoved(g)).toBeLessThan(bytesMoved(off2));
    expect(g.schedule.peakBytes).toBeLessThan(off2.schedule.peakBytes);
  });

  for (const t of ["host", "rpi4"]) {
    it(`runs as onnxruntime does on ${t}`, async () => {
      const x = Float32Array.from(rand(256));
      await expectLikeOrt(file, work.dir + `/${t}`, x, [1, 4, 8, 8], ["y", "z", "w"], { target: loadTarget(t) });
    });
  }
});
