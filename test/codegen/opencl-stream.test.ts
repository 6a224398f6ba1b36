import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fileSha256 } from "../../src/driver/costs.js";
import { runGraphPasses } from "../../src/driver/pipeline.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import type { Costs } from "../../src/graph/cost.js";
import { CORPUS } from "../conformance/suite.js";
import { edgec } from "../deploy/helpers.js";
import { tempDir } from "../helpers/onnx-builder.js";
import { runOk } from "../helpers/run.js";

/**
 * --objective throughput on the `opencl` target (PoCL here): a two-stage CPU/GPU pipeline whose
 * run_stream overlaps inference i on one device with inference i-1 on the other. A stream of
 * distinct inputs must give exactly what one run per input gives, with either device first.
 */
const work = tempDir("edgec-stream-");
process.env.EDGEC_OPENCL_CACHE = join(work.dir, "clcache");
afterAll(() => work.cleanup());

const MODEL = join(CORPUS, "models", "dscnn_kws", "model.onnx");
// The opencl target's kernels: without the CPU-only fusions (see cpuFusionsOn).
const kernels = runGraphPasses(importOnnx(MODEL).graph, { cpuFusions: false }).nodes.filter((n) => n.op !== "View").map((n) => n.name);

/** Costs that make the first `cut` kernels fast on `first` and the rest fast on the other device. */
function costs(first: "cpu" | "gpu", cut: number): string {
  const c: Costs = {
    edgec: "test", model: { file: "model.onnx", sha256: fileSha256(MODEL) }, target: "opencl", machine: "test", devices: { cpu: "cpu", gpu: "gpu" }, runs: 1, wholeRunMs: { cpu: 0, gpu: 0 }, copiesInRunMs: { cpu: 0, gpu: 0 }, overlap: true,
    kernels: Object.fromEntries(kernels.map((k, i) => [k, (i < cut) === (first === "cpu") ? { cpuMs: 0.01, gpuMs: 1 } : { cpuMs: 1, gpuMs: 0.01 }])),
    copy: { latencyUs: 1, GBs: 100 },
  };
  const file = join(work.dir, `${first}.json`);
  writeFileSync(file, JSON.stringify(c));
  return file;
}

describe("--objective throughput", () => {
  it.each(["cpu", "gpu"] as const)("%s first: a stream of distinct inputs gives what one run per input gives", async (first) => {
    const cut = 5;
    const file = costs(first, cut);
    const inspect = await edgec(["inspect", MODEL, "--target", "opencl", "--costs", file, "--objective", "throughput", "--json"]);
    expect(inspect.stderr).toBe("");
    const { placement } = JSON.parse(inspect.stdout);
    expect(placement.objective).toBe("throughput");
    expect(placement.stages).toMatchObject({ first, kernels: kernels.slice(0, cut), exhaustive: true });
    expect(placement.predicted.partitionedMs).toBeLessThan(Math.min(placement.predicted.cpuMs, placement.predicted.gpuMs));

    const art = join(work.dir, `art-${first}`);
    const built = await edgec(["build", MODEL, "--target", "opencl", "--costs", file, "--objective", "throughput", "-o", art]);
    expect(built.code, built.stderr).toBe(0);
    const modelC = readFileSync(join(art, "model.c"), "utf8");
    expect(modelC).toMatch(/static int edgec_stage_enqueue/);
    expect(readFileSync(join(art, "model.h"), "utf8")).toMatch(/int model_run_stream\(const model_inputs \*inputs, model_outputs \*outputs, int n\);/);

    const m = JSON.parse(readFileSync(join(art, "manifest.json"), "utf8"));
    const elems = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
    const K = 5;
    let seed = first === "cpu" ? 3 : 4;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed / 2 ** 30 - 1);
    const inputs = m.inputs.map((x: { shape: number[] }) => new Float32Array(K * elems(x.shape)).map(rand));
    const io = (name: string) => {
      const d = join(work.dir, `${first}-${name}`);
      mkdirSync(d, { recursive: true });
      return d;
    };
    inputs.forEach((t: Float32Array, i: number) => writeFileSync(join(io("in"), `${i}.bin`), t));
    const out = await runOk(join(art, "run"), ["--stream", String(K), io("in"), io("out"), "3"]);
    expect(out).toMatch(/stream=5/);
    for (let s = 0; s < K; s++) {
      inputs.forEach((t: Float32Array, i: number) => {
        const n = t.length / K;
        writeFileSync(join(io(`in${s}`), `${i}.bin`), t.subarray(s * n, (s + 1) * n));
      });
      await runOk(join(art, "run"), [io(`in${s}`), io(`out${s}`)]);
      m.outputs.forEach((o: { shape: number[] }, i: number) => {
        const bytes = 4 * elems(o.shape);
        const streamed = readFileSync(join(io("out"), `${i}.bin`)).subarray(s * bytes, (s + 1) * bytes);
        expect(streamed.equals(readFileSync(join(io(`out${s}`), `${i}.bin`))), `inference ${s}, output ${i}`).toBe(true);
      });
    }

    const bench = await edgec(["bench", MODEL, "--target", "opencl", "--costs", file, "--objective", "throughput", "--runs", "2", "--warmup", "0", "--json"]);
    expect(bench.code, bench.stderr).toBe(0);
    expect(JSON.parse(bench.stdout).stream).toBe(8);
  }, 120_000);

  it("is refused without a GPU to place kernels on, or with every kernel on one side", async () => {
    const host = await edgec(["build", MODEL, "--objective", "throughput", "-o", join(work.dir, "x")]);
    expect(host.stderr).toMatch(/--objective is what --placement auto minimises; target 'host' has no OpenCL GPU/);
    const cpu = await edgec(["build", MODEL, "--target", "opencl", "--placement", "cpu", "--objective", "throughput", "-o", join(work.dir, "y")]);
    expect(cpu.stderr).toMatch(/--placement cpu places every kernel on one side/);
    expect([host.code, cpu.code]).toEqual([2, 2]);
  });
});
