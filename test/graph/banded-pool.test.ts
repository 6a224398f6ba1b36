import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { compileModel, runGraphPasses, unfusedGraph } from "../../src/driver/pipeline.js";
import type { Stmt } from "../../src/loop/ir.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { bytesMoved } from "../../src/graph/cost.js";
import { eliminateDeadNodes } from "../../src/graph/passes/eliminate-dead-nodes.js";
import { poolSlices } from "../../src/graph/passes/pool-slices.js";
import { interpret } from "../../src/graph/interp.js";
import { fromNumbers, toNumbers } from "../../src/core/tensor.js";
import { loadTarget } from "../../src/target/load.js";
import { expectLikeOrt } from "../helpers/against-ort.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

let seed = 5;
const rand = (n: number) => Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const weight = (name: string, dims: number[]) => tensorProto(name, T.FLOAT, dims, { floatData: rand(dims.reduce((a, b) => a * b, 1)).map((v) => v * 0.3) });
const X = [2, 8, 25, 25];
const OUTS = ["ya", "yb", "yc", "yd", "ye", "yf", "zf", "yg", "yh", "yi", "yj"];

/**
 * Max pools after Convs, on a batch of two: a 3×3 stride-2 Conv → Relu → 3×3 stride-2 ceil-mode
 * pool whose last window hangs off the map (SqueezeNet's first layers), a padded 3×3 Conv → Clip →
 * padded pool (ResNet's), a 1×1 stride-2 Conv (gathered im2col-style) → 2×2 pool whose windows do
 * not overlap, a 1×1 Conv → Relu → stride-1 pool (windows overlapping by two rows), a channel
 * Concat of two Conv results → pool (a fire module), and a Conv whose result a Sigmoid also reads
 * (stored, so its pool runs alone). Those maps are small enough to be computed whole into scratch;
 * three 512-channel ones are computed a band of rows at a time: a padded 3×3 Conv (on the phase
 * grid) → padded pool whose 13 rows do not split evenly, a 2×2 Conv (gathered) → Relu → ceil-mode
 * pool, and a 1×1 Conv → 2×2 pool; and a 5120-channel map of 2×13 (a 1×1 Conv of strides 13 and
 * 2) → 1×1 pool, whose one-row bands would be narrower than the map's column tiles.
 */
const bytes = modelBytes({
  inputs: [valueInfo("x", T.FLOAT, X)],
  initializers: [
    weight("wa", [8, 8, 3, 3]), weight("ba", [8]), weight("wb", [16, 8, 3, 3]), weight("wc", [6, 8, 1, 1]), weight("wd", [4, 8, 1, 1]), weight("bd", [4]),
    weight("we1", [3, 8, 1, 1]), weight("we3", [5, 8, 3, 3]), weight("wf", [4, 8, 3, 3]), weight("wg", [512, 8, 3, 3]), weight("wh", [512, 8, 2, 2]), weight("wi", [512, 8, 1, 1]), weight("wj", [5120, 8, 1, 1]),
    tensorProto("lo", T.FLOAT, [], { floatData: [0] }), tensorProto("hi", T.FLOAT, [], { floatData: [0.4] }),
  ],
  nodes: [
    node("Conv", ["x", "wa", "ba"], ["a"], [attr.ints("strides", [2, 2])]),
    node("Relu", ["a"], ["ra"]),
    node("MaxPool", ["ra"], ["ya"], [attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2]), attr.i("ceil_mode", 1)]),
    node("Conv", ["x", "wb"], ["b"], [attr.ints("pads", [1, 1, 1, 1])]),
    node("Clip", ["b", "lo", "hi"], ["cb"]),
    node("MaxPool", ["cb"], ["yb"], [attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2]), attr.ints("pads", [1, 1, 1, 1])]),
    node("Conv", ["x", "wc"], ["c"], [attr.ints("strides", [2, 2])]),
    node("MaxPool", ["c"], ["yc"], [attr.ints("kernel_shape", [2, 2]), attr.ints("strides", [2, 2])]),
    node("Conv", ["x", "wd", "bd"], ["d"]),
    node("Relu", ["d"], ["rd"]),
    node("MaxPool", ["rd"], ["yd"], [attr.ints("kernel_shape", [3, 3]), attr.ints("pads", [1, 1, 1, 1])]),
    node("Conv", ["x", "we1"], ["e1"]),
    node("Relu", ["e1"], ["re1"]),
    node("Conv", ["x", "we3"], ["e3"], [attr.ints("pads", [1, 1, 1, 1])]),
    node("Relu", ["e3"], ["re3"]),
    node("Concat", ["re1", "re3"], ["e"], [attr.i("axis", 1)]),
    node("MaxPool", ["e"], ["ye"], [attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2]), attr.i("ceil_mode", 1)]),
    node("Conv", ["x", "wf"], ["f"]),
    node("MaxPool", ["f"], ["yf"], [attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2])]),
    node("Sigmoid", ["f"], ["zf"]),
    node("Conv", ["x", "wg"], ["g"], [attr.ints("pads", [1, 1, 1, 1])]),
    node("MaxPool", ["g"], ["yg"], [attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2]), attr.ints("pads", [1, 1, 1, 1])]),
    node("Conv", ["x", "wh"], ["h"], [attr.ints("kernel_shape", [2, 2])]),
    node("Relu", ["h"], ["rh"]),
    node("MaxPool", ["rh"], ["yh"], [attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2]), attr.i("ceil_mode", 1)]),
    node("Conv", ["x", "wi"], ["i"]),
    node("MaxPool", ["i"], ["yi"], [attr.ints("kernel_shape", [2, 2]), attr.ints("strides", [2, 2])]),
    node("Conv", ["x", "wj"], ["j"], [attr.ints("strides", [13, 2])]),
    node("MaxPool", ["j"], ["yj"], [attr.ints("kernel_shape", [1, 1])]),
  ],
  outputs: OUTS.map((n) => valueInfo(n, T.FLOAT)),
});

/**
 * One image, SqueezeNet 1.1's fire module on a 7×7 map (at 64×64): a 3×3 Conv and a 1×1 Conv, each
 * → Relu → 3×3 stride-2 ceil-mode pool. The whole map fits in scratch, so the 3×3 product may run
 * transposed (pixels as rows) as it would without the pool; the 1×1 one runs rows-outer.
 */
const X1 = [1, 32, 7, 7];
const small = modelBytes({
  inputs: [valueInfo("x", T.FLOAT, X1)],
  initializers: [weight("w3", [128, 32, 3, 3]), weight("b3", [128]), weight("w1", [128, 32, 1, 1]), weight("b1", [128])],
  nodes: [
    node("Conv", ["x", "w3", "b3"], ["c3"], [attr.ints("pads", [1, 1, 1, 1])]),
    node("Relu", ["c3"], ["r3"]),
    node("MaxPool", ["r3"], ["y3"], [attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2]), attr.i("ceil_mode", 1)]),
    node("Conv", ["x", "w1", "b1"], ["c1"]),
    node("Relu", ["c1"], ["r1"]),
    node("MaxPool", ["r1"], ["y1"], [attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2]), attr.i("ceil_mode", 1)]),
  ],
  outputs: ["y3", "y1"].map((n) => valueInfo(n, T.FLOAT)),
});

const work = tempDir("edgec-banded-");
afterAll(() => work.cleanup());
const file = work.write("banded.onnx", bytes);
const smallFile = work.write("small.onnx", small);

describe("max pools computed from bands of a Conv's rows", () => {
  it("end the epilogue of the Conv whose result only they read; the map is never stored", () => {
    const g = runGraphPasses(importOnnx(file, {}).graph, {});
    const reason = (out: string) => g.nodes.find((n) => n.outputs[0] === out)?.fused?.reason;
    expect(reason("ya")).toBe("Conv kernel, epilogue [Relu], banded MaxPool");
    expect(reason("yb")).toBe("Conv kernel, epilogue [Clip], banded MaxPool");
    expect(reason("yc")).toBe("Conv kernel, banded MaxPool");
    expect(reason("yd")).toBe("Conv kernel, epilogue [Relu], banded MaxPool");
    expect(reason("yg")).toBe("Conv kernel, banded MaxPool");
    expect(reason("yh")).toBe("Conv kernel, epilogue [Relu], banded MaxPool");
    expect(reason("yi")).toBe("Conv kernel, banded MaxPool");
    expect(reason("yj")).toBe("Conv kernel, banded MaxPool");
    for (const v of ["a", "ra", "b", "cb", "c", "d", "rd", "re1", "re3"]) expect(g.memory.offsets[v], v).toBeUndefined();
    // The Concat's inputs are pooled one by one, each in its Conv's kernel, and the Concat joins the pooled slices.
    const slices = g.nodes.filter((n) => n.fused?.reason === "Conv kernel, epilogue [Relu], banded MaxPool" && n.outputs[0].startsWith("ye"));
    expect(slices).toHaveLength(2);
    expect(g.nodes.find((n) => n.outputs[0] === "ye")?.inputs).toEqual(slices.map((n) => n.outputs[0]));
    // f is also the Sigmoid's: stored, and pooled by a kernel of its own.
    expect(g.nodes.find((n) => n.outputs[0] === "yf")?.op).toBe("MaxPool");
    const off = runGraphPasses(importOnnx(file, {}).graph, { cpuFusions: false });
    expect(off.nodes.filter((n) => n.fused?.reason.includes("banded"))).toHaveLength(0);
    expect(bytesMoved(g)).toBeLessThan(bytesMoved(off) - 2 * 4 * 2 * 8 * 12 * 12);
  });

  it("computes small maps whole and large ones in bands of rows, split between threads", () => {
    for (const t of ["host", "rpi4"]) {
      const { program } = compileModel(file, { target: loadTarget(t) });
      const bands = (ss: Stmt[]): boolean => ss.some((s) => (s.k === "for" ? (s.parallel && s.v.startsWith("band")) || bands(s.body) : s.k === "block" && bands(s.body)));
      const pooled = program.kernels.filter((k) => /MaxPool\)$/.test(k.op) && k.op.startsWith("Fused(Conv"));
      const writer = (v: string) => program.kernels.find((k) => k.writes.includes(`out_${v}`))!;
      expect(pooled.filter((k) => bands(k.body)), t).toEqual(["yg", "yh", "yi", "yj"].map(writer));
      expect(pooled.length, t).toBe(10);
      // A whole map is pooled rows outermost, its elements stated as the loop's work (parallel from parallelMinWork up).
      for (const k of pooled.filter((k) => !bands(k.body))) expect(k.body.at(-1), `${t} ${k.name}`).toMatchObject({ k: "for", parallel: true, work: expect.any(Number) });
    }
  });

  it("pool-slices pools each input of a channel Concat, with the same result", () => {
    const g = eliminateDeadNodes({ ...unfusedGraph(importOnnx(file, {}).graph), outputs: ["ye"] });
    const split = poolSlices(g);
    expect(split.nodes.filter((n) => n.op === "MaxPool")).toHaveLength(g.nodes.filter((n) => n.op === "MaxPool").length + 1);
    expect(split.nodes.find((n) => n.outputs[0] === "ye")?.op).toBe("Concat");
    const x = fromNumbers("float32", X, Float32Array.from(rand(X.reduce((a, b) => a * b, 1))));
    const [want, got] = [g, split].map((h) => toNumbers(interpret(h, { x }).ye));
    expect(got).toEqual(want);
  });

  it("a small map's product takes the form it would take without the pool", async () => {
    const g = runGraphPasses(importOnnx(smallFile, {}).graph, {});
    for (const y of ["y3", "y1"]) expect(g.nodes.find((n) => n.outputs[0] === y)?.fused?.reason).toBe("Conv kernel, epilogue [Relu], banded MaxPool");
    const x = Float32Array.from(rand(X1.reduce((a, b) => a * b, 1)));
    for (const t of ["host", "rpi4"]) {
      const dir = `${work.dir}/small-${t}`;
      await expectLikeOrt(smallFile, dir, x, X1, ["y3", "y1"], { target: { ...loadTarget(t), parallelMinWork: 0 } });
      const source = readFileSync(`${dir}/model.c`, "utf8");
      expect(/\bp_\w*_packed\b/.test(source), `${t}: the 3×3 product runs transposed`).toBe(true);
      expect(/\bp_\w*_rows\b/.test(source), `${t}: the 1×1 product keeps its weights as rows`).toBe(true);
    }
  });

  for (const t of ["host", "rpi4"]) {
    it(`runs as onnxruntime does on ${t}, bands split between threads${t === "host" ? ", under the sanitizers" : ""}`, async () => {
      const x = Float32Array.from(rand(X.reduce((a, b) => a * b, 1)));
      const extraCflags = t === "host" ? ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"] : undefined;
      await expectLikeOrt(file, work.dir + `/${t}`, x, X, OUTS, { target: { ...loadTarget(t), parallelMinWork: 0 }, extraCflags });
    });
  }
});
