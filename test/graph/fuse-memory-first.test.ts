import { join } from "node:path";
import ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { runGraphPasses } from "../../src/driver/pipeline.js";
import { runArtifact } from "../../src/driver/run.js";
import { compare } from "../../src/driver/verify.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import type { Graph, Node } from "../../src/graph/ir.js";
import { foldBatchnorm } from "../../src/graph/passes/fold-batchnorm.js";
import { fuse } from "../../src/graph/passes/fuse.js";
import { inferShapes } from "../../src/graph/passes/infer-shapes.js";
import { memoryModel } from "../../src/graph/memory.js";
import { loadTarget } from "../../src/target/load.js";
import { expectLikeOrt } from "../helpers/against-ort.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

let seed = 5;
const rand = (n: number) => Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const weight = (name: string, dims: number[]) => tensorProto(name, T.FLOAT, dims, { floatData: rand(dims.reduce((a, b) => a * b, 1)).map((v) => v * 0.3) });
const pad1 = [attr.ints("pads", [1, 1, 1, 1])];

/**
 * A RandWire-style node: y = Conv(Relu(a·0.5 + b + c)), where a is made first and b and c each
 * come out of a chain of their own. Fused for speed, one kernel reads a, b and c together, so all
 * three are live at once; fused for memory, a + b is a kernel of its own that frees a and b before
 * c's chain runs.
 */
const SUM3 = modelBytes({
  inputs: [valueInfo("x", T.FLOAT, [1, 8, 12, 12])],
  initializers: [weight("wa", [8, 8, 3, 3]), weight("wm", [8, 8, 3, 3]), weight("wb", [8, 8, 3, 3]), weight("wn", [8, 8, 3, 3]), weight("wc", [8, 8, 3, 3]), weight("wy", [4, 8, 1, 1]), tensorProto("half", T.FLOAT, [], { floatData: [0.5] })],
  nodes: [
    node("Conv", ["x", "wa"], ["a"], pad1),
    node("Conv", ["x", "wm"], ["m"], pad1),
    node("Conv", ["m", "wb"], ["b"], pad1),
    node("Conv", ["x", "wn"], ["n"], pad1),
    node("Conv", ["n", "wc"], ["c"], pad1),
    node("Mul", ["a", "half"], ["as"]),
    node("Add", ["as", "b"], ["ab"]),
    node("Add", ["ab", "c"], ["abc"]),
    node("Relu", ["abc"], ["r"]),
    node("Conv", ["r", "wy"], ["y"]),
  ],
  outputs: [valueInfo("y", T.FLOAT)],
});

const work = tempDir("edgec-memory-first-");
afterAll(() => work.cleanup());

/** The computed tensors each kernel reads from memory (not weights, not graph inputs). */
function computedReads(g: Graph): Map<string, string[]> {
  const m = memoryModel(g);
  const buffers = new Set(m.buffers.map((b) => b.value));
  return new Map(m.kernels.map((k: Node) => [k.name, k.inputs.filter((i) => buffers.has(i))]));
}

describe("fuse with memoryFirst", () => {
  const g = foldBatchnorm(inferShapes(importOnnx(work.write("sum3.onnx", SUM3)).graph));

  it("gives joins kernels of their own, so no kernel reads three computed tensors", () => {
    const fast = computedReads(fuse(g));
    expect(Math.max(...[...fast.values()].map((r) => r.length))).toBe(3);
    const lean = fuse(g, { memoryFirst: true });
    const reads = computedReads(lean);
    expect(Math.max(...[...reads.values()].map((r) => r.length))).toBe(2);
    // The partial sum a·0.5 + b is stored, and read by the kernel that adds c.
    expect([...reads.values()].some((r) => r.includes("ab"))).toBe(true);
  });

  it("keeps no epilogue that reads another computed tensor: only elementwise kernels read two", () => {
    const kernelsReadingTwo = (h: Graph) => {
      const reads = computedReads(h);
      return h.nodes.filter((n) => (reads.get(n.name) ?? []).length >= 2);
    };
    // For speed, a + b is the epilogue of b's Conv; for memory, it is a kernel of its own.
    expect(kernelsReadingTwo(fuse(g)).some((n) => n.fused?.body.some((m) => m.op === "Conv"))).toBe(true);
    const lean = kernelsReadingTwo(fuse(g, { memoryFirst: true }));
    expect(lean.length).toBeGreaterThan(0);
    for (const n of lean) expect((n.fused?.body ?? [n]).map((m) => m.op).filter((op) => op === "Conv"), n.name).toEqual([]);
  });

  it("is kept by the pipeline when it lowers the peak, and the C it makes matches onnxruntime", async () => {
    const file = join(work.dir, "sum3.onnx");
    // Optimized for speed (the default), the pipeline does not try it.
    const fast = runGraphPasses(importOnnx(file).graph, {});
    expect(fast.schedule.rewrites).toEqual([]);
    const p = runGraphPasses(importOnnx(file).graph, { optimize: "memory" });
    expect(p.schedule.rewrites).toEqual(["fuse (memory-first)"]);
    expect(p.schedule.peakBytes).toBeLessThan(fast.schedule.peakBytes);
    expect(p.schedule.peakBytes).toBeLessThan(p.schedule.dpPeakBytes);
    expect(p.schedule.dpPeakBytes).toBeLessThanOrEqual(p.schedule.topoPeakBytes);
    const x = Float32Array.from(rand(8 * 144));
    const session = await ort.InferenceSession.create(file);
    const ref = (await session.run({ x: new ort.Tensor("float32", x, [1, 8, 12, 12]) })).y;
    const dir = join(work.dir, "sum3");
    const host = loadTarget("host");
    const { manifest } = await buildArtifact(file, dir, { target: host, optimize: "memory" });
    const speed = (await buildArtifact(file, join(work.dir, "sum3-speed"), { target: host, stopAfter: "codegen" })).manifest;
    expect(manifest.arenaBytes).toBeLessThan(speed.arenaBytes);
    expect([manifest.optimize, speed.optimize]).toEqual(["memory", "speed"]);
    // A budget only the build for memory fits: taken when no goal is given, refused for speed.
    const budget = manifest.arenaBytes;
    const fitted = await buildArtifact(file, join(work.dir, "sum3-budget"), { target: host, memoryBudget: budget, stopAfter: "codegen" });
    expect(fitted.manifest.arenaBytes).toBe(budget);
    expect(fitted.manifest.optimize).toBe("memory");
    await expect(buildArtifact(file, join(work.dir, "sum3-fast"), { target: host, memoryBudget: budget, optimize: "speed", stopAfter: "codegen" })).rejects.toThrow(
      /over the budget .*: its smallest peak of live tensors optimized for speed \(--optimize memory may need less\) is/,
    );
    const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: [1, 8, 12, 12], data: x } });
    const cmp = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
    expect(cmp.pass, `max abs error ${cmp.maxAbs}`).toBe(true);
  });

  for (const second of ["pointwise", "depthwise"] as const) {
    it(`inlines a Relu into the Conv that reads it, which may still run in place over the Relu's input (${second}), on x86 and NEON`, async () => {
      // s is read by two pre-activation convolutions (Relu → Conv, as a DARTS cell's preprocessing
      // reads the cell before it): a 1×1 one (16 → 4 channels), and the second, a 1×1 one or a
      // depthwise 3×3 one followed by a 1×1 one (16 → 4). A stored Relu of s holds s and itself at
      // once; inlined, each Conv reads s, the second writing over it.
      const hw = 10, u = hw * hw * 4;
      const file = work.write(`preact-${second}.onnx`, modelBytes({
        inputs: [valueInfo("x", T.FLOAT, [1, 8, hw, hw])],
        initializers: [weight("ws", [16, 8, 1, 1]), weight("wa", [4, 16, 1, 1]), weight("ba", [4]), weight("wb", [4, 16, 1, 1]), weight("wd", [16, 1, 3, 3])],
        nodes: [
          node("Conv", ["x", "ws"], ["s"]),
          node("Relu", ["s"], ["r1"]),
          node("Conv", ["r1", "wa", "ba"], ["a"]),
          node("Relu", ["s"], ["r2"]),
          ...(second === "pointwise"
            ? [node("Conv", ["r2", "wb"], ["b"])]
            : [node("Conv", ["r2", "wd"], ["d"], [attr.i("group", 16), pad1[0]]), node("Conv", ["d", "wb"], ["b"])]),
          node("Add", ["a", "b"], ["y"]),
        ],
        outputs: [valueInfo("y", T.FLOAT)],
      }));
      const p = runGraphPasses(importOnnx(file).graph, { inPlaceConvs: { threads: 2 }, optimize: "memory" });
      expect(p.schedule.rewrites).toEqual(["fuse (memory-first)", "conv-in-place"]);
      expect(p.nodes.filter((n) => n.op === "Relu")).toEqual([]);
      // Both Convs that read s compute their Relu themselves.
      expect(p.nodes.filter((n) => n.fused?.body.map((m) => m.op).join() === "Relu,Conv" && n.inputs.includes("s"))).toHaveLength(2);
      // Before the rewrites: s, its Relu and the first Conv's result.
      expect(p.schedule.dpPeakBytes).toBe(36 * u);
      expect(p.schedule.peakBytes).toBe(20 * u);
      expect(p.memory.arenaBytes).toBe(20 * u);
      // The second Conv writes over s, which it reads through its Relu (and the 1×1 after a depthwise one over its result).
      expect(Object.values(p.memory.inPlace).sort()).toEqual(second === "pointwise" ? ["s"] : ["d", "s"]);
      for (const target of ["host", "rpi4"]) {
        const dir = join(work.dir, `preact-${second}-${target}`);
        await expectLikeOrt(file, dir, Float32Array.from(rand(8 * hw * hw)), [1, 8, hw, hw], ["y"], { target: loadTarget(target), optimize: "memory" });
      }
    });
  }

  it("is not kept where it does not lower the peak: a two-input residual Add stays a Conv epilogue", () => {
    const bytes = modelBytes({
      inputs: [valueInfo("x", T.FLOAT, [1, 8, 12, 12])],
      initializers: [weight("w1", [8, 8, 3, 3]), weight("w2", [8, 8, 3, 3])],
      nodes: [node("Conv", ["x", "w1"], ["h"], pad1), node("Relu", ["h"], ["r"]), node("Conv", ["r", "w2"], ["z"], pad1), node("Add", ["z", "r"], ["y"])],
      outputs: [valueInfo("y", T.FLOAT)],
    });
    const g2 = foldBatchnorm(inferShapes(importOnnx(work.write("residual.onnx", bytes)).graph));
    const lean = fuse(g2, { memoryFirst: true });
    expect(lean.nodes.some((n) => n.fused?.body.some((m) => m.op === "Add" && n.fused!.epilogue.includes(m.name)))).toBe(false);
    const p = runGraphPasses(importOnnx(join(work.dir, "residual.onnx")).graph, { optimize: "memory" });
    expect(p.schedule.rewrites).toEqual([]);
    expect(p.nodes.some((n) => n.fused?.body.some((m) => m.op === "Add" && n.fused!.epilogue.includes(m.name)))).toBe(true);
  });
});
