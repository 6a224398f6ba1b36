import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compileModel, runGraphPasses } from "../../src/driver/pipeline.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { bytesMoved } from "../../src/graph/cost.js";
import type { Stmt } from "../../src/loop/ir.js";
import { loadTarget } from "../../src/target/load.js";
import { expectLikeOrt } from "../helpers/against-ort.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

let seed = 11;
const rand = (n: number) => Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const weight = (name: string, dims: number[]) => tensorProto(name, T.FLOAT, dims, { floatData: rand(dims.reduce((a, b) => a * b, 1)).map((v) => v * 0.3) });
const X = [1, 5, 20, 20];
const OUTS = ["ya", "yb", "yd", "yc", "z", "ym", "yx", "yn", "yr"];

/**
 * Global poolings after Convs: a 3×3 Conv → Clip → GlobalAveragePool and a 1×1 Conv → Relu →
 * GlobalMaxPool (400 columns: several column tiles, split between threads), a depthwise Conv →
 * GlobalAveragePool, and a Conv whose result a Sigmoid also reads (stored, so not stitched). The
 * same as reductions over the spatial axes: a 1×1 Conv → Relu → ReduceMean without the reduced axes
 * (as torchvision's MNASNet ends) and a 3×3 Conv → ReduceMax keeping them; a ReduceMean that also
 * folds the channels is not a per-channel pool, so not stitched, and one of the graph's input
 * (through a Neg) is a kernel of its own.
 */
const bytes = modelBytes({
  inputs: [valueInfo("x", T.FLOAT, X)],
  initializers: [weight("wa", [8, 5, 3, 3]), weight("ba", [8]), weight("wb", [6, 5, 1, 1]), weight("wd", [5, 1, 3, 3]), weight("wc", [4, 5, 1, 1]), weight("wm", [6, 5, 1, 1]), weight("wx", [3, 5, 3, 3]), weight("wn", [2, 5, 1, 1]), tensorProto("lo", T.FLOAT, [], { floatData: [0] }), tensorProto("hi", T.FLOAT, [], { floatData: [0.5] })],
  nodes: [
    node("Conv", ["x", "wa", "ba"], ["a"], [attr.ints("pads", [1, 1, 1, 1])]),
    node("Clip", ["a", "lo", "hi"], ["ca"]),
    node("GlobalAveragePool", ["ca"], ["ya"]),
    node("Conv", ["x", "wb"], ["b"]),
    node("Relu", ["b"], ["rb"]),
    node("GlobalMaxPool", ["rb"], ["yb"]),
    node("Conv", ["x", "wd"], ["d"], [attr.i("group", 5), attr.ints("pads", [1, 1, 1, 1]), attr.ints("strides", [2, 2])]),
    node("GlobalAveragePool", ["d"], ["yd"]),
    node("Conv", ["x", "wc"], ["c"]),
    node("GlobalAveragePool", ["c"], ["yc"]),
    node("Sigmoid", ["c"], ["z"]),
    node("Conv", ["x", "wm"], ["m"]),
    node("Relu", ["m"], ["rm"]),
    node("ReduceMean", ["rm"], ["ym"], [attr.ints("axes", [2, 3]), attr.i("keepdims", 0)]),
    node("Conv", ["x", "wx"], ["mx"], [attr.ints("pads", [1, 1, 1, 1])]),
    node("ReduceMax", ["mx"], ["yx"], [attr.ints("axes", [-1, -2])]),
    node("Conv", ["x", "wn"], ["n"]),
    node("ReduceMean", ["n"], ["yn"], [attr.ints("axes", [1, 2, 3])]),
    node("Neg", ["x"], ["nx"]),
    node("ReduceMean", ["nx"], ["yr"], [attr.ints("axes", [2, 3])]),
  ],
  outputs: OUTS.map((n) => valueInfo(n, T.FLOAT)),
});

const work = tempDir("edgec-stitch-");
afterAll(() => work.cleanup());
const file = work.write("stitch.onnx", bytes);

describe("reductions stitched into a Conv's epilogue", () => {
  it("end the epilogue of the Conv whose result only they read; the map is never stored", () => {
    const g = runGraphPasses(importOnnx(file, {}).graph, {});
    const reason = (out: string) => g.nodes.find((n) => n.outputs[0] === out)?.fused?.reason;
    expect(reason("ya")).toBe("Conv kernel, epilogue [Clip], stitched GlobalAveragePool");
    expect(reason("yb")).toBe("Conv kernel, epilogue [Relu], stitched GlobalMaxPool");
    expect(reason("yd")).toBe("Conv kernel, stitched GlobalAveragePool");
    expect(reason("ym")).toBe("Conv kernel, epilogue [Relu], stitched ReduceMean");
    expect(reason("yx")).toBe("Conv kernel, stitched ReduceMax");
    expect(g.nodes.find((n) => n.outputs[0] === "yn")?.op).toBe("ReduceMean");
    expect(reason("yr")).toBe("ReduceMean kernel, inlined producers [Neg]");
    expect(g.memory.offsets.a).toBeUndefined();
    // c is also the Sigmoid's: stored, and pooled by a kernel of its own.
    expect(g.nodes.find((n) => n.outputs[0] === "yc")?.op).toBe("GlobalAveragePool");
    const off = runGraphPasses(importOnnx(file, {}).graph, { cpuFusions: false });
    const anchorOp = (n: (typeof off.nodes)[number]) => (n.fused ? n.fused.body.find((m) => m.name === n.fused!.anchor)!.op : n.op);
    expect(off.nodes.filter((n) => anchorOp(n).startsWith("Global"))).toHaveLength(4);
    expect(bytesMoved(g)).toBeLessThan(bytesMoved(off) - 2 * 4 * 8 * 400);
  });

  it("keeps the Convs' column tiles split between threads, each folding into its own partial results", () => {
    const { program } = compileModel(file, { target: loadTarget("rpi4") });
    const stitched = program.kernels.filter((k) => k.params.some((p) => p.startsWith("scratch_partial")));
    expect(stitched).toHaveLength(5);
    // The thread's partials are found inside the parallel loop, so the loop stays parallel after
    // simplify drops the batch loop around it; its split is fixed, so that each thread folds the
    // same columns whatever the timing, and the sums are the same from run to run.
    const parallelReadsPart = (ss: Stmt[]): boolean =>
      ss.some((s) => (s.k === "for" && s.parallel ? s.fixed === true && s.body[0].k === "let" && /EDGEC_TID/.test(JSON.stringify(s.body[0])) : s.k === "for" || s.k === "block" ? parallelReadsPart(s.body) : false));
    for (const k of stitched) expect(parallelReadsPart(k.body), k.node).toBe(true);
  });

  for (const t of ["host", "rpi4"]) {
    it(`runs as onnxruntime does on ${t}, threads folding partial results`, async () => {
      const x = Float32Array.from(rand(X.reduce((a, b) => a * b, 1)));
      // Every parallel loop split between threads, however small: two threads fold partial results.
      await expectLikeOrt(file, work.dir + `/${t}`, x, X, OUTS, { target: { ...loadTarget(t), parallelMinWork: 0 } });
      const source = readFileSync(join(work.dir, t, "model.c"), "utf8");
      expect(source).toMatch(/\bEDGEC_PARALLEL_RUN_FIXED\(\d+, \w+, &edgec_args\);/);
      expect(source).toMatch(/\bEDGEC_PARALLEL_RUN\(\d+, \w+, &edgec_args\);/);
    });
  }
});
