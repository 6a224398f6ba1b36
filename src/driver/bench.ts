import { fork, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { $ } from "zx";
import { renderTemplate } from "../codegen/template.js";
import { isFloat } from "../core/dtype.js";
import { EdgecError } from "../core/diag.js";
import { fromNumbers, numel, zeros, type Tensor } from "../core/tensor.js";
import { importOnnx } from "../frontend/onnx/import.js";
import type { Target } from "../target/schema.js";
import { buildArtifact } from "./artifact.js";
import { specializeInputs } from "./inputs.js";
import { countMacs } from "../graph/cost.js";
import type { OrtEngine, OrtReply, OrtRequest } from "./ort-worker.js";
import { unfusedGraph, type PipelineOptions } from "./pipeline.js";
import { allowedCpus, cpuList, runArtifact, TASKSET, type RunResult } from "./run.js";
import { compare, type OutputCheck } from "./verify.js";
import { VERSION } from "./version.js";

/** Inferences per stream when --objective throughput is timed. */
export const STREAM = 8;

export interface BenchOptions extends PipelineOptions {
  /** threads the model runs on (default: the target's cores, all of this machine's for host) */
  threads?: number;
  /** timed runs of each engine, at least; rounded up to whole rounds */
  runs: number;
  /** untimed runs before timing */
  warmup: number;
  /** also time onnxruntime (see ortEngine), alternating with edgec, and compare the outputs */
  compareOrt?: boolean;
  /** also time the model built without fusion (--no-fuse: one kernel per ONNX node), in the same rounds */
  compareUnfused?: boolean;
  /** where the artifact is built and reused while up to date (default: a temporary directory) */
  buildDir?: string;
}

export interface BenchResult {
  model: string;
  target: string;
  threads: number;
  /** the CPUs edgec (and onnxruntime) ran on, as taskset's list; unset: any */
  cpus?: string;
  runs: number;
  /** per inference; in streams of `stream` inferences when set (--objective throughput) */
  medianMs: number;
  stream?: number;
  minMs: number;
  /** peak resident memory of the run harness process */
  maxRssKb: number;
  /** WebAssembly targets: bytes of what the package's load() downloads (model.wasm.gz, data.z, weights.z), of model.wasm plus weights.bin uncompressed, and of the model file */
  downloadBytes?: number;
  wasmBytes?: number;
  modelBytes?: number;
  /** OpenCL targets: the platform and device the kernels ran on */
  device?: string;
  /** multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul; FLOPs = 2·MACs */
  macs: number;
  flops: number;
  gflops: number;
  /** measured single-thread float32 peak at the target's vector width (FMA; multiplies and adds on WebAssembly), and that times `threads` */
  peakGflops: number;
  peakGflopsThreads: number;
  peakFraction: number;
  vectorBytes: number;
  /** the reference: onnxruntime-node, or onnxruntime-web's WebAssembly backend for WebAssembly targets */
  ortEngine?: OrtEngine;
  ortMedianMs?: number;
  ortMinMs?: number;
  /** the CPUs the onnxruntime process could run on, as Linux lists them ("0", "0-1") */
  ortCpus?: string;
  /** peak RSS of the onnxruntime process, Node itself included (ortNodeRssKb of it before onnxruntime loaded) */
  ortMaxRssKb?: number;
  ortNodeRssKb?: number;
  /** edgec median / onnxruntime median */
  ratio?: number;
  /**
   * each round's edgec median / onnxruntime's median of the same round: how far the ratio moves
   * with the machine while both engines run (a shared machine's speed drifts over minutes)
   */
  roundRatios?: number[];
  /** edgec's outputs match onnxruntime's within rtol 1e-3, atol 1e-4 */
  agree?: boolean;
  checks?: OutputCheck[];
  /** with compareUnfused: the unfused build's median, and fused / unfused */
  unfusedMedianMs?: number;
  fusedRatio?: number;
}

/**
 * Timed runs come in rounds of this many per engine. The run harness is a fresh process per call
 * and reports only its call's median and minimum, so edgec's median is the median of per-round
 * medians, while onnxruntime keeps one session and reports every run, so its median is over all
 * runs. Each round's harness first runs the model untimed for WARMUP_MS, and so does onnxruntime
 * before each of its rounds, so that both time warm code, caches and threads after the other
 * engine's round: WebAssembly engines start on baseline code and swap in optimized code compiled
 * in the background (V8 needs some ten runs of a small model), and onnxruntime's five runs right
 * after an edgec round took 1.04–1.5× as long as after its own warm-up (squeezenet1_1 and
 * squeezenet1_1_c10_64, one and two threads), which made every ratio look better than it was.
 */
const ROUND = 5;
const WARMUP_MS = 500;
export const BENCH_TOLERANCE = { rtol: 1e-3, atol: 1e-4 };

const geomean = (xs: number[]) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** mulberry32: a small seeded generator, so every benchmark of a model sees the same input. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard-normal floats (Box-Muller) for float inputs, zeros for integer and bool inputs. */
export function randomInputs(model: string, inputShapes: Record<string, number[]> | undefined, seed = 1): Record<string, Tensor> {
  const g = importOnnx(model, { inputShapes }).graph;
  const next = rng(seed);
  return Object.fromEntries(
    g.inputs.map((name) => {
      const { dtype, shape } = g.values.get(name)!;
      if (!isFloat(dtype)) return [name, zeros(dtype, shape!)];
      const v = Array.from({ length: numel(shape!) }, () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next()));
      return [name, fromNumbers(dtype, shape!, v)];
    }),
  );
}

const PEAK_C = `/* Peak single-thread float32 throughput: 12 independent chains of VB-byte float vectors (enough to
 * cover latency times ports on current cores), written out so each stays in a register. With FMA,
 * each chain is acc = acc * a + b with a + b = 1 (converges to 1: no overflow, no denormals), 2 flops
 * per lane. WebAssembly has no fused multiply-add, so a multiply-add is two instructions and its
 * peak is that of independent multiplies and adds: half the chains multiply by a number just under
 * 1, half add a tiny one (neither leaves the normal range in the probe's time), 1 flop per lane. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>
typedef float vf __attribute__((vector_size(VB)));
static volatile float seed = 0.999f;
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
#if defined(__wasm__)
#define FLOPS_PER_STEP 1
#define EVEN(c) c = c * a
#define ODD(c) c = c + b
#define A (1.0f - (1.0f - seed) * 1e-4f)
#define B ((1.0f - seed) * 1e-4f)
#else
#define FLOPS_PER_STEP 2
#define EVEN(c) c = c * a + b
#define ODD(c) c = c * a + b
#define A seed
#define B (1.0f - seed)
#endif
static double seconds(long iters, float *sink) {
  vf a = (vf){0} + A, b = (vf){0} + B;
  vf c0 = b, c1 = b * 2, c2 = b * 3, c3 = b * 4, c4 = b * 5, c5 = b * 6, c6 = b * 7, c7 = b * 8, c8 = b * 9, c9 = b * 10, c10 = b * 11, c11 = b * 12;
  double t0 = now();
  long i;
  for (i = 0; i < iters; i++) {
    EVEN(c0); ODD(c1); EVEN(c2); ODD(c3); EVEN(c4); ODD(c5); EVEN(c6); ODD(c7); EVEN(c8); ODD(c9); EVEN(c10); ODD(c11);
  }
  t0 = now() - t0;
  c0 = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
  *sink += c0[0];
  return t0;
}
int main(void) {
  long iters = 1L << 12;
  double best = 0;
  float sink = 0;
  int r;
  while (seconds(iters, &sink) < 0.05) iters *= 2;
  for (r = 0; r < 5; r++) {
    double g = (double)FLOPS_PER_STEP * 12 * (VB / 4) * (double)iters / seconds(iters, &sink) / 1e9;
    if (g > best) best = g;
  }
  printf("gflops=%.3f sink=%g\\n", best, (double)sink);
  return 0;
}
`;

const peaks = new Map<string, Promise<number>>();

/**
 * The machine's single-thread float32 peak in GFLOP/s (see PEAK_C), measured with the target's compiler and
 * flags at its vector width (run under its emulator when foreign; on the first of `cpus` when given, taskset's list); memoized per target and CPUs.
 */
export function peakGflops(t: Target, cpus?: string): Promise<number> {
  const key = JSON.stringify([t.cc, t.cflags, t.ldflags, t.vectorBytes, t.emulator, cpus]);
  if (!peaks.has(key)) peaks.set(key, measurePeak(t, cpus));
  return peaks.get(key)!;
}

async function measurePeak(t: Target, cpus?: string): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "edgec-peak-"));
  try {
    writeFileSync(join(dir, "peak.c"), PEAK_C);
    // GNU C contracts a*b+c into an FMA by default, ISO modes (-std=c99) do not: ask for it.
    // A WebAssembly build runs as run.wasm behind the artifact's Node launcher, as its harness does.
    const wasm = t.backend === "wasm";
    if (wasm) writeFileSync(join(dir, "run"), renderTemplate("wasm/run", { version: VERSION }));
    const cc = [t.cc, ...t.cflags, "-ffp-contract=fast", `-DVB=${t.vectorBytes}`, "-o", join(dir, wasm ? "run.wasm" : "peak"), join(dir, "peak.c"), ...t.ldflags];
    const c = await $({ nothrow: true, quiet: true })`${cc}`;
    if (c.exitCode !== 0) throw new EdgecError(`compiling the peak probe with ${t.cc} failed: ${(c.stderr || c.stdout).trim().split("\n").slice(0, 5).join("\n")}`, 3);
    // The probe is one long call: V8 would time its baseline code, never swapped for optimized
    // code mid-call, so it compiles optimized code only.
    const pin = cpus ? [TASKSET, "-c", cpus.split(/[,-]/)[0]] : [];
    const probe = [...pin, ...(wasm ? [...t.emulator, "--no-liftoff", join(dir, "run")] : [...t.emulator, join(dir, "peak")])];
    const r = await $({ nothrow: true, quiet: true })`${probe}`;
    const m = /gflops=([\d.]+)/.exec(r.stdout);
    if (r.exitCode !== 0 || !m) throw new EdgecError(`the peak probe failed (exit ${r.exitCode}): ${(r.stderr || r.stdout).trim()}`, 3);
    return Number(m[1]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** onnxruntime-web for WebAssembly targets (its wasm backend, in Node), onnxruntime-node for the rest. */
export const ortEngine = (t: Target): OrtEngine => (t.backend === "wasm" ? "onnxruntime-web" : "onnxruntime-node");

/**
 * The CPUs a run on fewer threads than this process may use is held to, edgec's, onnxruntime's and
 * the peak probe's alike (the first `threads` of them, with taskset; none where it is missing): the
 * cores of a virtual machine can differ in speed, and each process would land on any of them. On
 * the 2-vCPU development machine, squeezenet1_1_c10_64's harness on one thread took 0.256–0.259 ms
 * on CPU 0 and 0.222–0.226 on CPU 1, three alternating runs each (2026-12-07).
 */
function pinFor(threads: number): string | undefined {
  const allowed = allowedCpus();
  if (threads >= allowed.length || !existsSync(TASKSET)) return undefined;
  return cpuList(allowed.slice(0, threads));
}

/** A forked ort-worker: one request at a time, its reply or its death. */
class OrtProcess {
  private readonly child: ChildProcess;
  private stderr = "";

  /** `cpus`: the CPUs it may run on, as taskset's list */
  constructor(cpus?: string) {
    const worker = join(dirname(fileURLToPath(import.meta.url)), "ort-worker.js");
    const pin = cpus ? { execPath: TASKSET, execArgv: ["-c", cpus, process.execPath, ...process.execArgv] } : {};
    this.child = fork(worker, [], { serialization: "advanced", stdio: ["ignore", "ignore", "pipe", "ipc"], ...pin });
    this.child.stderr!.on("data", (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-2000)));
  }

  request<K extends OrtReply["op"]>(r: OrtRequest, want: K): Promise<Extract<OrtReply, { op: K }>> {
    return new Promise((resolve, reject) => {
      const done = () => {
        this.child.off("message", onMessage);
        this.child.off("exit", onExit);
        this.child.off("error", onError);
      };
      const onMessage = (m: OrtReply) => {
        done();
        if (m.op === want) resolve(m as Extract<OrtReply, { op: K }>);
        else reject(new EdgecError(m.op === "error" ? m.message : `onnxruntime process: expected '${want}', got '${m.op}'`, m.op === "error" ? m.exitCode : 3));
      };
      const onExit = (code: number | null, signal: string | null) => {
        done();
        reject(new EdgecError(`the onnxruntime process died (${signal ?? `exit ${code}`})${this.stderr ? `: ${this.stderr.trim().split("\n").slice(-5).join("\n")}` : ""}`, 3));
      };
      // A send to a process that has gone reports 'error' (and 'exit' too, in some order).
      const onError = (e: Error) => {
        done();
        reject(new EdgecError(`the onnxruntime process failed: ${e.message}`, 3));
      };
      this.child.on("message", onMessage);
      this.child.on("exit", onExit);
      this.child.on("error", onError);
      this.child.send(r);
    });
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill();
  }
}

/**
 * Builds MODEL for the target, runs it on a seeded random input and measures latency, peak memory
 * and achieved FLOP/s against the machine's FMA peak; with `compareOrt`, onnxruntime-node runs in
 * alternating rounds with edgec on the same input, and the outputs are compared.
 */
export async function benchModel(model: string, o: BenchOptions): Promise<BenchResult> {
  if (!existsSync(model)) throw new EdgecError(`${model}: no such file`);
  const threads = o.threads ?? (o.target.cores || cpus().length);
  const pinned = pinFor(threads);
  const inputs = randomInputs(model, o.inputShapes);
  const spec = specializeInputs(model, inputs, o.inputShapes);
  const macs = countMacs(unfusedGraph(importOnnx(model, { inputShapes: spec.inputShapes, bind: spec.bind }).graph));
  const tmp = o.buildDir ? undefined : mkdtempSync(join(tmpdir(), "edgec-bench-"));
  let ort: OrtProcess | undefined;
  try {
    const { dir, manifest } = await buildArtifact(model, o.buildDir ?? join(tmp!, "artifact"), { ...o, inputShapes: spec.inputShapes, bind: spec.bind });
    const peak = await peakGflops(o.target, pinned);
    let ortOut: Record<string, Tensor> | undefined;
    let nodeRssKb: number | undefined, ortCpus: string | undefined;
    if (o.compareOrt) {
      ort = new OrtProcess(pinned);
      ({ outputs: ortOut, nodeRssKb, cpus: ortCpus } = await ort.request({ op: "load", engine: ortEngine(o.target), model, threads, warmup: o.warmup, warmupMs: WARMUP_MS, inputs }, "loaded"));
    }
    // A pipeline's throughput shows only in a stream: time each inference of streams of STREAM.
    const stream = o.objective === "throughput" ? STREAM : undefined;
    const edgec = (runs: number, at = dir) => runArtifact(at, spec.runInputs, runs, { threads, warmupMs: WARMUP_MS, stream, cpus: pinned });
    const unfused = o.compareUnfused
      ? (await buildArtifact(model, `${o.buildDir ?? join(tmp!, "artifact")}-unfused`, { ...o, fuse: false, inputShapes: spec.inputShapes, bind: spec.bind })).dir
      : undefined;
    if (o.warmup > 0) await edgec(o.warmup);
    if (unfused && o.warmup > 0) await edgec(o.warmup, unfused);
    const rounds = Math.ceil(o.runs / ROUND);
    const perRound = Math.max(2, Math.ceil(o.runs / rounds));
    const medians: number[] = [], mins: number[] = [], ortMs: number[] = [], unfusedMedians: number[] = [], roundRatios: number[] = [];
    let unfusedLast: RunResult | undefined;
    let maxRssKb = 0;
    let last!: RunResult;
    for (let r = 0; r < rounds; r++) {
      last = await edgec(perRound);
      medians.push(last.medianMs!);
      mins.push(last.minMs!);
      maxRssKb = Math.max(maxRssKb, last.maxRssKb!);
      if (ort) {
        const round = (await ort.request({ op: "run", runs: perRound, warmupMs: WARMUP_MS }, "times")).ms;
        ortMs.push(...round);
        roundRatios.push(last.medianMs! / median(round));
      }
      if (unfused) {
        unfusedLast = await edgec(perRound, unfused);
        unfusedMedians.push(unfusedLast.medianMs!);
      }
    }
    const medianMs = median(medians);
    const flops = 2 * macs;
    const gflops = flops / (medianMs * 1e6);
    const result: BenchResult = {
      model,
      target: o.target.name,
      threads,
      cpus: pinned,
      runs: rounds * perRound,
      medianMs,
      minMs: Math.min(...mins),
      maxRssKb,
      macs,
      flops,
      gflops,
      peakGflops: peak,
      peakGflopsThreads: peak * threads,
      peakFraction: gflops / (peak * threads),
      vectorBytes: o.target.vectorBytes,
      device: last.device,
      stream,
    };
    if (unfusedLast) {
      // The unfused build must compute what the fused one does.
      const differ = manifest.outputs.map((spec, i) => compare(spec.name, unfusedLast!.outputs[i], last.outputs[i], BENCH_TOLERANCE)).find((c) => !c.pass);
      if (differ) throw new EdgecError(`${model}: the unfused build's output ${differ.name} differs from the fused build's (max abs ${differ.maxAbs.toExponential(2)})`, 1);
      result.unfusedMedianMs = median(unfusedMedians);
      result.fusedRatio = medianMs / result.unfusedMedianMs;
    }
    if (o.target.backend === "wasm") {
      const size = (f: string) => (existsSync(join(dir, f)) ? statSync(join(dir, f)).size : 0);
      Object.assign(result, { downloadBytes: size("model.wasm.gz") + size("data.z") + size("weights.z"), wasmBytes: size("model.wasm") + size("weights.bin"), modelBytes: statSync(model).size });
    }
    if (ort && ortOut) {
      const ortMaxRssKb = (await ort.request({ op: "exit" }, "done")).maxRssKb;
      const checks = manifest.outputs.map((spec, i) =>
        ortOut[spec.name] ? compare(spec.name, last.outputs[i], ortOut[spec.name], BENCH_TOLERANCE) : { name: spec.name, maxAbs: Infinity, maxRel: Infinity, pass: false, why: "onnxruntime has no such output" },
      );
      const ortMedianMs = median(ortMs);
      Object.assign(result, { ortEngine: ortEngine(o.target), ortMedianMs, ortMinMs: Math.min(...ortMs), ortMaxRssKb, ortNodeRssKb: nodeRssKb, ortCpus, ratio: medianMs / ortMedianMs, roundRatios, agree: checks.every((c) => c.pass), checks });
    }
    return result;
  } finally {
    ort?.kill();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

/** "mobilenet_v2" for .../mobilenet_v2/model.onnx, "net" for .../net.onnx */
export const modelLabel = (model: string) => (basename(model) === "model.onnx" ? basename(dirname(model)) : basename(model).replace(/\.onnx$/, ""));

const mib = (kb: number) => (kb / 1024).toFixed(1);
const kib = (bytes: number) => (bytes / 1024).toFixed(1);
const ms = (x: number) => x.toFixed(x < 10 ? 3 : 2);

export function formatBench(r: BenchResult): string {
  const lines = [
    `model        ${r.model} on ${r.target}, ${r.threads} thread${r.threads === 1 ? "" : "s"}${r.cpus ? ` on CPU${r.threads === 1 ? "" : "s"} ${r.cpus}` : ""}, ${r.runs} runs`,
    ...(r.device ? [`device       OpenCL ${r.device}${r.device.includes("(not a GPU)") ? ": a CPU emulating the GPU, so this is not a GPU's latency" : ""}`] : []),
    `edgec        median ${ms(r.medianMs)} ms, min ${ms(r.minMs)} ms${r.stream ? ` per inference in streams of ${r.stream} (run_stream)` : ""}, peak RSS ${mib(r.maxRssKb)} MiB`,
    ...(r.unfusedMedianMs !== undefined ? [`unfused      median ${ms(r.unfusedMedianMs)} ms (--no-fuse): fused / unfused ${r.fusedRatio!.toFixed(2)}`] : []),
    `work         ${(r.macs / 1e6).toFixed(1)} M MACs: ${r.gflops.toFixed(2)} GFLOP/s, ${(100 * r.peakFraction).toFixed(1)}% of the ${r.peakGflopsThreads.toFixed(1)} GFLOP/s peak (${r.threads} x ${r.peakGflops.toFixed(1)}, ${r.vectorBytes}-byte vectors)`,
    ...(r.downloadBytes !== undefined
      ? [`size         download (model.wasm.gz, data.z, weights.z) ${kib(r.downloadBytes)} KiB, model file ${kib(r.modelBytes!)} KiB (${(r.downloadBytes / r.modelBytes!).toFixed(3)}x); model.wasm + weights.bin ${kib(r.wasmBytes!)} KiB uncompressed`]
      : []),
  ];
  if (r.ortMedianMs !== undefined) {
    const worst = r.checks!.reduce((a, c) => Math.max(a, c.maxAbs), 0);
    const engine = r.ortEngine ?? "onnxruntime-node";
    lines.push(
      `${engine === "onnxruntime-web" ? "ort-web     " : "onnxruntime "} median ${ms(r.ortMedianMs)} ms, min ${ms(r.ortMinMs!)} ms, peak RSS ${mib(r.ortMaxRssKb!)} MiB (Node alone ${mib(r.ortNodeRssKb!)} MiB)`,
      `ratio        ${r.ratio!.toFixed(2)} (edgec / ${engine})${r.roundRatios?.length ? `, per round ${roundRange(r.roundRatios)}, edgec slower in ${r.roundRatios.filter((x) => x > 1).length} of ${r.roundRatios.length}` : ""}`,
      `outputs      ${r.agree ? "agree" : "DIFFER"} with ${engine} (max abs ${worst.toExponential(2)}; rtol ${BENCH_TOLERANCE.rtol}, atol ${BENCH_TOLERANCE.atol})`,
      ...r.checks!.filter((c) => !c.pass).map((c) => `  ${c.name}: max abs ${c.maxAbs.toExponential(2)}, max rel ${c.maxRel.toExponential(2)}${c.why ? ` (${c.why})` : ""}`),
    );
  }
  return lines.join("\n");
}

/** The lowest and highest of the rounds' ratios ("-" without any). */
export const roundRange = (rs: number[] | undefined): string => (rs?.length ? `${Math.min(...rs).toFixed(2)}–${Math.max(...rs).toFixed(2)}` : "-");

/** A Markdown table of results (a mismatch shows as MISMATCH), then the geometric mean of the ratios per thread count. */
export function formatBenchTable(results: BenchResult[]): string {
  // WebAssembly results add the sizes: the package's download and model.wasm plus weights.bin, against the model file.
  const sized = results.some((r) => r.downloadBytes !== undefined);
  const unfused = results.some((r) => r.unfusedMedianMs !== undefined);
  const vsUnfused = (r: BenchResult) => (r.unfusedMedianMs === undefined ? " - | - |" : ` ${ms(r.unfusedMedianMs)} | ${r.fusedRatio!.toFixed(2)} |`);
  const size = (r: BenchResult) =>
    r.downloadBytes === undefined ? " - | - | - | - |" : ` ${kib(r.downloadBytes)} | ${kib(r.wasmBytes!)} | ${kib(r.modelBytes!)} | ${(r.downloadBytes / r.modelBytes!).toFixed(3)} |`;
  const rows = [
    `| model | threads | edgec ms | ort ms | ratio | rounds' ratios | edgec peak MiB | ort peak MiB | % of peak FLOP/s |${unfused ? " unfused ms | fused/unfused |" : ""}${sized ? " download KiB | wasm+weights.bin KiB | model KiB | download/model |" : ""}`,
    `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |${unfused ? " ---: | ---: |" : ""}${sized ? " ---: | ---: | ---: | ---: |" : ""}`,
    ...results.map((r) =>
      `| ${modelLabel(r.model)} | ${r.threads} | ${ms(r.medianMs)} | ${r.ortMedianMs === undefined ? "-" : ms(r.ortMedianMs)} | ${r.ratio === undefined ? "-" : r.agree ? r.ratio.toFixed(2) : "MISMATCH"} | ${roundRange(r.roundRatios)} | ${mib(r.maxRssKb)} | ${r.ortMaxRssKb === undefined ? "-" : mib(r.ortMaxRssKb)} | ${(100 * r.peakFraction).toFixed(1)} |${unfused ? vsUnfused(r) : ""}${sized ? size(r) : ""}`,
    ),
    "",
  ];
  for (const threads of [...new Set(results.map((r) => r.threads))]) {
    const ratios = results.filter((r) => r.threads === threads && r.agree).map((r) => r.ratio!);
    if (ratios.length) rows.push(`geometric mean of edgec/ort, ${threads} thread${threads === 1 ? "" : "s"}: ${geomean(ratios).toFixed(2)} over ${ratios.length} model${ratios.length === 1 ? "" : "s"}`);
    const fused = results.filter((r) => r.threads === threads && r.fusedRatio !== undefined).map((r) => r.fusedRatio!);
    if (fused.length) rows.push(`geometric mean of fused/unfused, ${threads} thread${threads === 1 ? "" : "s"}: ${geomean(fused).toFixed(2)} over ${fused.length} model${fused.length === 1 ? "" : "s"}`);
  }
  return rows.join("\n");
}
