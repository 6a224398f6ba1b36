import { join } from "node:path";
import ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { fromNumbers, toNumbers } from "../../src/core/tensor.js";
import { buildArtifact } from "../../src/driver/artifact.js";
import { runGraphPasses } from "../../src/driver/pipeline.js";
import { runArtifact } from "../../src/driver/run.js";
import { compare } from "../../src/driver/verify.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { interpret } from "../../src/graph/interp.js";
import { inferShapes } from "../../src/graph/passes/infer-shapes.js";
import { rewriteConcat } from "../../src/graph/passes/rewrite-concat.js";
import { verifyGraph } from "../../src/graph/verify.js";
import { loadTarget } from "../../src/target/load.js";
import { expectLikeOrt } from "../helpers/against-ort.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

let seed = 11;
const rand = (n: number) => Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
const weight = (name: string, dims: number[]) => tensorProto(name, T.FLOAT, dims, { floatData: rand(numel(dims)).map((v) => v * 0.3) });

/**
 * x → two convolutions a (16 ch) and b (24 ch) → Concat → Relu → `head`: a 1×1 convolution to 8
 * channels, or a depthwise 3×3 one. The Concat's result and both its inputs are live at once unless
 * the convolution is split over the slices. `deep`: b comes from a 32-channel convolution first, so
 * that a is live through it, even with the Concat written in place, unless a is consumed first.
 */
function model(head: "conv" | "depthwise", deep = false) {
  const c = 40;
  const headNode =
    head === "conv"
      ? node("Conv", ["r", "wh", "bh"], ["y"])
      : node("Conv", ["r", "wh", "bh"], ["y"], [attr.i("group", c), attr.ints("pads", [1, 1, 1, 1])]);
  return modelBytes({
    inputs: [valueInfo("x", T.FLOAT, [1, 4, 12, 12])],
    initializers: [
      weight("wa", [16, 4, 1, 1]),
      weight("wb", [24, deep ? 32 : 4, 3, 3]),
      ...(deep ? [weight("wm", [32, 4, 3, 3])] : []),
      weight("wh", head === "conv" ? [8, c, 1, 1] : [c, 1, 3, 3]),
      weight("bh", [head === "conv" ? 8 : c]),
    ],
    nodes: [
      node("Conv", ["x", "wa"], ["a"]),
      ...(deep ? [node("Conv", ["x", "wm"], ["m"], [attr.ints("pads", [1, 1, 1, 1])])] : []),
      node("Conv", [deep ? "m" : "x", "wb"], ["b"], [attr.ints("pads", [1, 1, 1, 1])]),
      node("Concat", ["a", "b"], ["cat"], [attr.i("axis", 1)]),
      node("Relu", ["cat"], ["r"]),
      headNode,
    ],
    outputs: [valueInfo("y", T.FLOAT)],
  });
}

/**
 * The `deep` model with a conv head, pooled down to 3×3, then a second Concat of two 1×1
 * convolutions feeding a 1×1 convolution (weights wt): its tensors are tiny, so splitting that
 * second convolution cannot lower the peak, which the first split sets.
 */
function twoConcats() {
  return modelBytes({
    inputs: [valueInfo("x", T.FLOAT, [1, 4, 12, 12])],
    initializers: [weight("wa", [16, 4, 1, 1]), weight("wb", [24, 32, 3, 3]), weight("wm", [32, 4, 3, 3]), weight("wh", [8, 40, 1, 1]), weight("bh", [8]), weight("wc", [4, 8, 1, 1]), weight("wd", [4, 8, 1, 1]), weight("wt", [2, 8, 1, 1])],
    nodes: [
      node("Conv", ["x", "wa"], ["a"]),
      node("Conv", ["x", "wm"], ["m"], [attr.ints("pads", [1, 1, 1, 1])]),
      node("Conv", ["m", "wb"], ["b"], [attr.ints("pads", [1, 1, 1, 1])]),
      node("Concat", ["a", "b"], ["cat"], [attr.i("axis", 1)]),
      node("Relu", ["cat"], ["r"]),
      node("Conv", ["r", "wh", "bh"], ["h"]),
      node("MaxPool", ["h"], ["p"], [attr.ints("kernel_shape", [4, 4]), attr.ints("strides", [4, 4])]),
      node("Conv", ["p", "wc"], ["c"]),
      node("Conv", ["p", "wd"], ["d"]),
      node("Concat", ["c", "d"], ["cat2"], [attr.i("axis", 1)]),
      node("Conv", ["cat2", "wt"], ["y"]),
    ],
    outputs: [valueInfo("y", T.FLOAT)],
  });
}

const work = tempDir("edgec-rewrite-concat-");
afterAll(() => work.cleanup());

describe("rewriteConcat", () => {
  it("splits a Concat → Relu → Conv into partial convolutions over each slice, summed", () => {
    const g = importOnnx(work.write("conv.onnx", model("conv")), {}).graph;
    const r = rewriteConcat(inferShapes(g));
    verifyGraph(r);
    expect(r.nodes.map((n) => n.op)).toEqual(["Conv", "Conv", "Relu", "Conv", "Relu", "Conv", "Add"]);
    expect(r.nodes.some((n) => n.op === "Concat")).toBe(false);
    const partial = r.nodes.filter((n) => n.inputs.some((i) => i.startsWith("wh/")));
    expect(partial.map((n) => r.values.get(n.inputs[1])!.shape)).toEqual([[8, 16, 1, 1], [8, 24, 1, 1]]);
    const x = fromNumbers("float32", [1, 4, 12, 12], rand(576));
    const want = toNumbers(interpret(g, { x }).y);
    toNumbers(interpret(r, { x }).y).forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
  });

  it("splits a depthwise convolution after a Concat into one per slice", () => {
    const g = importOnnx(work.write("dw.onnx", model("depthwise")), {}).graph;
    const r = rewriteConcat(inferShapes(g));
    const dw = r.nodes.filter((n) => n.op === "Conv" && n.inputs.some((i) => i.startsWith("wh/")));
    expect(dw.map((n) => n.attrs.group)).toEqual([16, 24]);
    expect(r.nodes[r.nodes.length - 1].op).toBe("Concat");
    const x = fromNumbers("float32", [1, 4, 12, 12], rand(576));
    const want = toNumbers(interpret(g, { x }).y);
    toNumbers(interpret(r, { x }).y).forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
  });

  it("leaves a Concat alone when its result is also read by something other than convolutions", () => {
    const bytes = modelBytes({
      inputs: [valueInfo("x", T.FLOAT, [1, 4, 6, 6])],
      initializers: [weight("w", [3, 8, 1, 1])],
      nodes: [node("Concat", ["x", "x"], ["cat"], [attr.i("axis", 1)]), node("Conv", ["cat", "w"], ["y"]), node("Sigmoid", ["cat"], ["z"])],
      outputs: [valueInfo("y", T.FLOAT), valueInfo("z", T.FLOAT)],
    });
    const g = inferShapes(importOnnx(work.write("keep.onnx", bytes), {}).graph);
    expect(rewriteConcat(g)).toBe(g);
  });

  it("is kept by the pipeline only for the Concats the peak needs", async () => {
    const file = work.write("two-concats.onnx", twoConcats());
    const dumps: Record<string, string> = {};
    const p = runGraphPasses(importOnnx(file, {}).graph, { dumpAfter: ["rewrite-concat"], dump: (t, s) => (dumps[t] = s) });
    expect(p.schedule.rewrites).toEqual(["rewrite-concat"]);
    expect(p.schedule.peakBytes).toBeLessThan(p.schedule.dpPeakBytes);
    expect(p.schedule.optimal).toBe(true);
    const weights = new Set(p.nodes.flatMap((n) => n.fused?.body ?? [n]).flatMap((m) => m.inputs));
    expect(weights.has("wh/s0") && weights.has("wh/s1"), "the first head is split").toBe(true);
    expect(weights.has("wt"), "the last convolution is whole").toBe(true);
    expect(dumps["after:rewrite-concat"]).toMatch(/wh\/s0/);
    expect(dumps["after:rewrite-concat"]).not.toMatch(/wt\/s0/);
    await expectLikeOrt(file, join(work.dir, "two-concats"), Float32Array.from(rand(576)), [1, 4, 12, 12], ["y"], { target: loadTarget("host") });
  });

  it("is kept by the pipeline when it lowers the peak, and the C it makes matches onnxruntime", async () => {
    for (const head of ["conv", "depthwise"] as const) {
      const file = work.write(`${head}-e2e.onnx`, model(head, true));
      const dumps: Record<string, string> = {};
      const p = runGraphPasses(importOnnx(file, {}).graph, { dumpAfter: ["rewrite-concat"], dump: (t, s) => (dumps[t] = s) });
      expect(p.schedule.rewrites).toEqual(["rewrite-concat"]);
      expect(p.schedule.peakBytes).toBeLessThan(p.schedule.dpPeakBytes);
      expect(p.schedule.dpPeakBytes).toBeLessThanOrEqual(p.schedule.topoPeakBytes);
      expect(dumps["after:rewrite-concat"]).not.toMatch(/not applied/);
      const members = p.nodes.flatMap((n) => n.fused?.body ?? [n]);
      expect(members.some((m) => m.op === "Concat" && m.inputs.includes("a"))).toBe(false);
      const x = Float32Array.from(rand(576));
      const session = await ort.InferenceSession.create(file);
      const ref = (await session.run({ x: new ort.Tensor("float32", x, [1, 4, 12, 12]) })).y;
      const dir = join(work.dir, head);
      await buildArtifact(file, dir, { target: loadTarget("host") });
      const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: [1, 4, 12, 12], data: x } });
      const cmp = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
      expect(cmp.pass, `${head}: max abs error ${cmp.maxAbs}`).toBe(true);
    }
  });
});
