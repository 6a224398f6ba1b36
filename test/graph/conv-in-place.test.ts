import { join } from "node:path";
import ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { runGraphPasses, unfusedGraph } from "../../src/driver/pipeline.js";
import { runArtifact } from "../../src/driver/run.js";
import { compare } from "../../src/driver/verify.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { memoryModel, simulate } from "../../src/graph/memory.js";
import { anchorOf, type Graph } from "../../src/graph/ir.js";
import { convInPlace, keepNeeded } from "../../src/graph/passes/conv-in-place.js";
import { fuse } from "../../src/graph/passes/fuse.js";
import { inferShapes } from "../../src/graph/passes/infer-shapes.js";
import { scheduleMemory } from "../../src/graph/passes/schedule-memory.js";
import { loadTarget } from "../../src/target/load.js";
import { expectLikeOrt } from "../helpers/against-ort.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

let seed = 5;
const rand = (n: number) => Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const weight = (name: string, dims: number[]) => tensorProto(name, T.FLOAT, dims, { floatData: rand(dims.reduce((a, b) => a * b, 1)).map((v) => v * 0.3) });
const pads = attr.ints("pads", [1, 1, 1, 1]);
const C = 16;

/**
 * x → s (1×1 conv, 8 → 16 channels) → Relu → the convolution `first` (depthwise 3×3 or 1×1, 16 → 16)
 * → the other one → y, their last result added to t, a 3×3 convolution of s. Whichever of s and t
 * the order makes first, one of them is live while the chain runs, so its first step holds three
 * tensors (that one, its input, its output) unless its output takes over its input; the second
 * step's result is added to t in its epilogue and goes straight to the output. With `silu` the
 * first step's result goes through a SiLU (x·sigmoid(x)), fused into its kernel. On maps of `hw`
 * over 62, a channel's padded copy exceeds what the depthwise lowering copies otherwise: in place,
 * it must copy anyway.
 */
function chain(first: "depthwise" | "pointwise", hw = 12, silu = false) {
  const dw = (i: string, o: string) => node("Conv", [i, "wd", "bd"], [o], [attr.i("group", C), pads]);
  const pw = (i: string, o: string) => node("Conv", [i, "wp", "bp"], [o]);
  return modelBytes({
    inputs: [valueInfo("x", T.FLOAT, [1, 8, hw, hw])],
    initializers: [weight("ws", [C, 8, 1, 1]), weight("wt", [C, C, 3, 3]), weight("wd", [C, 1, 3, 3]), weight("bd", [C]), weight("wp", [C, C, 1, 1]), weight("bp", [C])],
    nodes: [
      node("Conv", ["x", "ws"], ["s"]),
      node("Conv", ["s", "wt"], ["t"], [pads]),
      node("Relu", ["s"], ["r"]),
      ...(first === "depthwise" ? [dw("r", "a0")] : [pw("r", "a0")]),
      ...(silu ? [node("Sigmoid", ["a0"], ["g"]), node("Mul", ["a0", "g"], ["a"])] : [node("Identity", ["a0"], ["a"])]),
      ...(first === "depthwise" ? [pw("a", "b")] : [dw("a", "b")]),
      node("Add", ["b", "t"], ["y"]),
    ],
    outputs: [valueInfo("y", T.FLOAT)],
  });
}

/**
 * x → s (1×1, 8 → cin) → Relu r → a (1×1, cin → cout) → b (depthwise) + t (3×3 of s, cin → cout)
 * → y. Run t first and let r write over s: a's step holds r, a and t unless a writes over r, the
 * smaller of the two then holding both (8 + 16 + 16 channels against 16 + 16 when widening, 16 + 8
 * + 8 against 16 + 8 when narrowing).
 */
function changing(cin: number, cout: number, hw: number) {
  return modelBytes({
    inputs: [valueInfo("x", T.FLOAT, [1, 8, hw, hw])],
    initializers: [weight("ws", [cin, 8, 1, 1]), weight("wt", [cout, cin, 3, 3]), weight("wa", [cout, cin, 1, 1]), weight("ba", [cout]), weight("wd", [cout, 1, 3, 3])],
    nodes: [
      node("Conv", ["x", "ws"], ["s"]),
      node("Conv", ["s", "wt"], ["t"], [pads]),
      node("Relu", ["s"], ["r"]),
      node("Conv", ["r", "wa", "ba"], ["a"]),
      node("Conv", ["a", "wd"], ["b"], [attr.i("group", cout), pads]),
      node("Add", ["b", "t"], ["y"]),
    ],
    outputs: [valueInfo("y", T.FLOAT)],
  });
}

const work = tempDir("edgec-conv-in-place-");
afterAll(() => work.cleanup());
const graphOf = (name: string, bytes: Uint8Array) => inferShapes(importOnnx(work.write(name, bytes), {}).graph);
/** The outputs of the kernels whose Conv is marked in place, in graph order. */
const markedOutputs = (g: Graph) => g.nodes.filter((n) => (n.fused?.body ?? [n]).some((m) => m.attrs.inPlace)).map((n) => n.outputs[0]);

describe("convInPlace", () => {
  it("marks depthwise convolutions and 1×1 ones of computed tensors whose output has their input's shape, and with `channels` the 1×1 ones changing the channel count", () => {
    const bytes = modelBytes({
      inputs: [valueInfo("x", T.FLOAT, [1, 8, 12, 12])],
      initializers: [weight("w1", [8, 8, 1, 1]), weight("w2", [8, 1, 3, 3]), weight("w3", [8, 1, 3, 3]), weight("w4", [16, 8, 1, 1]), weight("w5", [16, 16, 3, 3]), weight("w6", [16, 1, 3, 3])],
      nodes: [
        node("Relu", ["x"], ["r"]),
        node("Conv", ["r", "w1"], ["pw"]),
        node("Conv", ["pw", "w2"], ["dw"], [attr.i("group", 8), pads]),
        node("Conv", ["dw", "w3"], ["strided"], [attr.i("group", 8), pads, attr.ints("strides", [2, 2])]),
        node("Conv", ["dw", "w4"], ["wider"]),
        node("Conv", ["wider", "w5"], ["full"], [pads]),
        node("Conv", ["full", "w6"], ["y"], [attr.i("group", 16), pads]),
        node("Conv", ["x", "w1"], ["fromInput"]),
      ],
      outputs: [valueInfo("strided", T.FLOAT), valueInfo("y", T.FLOAT), valueInfo("fromInput", T.FLOAT)],
    });
    const g = graphOf("kinds.onnx", bytes);
    // Not the stride-2 one, the 3×3 one or the one of the graph's input (the caller's memory); the
    // last reads a computed tensor too.
    expect(markedOutputs(convInPlace(g, { threads: 1 }))).toEqual(["pw", "dw", "y"]);
    expect(markedOutputs(convInPlace(g, { threads: 1, channels: true }))).toEqual(["pw", "dw", "wider", "y"]);
    // The graph it was given is left as it was.
    expect(g.nodes.some((n) => n.attrs.inPlace)).toBe(false);
  });

  it("lets a marked convolution take over its input's buffer in the memory model, and only then", () => {
    const g = graphOf("chain-model.onnx", chain("depthwise"));
    const candidates = (m: ReturnType<typeof memoryModel>, out: string) => {
      const k = m.kernels.findIndex((n) => n.outputs[0] === out);
      return m.inPlace[k].map((b) => m.buffers[b].value);
    };
    expect(candidates(memoryModel(g), "a0")).toEqual([]);
    // The depthwise convolution reads r, the Relu's result.
    expect(candidates(memoryModel(convInPlace(g, { threads: 1 })), "a0")).toEqual(["r"]);
  });

  it("leaves kernels whose other members are not elementwise ops on its result, and depthwise ones with under two channels per thread", async () => {
    // s's Relu, transposed, is added to the depthwise convolution of s: fused into its kernel, the
    // Transpose would read s at other indices than the output's, after they were overwritten.
    const transposed = modelBytes({
      inputs: [valueInfo("x", T.FLOAT, [1, 8, 12, 12])],
      initializers: [weight("ws", [C, 8, 1, 1]), weight("wt", [C, C, 3, 3]), weight("wd", [C, 1, 3, 3]), weight("wn", [C, C, 3, 3])],
      nodes: [
        node("Conv", ["x", "ws"], ["s"]),
        node("Conv", ["s", "wt"], ["t"], [pads]),
        node("Relu", ["s"], ["r"]),
        node("Transpose", ["r"], ["q"], [attr.ints("perm", [0, 1, 3, 2])]),
        node("Conv", ["s", "wd"], ["a0"], [attr.i("group", C), pads]),
        node("Add", ["a0", "q"], ["a"]),
        node("Conv", ["a", "wn"], ["b"], [pads]),
        node("Add", ["b", "t"], ["y"]),
      ],
      outputs: [valueInfo("y", T.FLOAT)],
    });
    // A 1×1 convolution whose epilogue ends in a 3×3 stride-1 MaxPool (a banded pool: the map never reaches memory).
    const pooled = modelBytes({
      inputs: [valueInfo("x", T.FLOAT, [1, 8, 12, 12])],
      initializers: [weight("ws", [C, 8, 1, 1]), weight("wt", [C, C, 3, 3]), weight("wp", [C, C, 1, 1]), weight("bp", [C]), weight("wn", [C, C, 3, 3])],
      nodes: [
        node("Conv", ["x", "ws"], ["s"]),
        node("Conv", ["s", "wt"], ["t"], [pads]),
        node("Conv", ["s", "wp", "bp"], ["a0"]),
        node("MaxPool", ["a0"], ["a"], [attr.ints("kernel_shape", [3, 3]), pads]),
        node("Conv", ["a", "wn"], ["b"], [pads]),
        node("Add", ["b", "t"], ["y"]),
      ],
      outputs: [valueInfo("y", T.FLOAT)],
    });
    for (const [name, bytes] of [["transposed", transposed], ["pooled", pooled]] as const) {
      const file = work.write(`${name}.onnx`, bytes);
      const g = runGraphPasses(importOnnx(file, {}).graph, { cpuFusions: true, inPlaceConvs: { threads: 1 } });
      const fused = g.nodes.find((n) => n.fused?.body.some((m) => m.op === (name === "pooled" ? "MaxPool" : "Transpose")))!;
      expect(fused.fused!.body.some((m) => m.op === "Conv"), `${name}: the convolution's kernel`).toBe(true);
      expect(g.nodes.some((n) => (n.fused?.body ?? [n]).some((m) => m.attrs.inPlace)), name).toBe(false);
      await expectLikeOrt(file, join(work.dir, name), Float32Array.from(rand(8 * 12 * 12)), [1, 8, 12, 12], ["y"], { target: loadTarget("host") });
    }
    const two = graphOf("two-channels.onnx", chain("depthwise"));
    expect(markedOutputs(convInPlace(two, { threads: 8 }))).toEqual(["a0", "b"]);
    expect(markedOutputs(convInPlace(two, { threads: 9 }))).toEqual(["b"]);
  });

  it("takes back a mark its step does not need: another input the kernel may overwrite (a residual) is free there", () => {
    // y1 = depthwise(s) + u: the kernel may write over s (marked) or over u (its epilogue's), and s
    // is read again later, so it writes over u either way.
    const bytes = modelBytes({
      inputs: [valueInfo("x", T.FLOAT, [1, 8, 12, 12])],
      initializers: [weight("ws", [C, 8, 1, 1]), weight("wu", [C, 8, 1, 1]), weight("wd", [C, 1, 3, 3]), weight("bd", [C]), weight("wq", [C, C, 3, 3])],
      nodes: [
        node("Conv", ["x", "ws"], ["s"]),
        node("Conv", ["x", "wu"], ["u"]),
        node("Conv", ["s", "wd", "bd"], ["a"], [attr.i("group", C), pads]),
        node("Add", ["a", "u"], ["y1"]),
        node("MaxPool", ["y1"], ["p1"], [attr.ints("kernel_shape", [3, 3]), pads, attr.ints("strides", [2, 2])]),
        node("Conv", ["s", "wq"], ["q"], [pads, attr.ints("strides", [2, 2])]),
        node("Add", ["q", "p1"], ["z"]),
      ],
      outputs: [valueInfo("z", T.FLOAT)],
    });
    const fused: Graph = { ...runGraphPasses(importOnnx(work.write("residual.onnx", bytes), {}).graph, {}) };
    const marked = convInPlace(fused, { threads: 1 });
    expect(markedOutputs(marked)).toEqual(["y1"]);
    const scheduled = scheduleMemory(marked);
    const { g, left } = keepNeeded(scheduled);
    expect(left).toBe(false);
    expect(markedOutputs(g)).toEqual([]);
    expect(g.schedule.peakBytes).toBe(scheduled.schedule.peakBytes);
    const m = memoryModel(g);
    expect(Math.max(...simulate(m, m.kernels.map((_, k) => k)).curve)).toBe(scheduled.schedule.peakBytes);
  });

  it("leaves what lies at an offset in its buffer, and memory an epilogue reads through a View, to the kernel's input alone", async () => {
    const shape = (name: string, dims: number[]) => tensorProto(name, T.INT64, [4], { int64Data: dims });
    // a reads v, a View of s, which is a slice of the ConcatView cat: cat is not a's to write over
    // (a's output would start at cat's offset, before s).
    const sliced = modelBytes({
      inputs: [valueInfo("x", T.FLOAT, [1, 8, 8, 12])],
      initializers: [weight("ws", [1, 8, 1, 1]), weight("wu", [1, 8, 1, 1]), weight("wa", [4, 2, 1, 1]), weight("wb", [4, 4, 1, 1]), shape("sv", [1, 2, 48, 1])],
      nodes: [
        node("Conv", ["x", "ws"], ["s"]),
        node("Conv", ["x", "wu"], ["u"], [attr.ints("strides", [8, 1])]),
        node("Concat", ["u", "s"], ["cat"], [attr.i("axis", 2)]),
        node("ReduceMean", ["cat"], ["q1"], [attr.ints("axes", [1, 2, 3]), attr.i("keepdims", 1)]),
        node("ReduceMax", ["cat"], ["q2"], [attr.ints("axes", [1, 2, 3]), attr.i("keepdims", 1)]),
        node("ReduceMin", ["cat"], ["q3"], [attr.ints("axes", [1, 2, 3]), attr.i("keepdims", 1)]),
        node("Add", ["q1", "q2"], ["q12"]),
        node("Add", ["q12", "q3"], ["q"]),
        node("Reshape", ["s", "sv"], ["v"]),
        node("Conv", ["v", "wa"], ["a"]),
        node("Conv", ["a", "wb"], ["b"]),
        node("Add", ["b", "q"], ["y"]),
      ],
      outputs: [valueInfo("y", T.FLOAT)],
    });
    // a's epilogue adds v, a View of r that it broadcasts over its rows: r, read there after a's
    // first stores, must stay.
    const viewed = modelBytes({
      inputs: [valueInfo("x", T.FLOAT, [1, 8, 4, 4])],
      initializers: [weight("ws", [2, 8, 1, 1]), weight("wt", [8, 2, 3, 3]), weight("wa", [8, 2, 1, 1]), weight("wd", [8, 1, 3, 3]), shape("sv", [1, 8, 4, 1])],
      nodes: [
        node("Conv", ["x", "ws"], ["s"]),
        node("Conv", ["s", "wt"], ["t"], [pads]),
        node("Relu", ["s"], ["r"]),
        node("Reshape", ["r", "sv"], ["v"]),
        node("Conv", ["r", "wa"], ["a0"]),
        node("Add", ["a0", "v"], ["a"]),
        node("Conv", ["a", "wd"], ["b"], [attr.i("group", 8), pads]),
        node("Add", ["b", "t"], ["y"]),
      ],
      outputs: [valueInfo("y", T.FLOAT)],
    });
    for (const [name, bytes, dims] of [["sliced", sliced, [1, 8, 8, 12]], ["viewed", viewed, [1, 8, 4, 4]]] as const) {
      const file = work.write(`${name}.onnx`, bytes);
      const g = fuse(unfusedGraph(importOnnx(file, {}).graph), { concatViews: true, stitchReductions: true });
      if (name === "sliced") expect(g.nodes.some((n) => n.op === "ConcatView"), "s is a slice of cat").toBe(true);
      const m = memoryModel(convInPlace(g, { threads: 2, channels: true }));
      const a = m.kernels.findIndex((n) => n.outputs[0] === "a");
      expect(m.inPlace[a].map((b) => m.buffers[b].value), name).toEqual([]);
      await expectLikeOrt(file, join(work.dir, name), Float32Array.from(rand(dims.reduce((p, d) => p * d, 1))), [...dims], ["y"], { target: loadTarget("host") });
    }
  });

  for (const [cin, cout] of [[8, 16], [16, 8]] as const) {
    it(`a 1×1 convolution from ${cin} to ${cout} channels writes over its input: kept where it lowers the peak, and the code matches onnxruntime on x86 and NEON`, async () => {
      const hw = 20;
      const file = work.write(`changing-${cin}-${cout}.onnx`, changing(cin, cout, hw));
      const p = runGraphPasses(importOnnx(file, {}).graph, { inPlaceConvs: { threads: 1 } });
      const u = hw * hw * 4;
      expect(p.schedule.rewrites).toEqual(["conv-in-place"]);
      expect(markedOutputs(p)).toEqual(["a"]);
      expect(p.schedule.dpPeakBytes).toBe((cin + 2 * cout) * u);
      expect(p.schedule.peakBytes).toBe((Math.max(cin, cout) + cout) * u);
      expect(p.schedule.optimal).toBe(true);
      expect(p.memory.arenaBytes).toBe(p.memory.lowerBoundBytes);
      expect(p.memory.lowerBoundBytes).toBe(p.schedule.peakBytes);
      const x = Float32Array.from(rand(8 * hw * hw));
      for (const target of ["host", "rpi4"]) {
        const dir = join(work.dir, `changing-${cin}-${cout}-${target}`);
        const { compiled } = await buildArtifact(file, dir, { target: loadTarget(target) });
        expect(compiled!.graph.memory.inPlace.a, `${target}: a writes over r`).toBe("r");
        // Where the program puts them (planned again with the kernels' scratch): a at r's offset or their ends aligned.
        const at = (v: string) => [...compiled!.program.buffers.values()].find((b) => b.kind === "arena" && b.value === v)!.offset!;
        expect([at("r"), at("r") + (cin - cout) * u]).toContain(at("a"));
        const session = await ort.InferenceSession.create(file);
        const ref = (await session.run({ x: new ort.Tensor("float32", x, [1, 8, hw, hw]) })).y;
        const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: [1, 8, hw, hw], data: x } });
        const cmp = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
        expect(cmp.pass, `${target}: max abs error ${cmp.maxAbs}`).toBe(true);
      }
    });
  }

  for (const [first, hw, silu] of [["depthwise", 12, false], ["pointwise", 12, true], ["depthwise", 72, false], ["depthwise", 12, true]] as const) {
    it(`${first} first on ${hw}×${hw} maps${silu ? ", through a SiLU" : ""}: kept where it lowers the peak, and the code matches onnxruntime on x86 and NEON`, async () => {
      const file = work.write(`${first}-${hw}-${silu}.onnx`, chain(first, hw, silu));
      const dumps: Record<string, string> = {};
      const p = runGraphPasses(importOnnx(file, {}).graph, { inPlaceConvs: { threads: 1 }, dumpAfter: ["conv-in-place"], dump: (t, s) => (dumps[t] = s) });
      expect(p.schedule.rewrites).toEqual(["conv-in-place"]);
      // Both convolutions fit, but only the first one's step needs it (keepNeeded): the second writes the graph's output.
      expect(markedOutputs(p)).toHaveLength(1);
      const tensor = C * hw * hw * 4;
      expect(p.schedule.dpPeakBytes).toBe(3 * tensor);
      expect(p.schedule.peakBytes).toBe(2 * tensor);
      expect(p.schedule.optimal).toBe(true);
      expect(p.memory.arenaBytes).toBe(2 * tensor);
      expect(dumps["after:conv-in-place"]).toMatch(/inPlace/);
      // Without the option (a GPU, or vectors under 4 lanes) nothing is marked.
      expect(runGraphPasses(importOnnx(file, {}).graph, {}).schedule.peakBytes).toBe(3 * tensor);
      const x = Float32Array.from(rand(8 * hw * hw));
      for (const target of ["host", "rpi4"]) {
        const dir = join(work.dir, `${first}-${hw}-${silu}-${target}`);
        const { compiled } = await buildArtifact(file, dir, { target: loadTarget(target) });
        const g = compiled!.graph;
        const conv = g.nodes.find((n) => (n.fused?.body ?? [n]).some((m) => m.attrs.inPlace))!;
        expect(g.memory.inPlace[conv.outputs[0]], `${target}: the marked convolution writes over its input`).toBe(anchorOf(conv).inputs[0]);
        const session = await ort.InferenceSession.create(file);
        const ref = (await session.run({ x: new ort.Tensor("float32", x, [1, 8, hw, hw]) })).y;
        const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: [1, 8, hw, hw], data: x } });
        const cmp = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
        expect(cmp.pass, `${target}: max abs error ${cmp.maxAbs}`).toBe(true);
      }
    });
  }
});
