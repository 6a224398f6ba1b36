import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "zx";
import type { Manifest } from "../core/artifact.js";
import { DTYPES } from "../core/dtype.js";
import { EdgecError } from "../core/diag.js";
import { numel, shapeStr, type Tensor } from "../core/tensor.js";
import { emulatorFor } from "../target/device.js";
import { bytesOf } from "../frontend/onnx/tensor-io.js";
import { readManifest } from "./artifact.js";

/** What the run harness prints after timed runs: latency, memory, device and, from a profiling build, kernel and copy times. */
export interface HarnessOutput {
  medianMs?: number;
  minMs?: number;
  /** peak resident memory of the harness process, when it ran more than once */
  maxRssKb?: number;
  /** the OpenCL platform and device an OpenCL artifact ran on (timed runs only) */
  device?: string;
  /** a profiling build: each kernel's median milliseconds, in kernel order */
  kernelMs?: number[];
  /** a profiling build: the median milliseconds the whole runs spent copying between host and device */
  copiesInRunMs?: number;
  /** a profiling build with a GPU: median milliseconds of one copy of `bytes` to the device and of one back */
  copies?: { bytes: number; writeMs: number; readMs: number }[];
}

export interface RunResult extends HarnessOutput {
  outputs: Tensor[];
}

export function parseHarness(stdout: string): HarnessOutput {
  const field = (k: string) => {
    const f = new RegExp(`${k}=([\\d.]+)`).exec(stdout);
    return f ? Number(f[1]) : undefined;
  };
  const kernels = /^kernel_ms=(.*)$/m.exec(stdout)?.[1];
  const copies = [...stdout.matchAll(/^copy_bytes=(\d+) write_ms=([\d.]+) read_ms=([\d.]+)$/gm)].map((c) => ({ bytes: Number(c[1]), writeMs: Number(c[2]), readMs: Number(c[3]) }));
  return {
    medianMs: field("median_ms"),
    minMs: field("min_ms"),
    maxRssKb: field("max_rss_kb"),
    device: /^device=(.*)$/m.exec(stdout)?.[1],
    copiesInRunMs: field("copies_in_run_ms"),
    kernelMs: kernels === undefined ? undefined : kernels.split(",").filter(Boolean).map(Number),
    copies: copies.length ? copies : undefined,
  };
}

/** util-linux's taskset, which holds a command to a list of CPUs */
export const TASKSET = "/usr/bin/taskset";

/** The CPUs this process may run on (Linux; empty elsewhere), from /proc/self/status's Cpus_allowed_list ("0-3,8"). */
export function allowedCpus(): number[] {
  if (process.platform !== "linux") return [];
  const list = /^Cpus_allowed_list:\s+(\S+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "";
  return list.split(",").filter(Boolean).flatMap((r) => {
    const [a, b = a] = r.split("-").map(Number);
    return Array.from({ length: b - a + 1 }, (_, i) => a + i);
  });
}

/** CPUs as Linux lists them: runs of consecutive ones as ranges ("0-1,4"). */
export function cpuList(cpus: number[]): string {
  const runs: string[] = [];
  for (let i = 0; i < cpus.length; ) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === cpus[j] + 1) j++;
    runs.push(j > i ? `${cpus[i]}-${cpus[j]}` : `${cpus[i]}`);
    i = j + 1;
  }
  return runs.join(",");
}

export interface RunOptions {
  /** thread count for the model (default: the target's cores) */
  threads?: number;
  /** the model to run, in an artifact of several */
  model?: string;
  /** untimed runs for this long before the timed ones (the harness's --warmup-ms) */
  warmupMs?: number;
  /** each run a stream of this many inferences of the given inputs (the harness's --stream, NAME_run_stream); times are per inference */
  stream?: number;
  /** the CPUs the harness may run on, as taskset's list ("0", "0-3") */
  cpus?: string;
}

type ModelIo = Pick<Manifest, "name" | "inputs" | "outputs">;

/** The model `name` picks in the artifact in `dir`; in an artifact of one model, that model. */
export function pickModel(m: Manifest, dir: string, name?: string): ModelIo {
  const all = m.models ?? [m];
  const list = all.map((e) => `'${e.name}'`).join(", ");
  if (name === undefined) {
    if (all.length > 1) throw new EdgecError(`${dir}: the artifact has several models (${list}): name one with --model`);
    return all[0];
  }
  const picked = all.find((e) => e.name === name);
  if (!picked) throw new EdgecError(`${dir}: no model '${name}' in the artifact (it has ${list})`);
  return picked;
}

/** Orders and checks the given tensors against the model's inputs (by name). */
export function matchInputs(m: Pick<Manifest, "inputs">, given: Record<string, Tensor>): Tensor[] {
  const missing = m.inputs.filter((i) => !given[i.name]).map((i) => `'${i.name}'`);
  if (missing.length) throw new EdgecError(`missing input ${missing.join(", ")} (the model's inputs are ${m.inputs.map((i) => `'${i.name}' ${i.dtype}${shapeStr(i.shape)}`).join(", ")})`);
  const extra = Object.keys(given).filter((k) => !m.inputs.some((i) => i.name === k));
  if (extra.length) throw new EdgecError(`unknown input ${extra.map((e) => `'${e}'`).join(", ")} (the model's inputs are ${m.inputs.map((i) => `'${i.name}'`).join(", ")})`);
  return m.inputs.map((spec) => {
    const t = given[spec.name];
    if (t.dtype !== spec.dtype) throw new EdgecError(`input '${spec.name}' is ${t.dtype}, the model expects ${spec.dtype}`);
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw new EdgecError(`input '${spec.name}' has shape ${shapeStr(t.shape)}, the artifact was built for ${shapeStr(spec.shape)}`);
    }
    return t;
  });
}

/** Runs a built artifact's harness on the build machine (under the target's emulator if foreign), on one of its models. */
export async function runArtifact(dir: string, given: Record<string, Tensor>, runs = 1, opts: RunOptions = {}): Promise<RunResult> {
  const m = readManifest(dir);
  if (!m.runProgram) throw new EdgecError(`${dir}: the artifact has no run program (its compiler was missing at build time)`);
  const picked = pickModel(m, dir, opts.model);
  const inputs = matchInputs(picked, given);
  const emulator = emulatorFor(m.target, m.triple);
  const io = mkdtempSync(join(dir, ".io-"));
  try {
    inputs.forEach((t, i) => writeFileSync(join(io, `${i}.bin`), Buffer.concat(new Array<Uint8Array>(opts.stream ?? 1).fill(bytesOf(t.data)))));
    const threads = opts.threads ? ["--threads", String(opts.threads)] : [];
    const model = m.models ? ["--model", picked.name] : [];
    const warmup = opts.warmupMs ? ["--warmup-ms", String(opts.warmupMs)] : [];
    const stream = opts.stream ? ["--stream", String(opts.stream)] : [];
    const pin = opts.cpus ? [TASKSET, "-c", opts.cpus] : [];
    const cmd = [...pin, ...emulator, join(dir, m.runProgram), ...threads, ...model, ...warmup, ...stream, io, io, String(runs)];
    const r = await $({ nothrow: true, quiet: true })`${cmd}`;
    if (r.exitCode !== 0) throw new EdgecError(`running ${dir}/${m.runProgram} failed (exit ${r.exitCode}): ${(r.stderr || r.stdout).trim().split("\n").slice(0, 20).join("\n")}`, 3);
    const outputs = picked.outputs.map((spec, i) => {
      const raw = readFileSync(join(io, `${i}.bin`));
      const t: Tensor = { dtype: spec.dtype, shape: spec.shape, data: new DTYPES[spec.dtype].array(numel(spec.shape)) };
      bytesOf(t.data).set(raw.subarray(0, t.data.byteLength));
      return t;
    });
    return { outputs, ...parseHarness(r.stdout) };
  } finally {
    rmSync(io, { recursive: true, force: true });
  }
}
