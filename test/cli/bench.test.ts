import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { formatBenchTable, randomInputs, type BenchResult } from "../../src/driver/bench.js";
import { runArtifact } from "../../src/driver/run.js";
import { loadTarget } from "../../src/target/load.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";
import { edgecCli } from "../helpers/run.js";

/**
 * `edgec bench` end to end through the built CLI (dist/ must be built: `make test` does). Speed is
 * never asserted here; only that the measurements exist and the work count is right.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DSCNN = join(ROOT, "..", "shared", "corpus", "models", "dscnn_kws", "model.onnx");
const work = tempDir("edgec-bench-test-");
afterAll(() => work.cleanup());

// This process's CPUs read here, not through run.ts's allowedCpus, so that a parsing mistake there
// cannot also set what the tests expect.
const ALLOWED_LIST = /^Cpus_allowed_list:\s+(\S+)$/m.exec(readFileSync("/proc/self/status", "utf8"))![1];
const ALLOWED = ALLOWED_LIST.split(",").flatMap((r) => {
  const [a, b = a] = r.split("-").map(Number);
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
});

const edgec = (...args: string[]) => edgecCli(args, { cwd: work.dir, env: { ...process.env, EDGEC_DEBUG: "" } });

const weights = (name: string, dims: number[]) =>
  tensorProto(name, T.FLOAT, dims, { floatData: Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => ((i * 37) % 17) / 17 - 0.5) });

/**
 * x[1,4,8,8] → Conv (6 out, group 2, 3x3, stride 2, pad 1) → [1,6,4,4] → Relu → ConvTranspose
 * (W [6,3,2,2], stride 2) → [1,3,8,8] → MatMul [8,5] → [1,3,8,5] → Flatten → [1,120] → Gemm (W [10,120],
 * transB) → [1,10].
 */
const tiny = () =>
  modelBytes({
    nodes: [
      node("Conv", ["x", "wc"], ["c"], [attr.i("group", 2), attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2]), attr.ints("pads", [1, 1, 1, 1])]),
      node("Relu", ["c"], ["r"]),
      node("ConvTranspose", ["r", "wt"], ["t"], [attr.ints("kernel_shape", [2, 2]), attr.ints("strides", [2, 2])]),
      node("MatMul", ["t", "wm"], ["m"]),
      node("Flatten", ["m"], ["f"]),
      node("Gemm", ["f", "wg"], ["y"], [attr.i("transB", 1)]),
    ],
    inputs: [valueInfo("x", T.FLOAT, [1, 4, 8, 8])],
    outputs: [valueInfo("y", T.FLOAT, [1, 10])],
    initializers: [weights("wc", [6, 2, 3, 3]), weights("wt", [6, 3, 2, 2]), weights("wm", [8, 5]), weights("wg", [10, 120])],
  });

// Each output element of Conv takes (C_in / group)·kh·kw MACs; each input element of ConvTranspose
// is scattered to (M / group)·kh·kw outputs; MatMul and Gemm take K per output element.
const TINY_MACS = 6 * 4 * 4 * (2 * 3 * 3) + 6 * 4 * 4 * (3 * 2 * 2) + 3 * 8 * 5 * 8 + 10 * 120;

describe("edgec bench", () => {
  test("--target wasm32 runs the model and the FMA peak probe as WebAssembly in Node, against onnxruntime-web", async () => {
    const r = await edgec("bench", DSCNN, "--target", "wasm32", "--runs", "3", "--warmup", "1", "--compare-ort", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as BenchResult;
    expect(j.target).toBe("wasm32");
    expect(j.vectorBytes).toBe(16);
    expect(j.medianMs).toBeGreaterThan(0);
    expect(j.peakGflops).toBeGreaterThan(0);
    expect(j.ortEngine).toBe("onnxruntime-web");
    expect(j.agree).toBe(true);
    expect(j.ortMedianMs).toBeGreaterThan(0);
    // What a page downloads, model.wasm.gz and weights.z, against the ONNX file's size and the
    // uncompressed model.wasm plus weights.bin.
    expect(j.modelBytes).toBe(statSync(DSCNN).size);
    expect(j.wasmBytes).toBeGreaterThan(0);
    expect(j.downloadBytes).toBeGreaterThan(0);
    expect(j.downloadBytes).toBeLessThan(j.wasmBytes!);
    expect(j.downloadBytes).toBeLessThan(j.modelBytes!);
    const text = await edgec("bench", DSCNN, "--target", "wasm32", "--runs", "2", "--warmup", "0", "--compare-ort");
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^size +download \(model\.wasm\.gz, data\.z, weights\.z\) [\d.]+ KiB, model file [\d.]+ KiB \([\d.]+x\); model\.wasm \+ weights\.bin [\d.]+ KiB uncompressed$/m);
    expect(text.stdout).toMatch(/^ratio +[\d.]+ \(edgec \/ onnxruntime-web\), per round [\d.]+–[\d.]+, edgec slower in \d of 1$/m);
  });

  test("a harness held to CPUs runs there: on one it may use, and not at all on one that does not exist", async () => {
    const dir = join(work.dir, "pinned");
    await buildArtifact(DSCNN, dir, { target: loadTarget("host") });
    const inputs = randomInputs(DSCNN, undefined);
    const r = await runArtifact(dir, inputs, 2, { threads: 1, cpus: String(ALLOWED[ALLOWED.length - 1]) });
    expect(r.medianMs).toBeGreaterThan(0);
    await expect(runArtifact(dir, inputs, 2, { threads: 1, cpus: "4095" })).rejects.toThrow(/taskset/);
  });

  test("a corpus model: --runs 3 --json gives a positive median and the measurements beside it", async () => {
    const r = await edgec("bench", DSCNN, "--runs", "3", "--warmup", "1", "--threads", "1", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as BenchResult;
    expect(j.medianMs).toBeGreaterThan(0);
    expect(j.minMs).toBeLessThanOrEqual(j.medianMs);
    expect(j.runs).toBeGreaterThanOrEqual(3);
    expect(j.threads).toBe(1);
    // On fewer threads than this process may use CPUs, the run is held to the first of them.
    expect(j.cpus).toBe(ALLOWED.length > 1 ? String(ALLOWED[0]) : undefined);
    expect(j.maxRssKb).toBeGreaterThan(0);
    expect(j.peakGflops).toBeGreaterThan(0);
    expect(j.flops).toBe(2 * j.macs);
    expect(j.ortMedianMs).toBeUndefined();
    expect(j.roundRatios).toBeUndefined();
  });

  test("the FLOP count of a hand-built model matches a hand count; its outputs agree with onnxruntime", async () => {
    const model = work.write("tiny.onnx", tiny());
    const r = await edgec("bench", model, "--runs", "3", "--warmup", "1", "--threads", "1", "--compare-ort", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as BenchResult;
    expect(j.macs).toBe(TINY_MACS);
    expect(j.flops).toBe(2 * TINY_MACS);
    expect(j.agree).toBe(true);
    expect(j.checks!.map((c) => c.name)).toEqual(["y"]);
    expect(j.ortMedianMs).toBeGreaterThan(0);
    expect(j.ratio).toBeCloseTo(j.medianMs / j.ortMedianMs!, 10);
    // One round of 3 runs: its ratio is the whole run's.
    expect(j.roundRatios).toHaveLength(1);
    expect(j.roundRatios![0]).toBeCloseTo(j.ratio!, 10);
    expect(j.ortMaxRssKb).toBeGreaterThan(j.ortNodeRssKb!);
    expect(j.ortEngine).toBe("onnxruntime-node");
    // onnxruntime ran on the CPU edgec did (Linux's own list of the worker's CPUs), else where this process may.
    expect(j.ortCpus).toBe(j.cpus ?? ALLOWED_LIST);
    expect(j.wasmBytes).toBeUndefined();
    expect(j.unfusedMedianMs).toBeUndefined();
    // Two rounds: a ratio each, their range, and the rounds edgec was slower in.
    const text = await edgec("bench", model, "--runs", "10", "--warmup", "1", "--threads", "1", "--compare-ort");
    const m = text.stdout.match(/^ratio +[\d.]+ \(edgec \/ onnxruntime-node\), per round ([\d.]+)–([\d.]+), edgec slower in (\d) of 2$/m);
    expect(m, text.stdout).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(Number(m![2]));
  });

  test("--compare-unfused times the --no-fuse build in the same rounds", async () => {
    const r = await edgec("bench", DSCNN, "--runs", "2", "--warmup", "0", "--threads", "1", "--compare-unfused", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as BenchResult;
    expect(j.unfusedMedianMs).toBeGreaterThan(0);
    expect(j.fusedRatio).toBeCloseTo(j.medianMs / j.unfusedMedianMs!, 10);
    const text = await edgec("bench", DSCNN, "--runs", "2", "--warmup", "0", "--threads", "1", "--compare-unfused");
    expect(text.stdout).toMatch(/^unfused +median [\d.]+ ms \(--no-fuse\): fused \/ unfused [\d.]+$/m);
    const table = formatBenchTable([{ ...j, unfusedMedianMs: 2 * j.medianMs, fusedRatio: 0.5 }]);
    expect(table).toContain("| unfused ms | fused/unfused |");
    expect(table).toContain(" | 0.50 |");
    expect(table).toContain("geometric mean of fused/unfused, 1 thread: 0.50 over 1 model");
  });

  test.each([
    [["missing.onnx"], /missing\.onnx: no such file/],
    [[DSCNN, "--threads", "0"], /--threads: '0' is not a whole number >= 1/],
    [[DSCNN, "--threads", "two"], /--threads: 'two' is not a whole number >= 1/],
    [[DSCNN, "--runs", "1.5"], /--runs: '1\.5' is not a whole number >= 1/],
  ])("bad input %j: one clear error line, exit 2", async (args, message) => {
    const r = await edgec("bench", ...args);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^edgec: error: /);
    expect(r.stderr).toMatch(message);
  });
});

describe("the benchmark table", () => {
  const row = (model: string, threads: number, medianMs: number, ortMedianMs: number, agree: boolean): BenchResult => ({
    model: `/m/${model}/model.onnx`, target: "host", threads, runs: 20, medianMs, minMs: medianMs, maxRssKb: 2048, macs: 1e6, flops: 2e6,
    gflops: 1, peakGflops: 10, peakGflopsThreads: 10 * threads, peakFraction: 0.1 / threads, vectorBytes: 32,
    ortMedianMs, ortMinMs: ortMedianMs, ortMaxRssKb: 4096, ortNodeRssKb: 1024, ratio: medianMs / ortMedianMs, agree, checks: [],
  });

  test("shows a mismatch as MISMATCH and leaves it out of the geometric mean", () => {
    const table = formatBenchTable([row("a", 1, 2, 1, true), row("b", 1, 8, 1, true), row("c", 1, 1, 100, false), row("a", 4, 1, 1, true)]);
    expect(table).toContain("| a | 1 | 2.000 | 1.000 | 2.00 | - | 2.0 | 4.0 | 10.0 |");
    expect(table).toContain("| c | 1 | 1.000 | 100.00 | MISMATCH | - |");
    expect(table).toContain("geometric mean of edgec/ort, 1 thread: 4.00 over 2 models");
    expect(table).toContain("geometric mean of edgec/ort, 4 threads: 1.00 over 1 model");
  });

  test("shows the lowest and highest of the rounds' ratios", () => {
    const table = formatBenchTable([{ ...row("a", 2, 1, 1, true), roundRatios: [1.04, 0.93, 1.12, 0.98] }]);
    expect(table).toContain("| ratio | rounds' ratios |");
    expect(table).toContain("| a | 2 | 1.000 | 1.000 | 1.00 | 0.93–1.12 | 2.0 |");
  });
});
