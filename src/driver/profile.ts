import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { $ } from "zx";
import type { Manifest } from "../core/artifact.js";
import { EdgecError } from "../core/diag.js";
import type { Costs } from "../graph/cost.js";
import type { Host } from "../deploy/inventory.js";
import { Ssh, type SshOptions } from "../deploy/ssh.js";
import { bytesOf } from "../frontend/onnx/tensor-io.js";
import { forDevice } from "../target/device.js";
import { loadTarget } from "../target/load.js";
import { buildArtifact } from "./artifact.js";
import { randomInputs } from "./bench.js";
import { fileSha256 } from "./costs.js";
import { specializeInputs } from "./inputs.js";
import { cpuFusionsOn, type PipelineOptions } from "./pipeline.js";
import { matchInputs, parseHarness, type HarnessOutput } from "./run.js";
import { VERSION } from "./version.js";

export interface ProfileOptions extends PipelineOptions {
  /** timed runs of each build (medians) */
  runs: number;
  /** measure on this device over SSH instead of on this machine */
  host?: Host;
  ssh?: Omit<SshOptions, "controlDir">;
  /** where the two profiling builds go (default: a temporary folder) */
  buildDir?: string;
}

/** Milliseconds of untimed runs before the timed ones: caches, clocks and PoCL's thread pool warm up. */
const WARMUP_MS = 300;

/**
 * Each kernel's milliseconds, summed per graph node, for the kernels that ran on `device`. Timing a
 * kernel alone (waiting for the GPU after each) adds a wait per kernel that a run without clocks
 * overlaps, so the timed kernels give each kernel's share, and the run without clocks (median_ms,
 * less the copies of inputs and outputs it made, which the placement charges on their own) the
 * whole: the kernels' times are scaled to add up to it.
 */
function perNode(m: Manifest, out: HarnessOutput, device: "cpu" | "gpu"): Map<string, number> {
  if (!out.kernelMs || out.kernelMs.length !== m.profile!.length || !out.medianMs) throw new EdgecError(`profile: the ${device} build printed ${out.kernelMs?.length ?? "no"} kernel times for ${m.profile!.length} kernels`, 3);
  const sum = out.kernelMs.reduce((a, b) => a + b, 0);
  const scale = sum > 0 ? Math.max(0, out.medianMs - (out.copiesInRunMs ?? 0)) / sum : 1;
  const times = new Map<string, number>();
  m.profile!.forEach((k, i) => {
    if (k.device === device) times.set(k.node, (times.get(k.node) ?? 0) + out.kernelMs![i] * scale);
  });
  return times;
}

/**
 * A copy's latency and bandwidth from the copies timed at a small and a large size (each the mean
 * of the upload and the download): the line through the two points.
 */
function fitCopy(copies: NonNullable<HarnessOutput["copies"]>): Costs["copy"] {
  const pts = copies.map((c) => ({ bytes: c.bytes, ms: (c.writeMs + c.readMs) / 2 })).sort((a, b) => a.bytes - b.bytes);
  if (!pts.length) throw new EdgecError("profile: the GPU build timed no copies", 3);
  const [a, b] = [pts[0], pts[pts.length - 1]];
  const slope = b.bytes > a.bytes && b.ms > a.ms ? (b.ms - a.ms) / (b.bytes - a.bytes) : b.ms / b.bytes;
  return { latencyUs: Math.max(0, (a.ms - slope * a.bytes) * 1e3), GBs: 1 / (slope * 1e6) };
}

/**
 * edgec profile: builds MODEL twice for the target, every kernel on the CPU and every kernel on the
 * GPU, each with a clock around every kernel, runs both on a seeded random input (on this machine,
 * or on `host` over SSH) and returns each kernel's median time on each device and the copy cost,
 * for edgec build --costs.
 */
export async function profileModel(model: string, o: ProfileOptions): Promise<Costs> {
  const here = !o.host;
  const host = loadTarget("host");
  if (here && o.target.triple !== host.triple) throw new EdgecError(`profile: target '${o.target.name}' is ${o.target.arch}; this machine (${host.arch}) would time its CPU kernels under an emulator. Measure on a ${o.target.name} device with --host user@device`);
  const tmp = mkdtempSync(join(tmpdir(), "edgec-profile-"));
  const stage = o.buildDir ?? join(tmp, "stage");
  try {
    const inputs = randomInputs(model, o.inputShapes);
    const spec = specializeInputs(model, inputs, o.inputShapes);
    const builds = await Promise.all(
      (["cpu", "gpu"] as const).map(async (device) => {
        const target = forDevice(o.target, device, here);
        const r = await buildArtifact(model, join(stage, device), { ...o, target, cpuFusions: cpuFusionsOn(o.target), inputShapes: spec.inputShapes, bind: spec.bind, placement: undefined, costs: undefined, profile: true });
        if (!r.manifest.runProgram) throw new EdgecError(`profile: the ${device} build has no run program (${r.skipped ?? "its compiler is missing"})`, 3);
        return r;
      }),
    );
    const m = builds[0].manifest;
    mkdirSync(join(stage, "in"), { recursive: true });
    matchInputs(m, spec.runInputs).forEach((t, i) => writeFileSync(join(stage, "in", `${i}.bin`), bytesOf(t.data)));
    // Locally one build after the other, so the two never share the cores.
    const [cpu, gpu] = o.host ? await runRemote(stage, builds.map((b) => b.manifest), o) : [await runLocal(builds[0].dir, builds[0].manifest, o.runs), await runLocal(builds[1].dir, builds[1].manifest, o.runs)];
    const cpuMs = perNode(builds[0].manifest, cpu, "cpu");
    const gpuMs = perNode(builds[1].manifest, gpu, "gpu");
    const kernels: Costs["kernels"] = {};
    for (const n of new Set([...cpuMs.keys(), ...gpuMs.keys()])) kernels[n] = { cpuMs: cpuMs.get(n), gpuMs: gpuMs.get(n) };
    const cpuEntry = o.target.devices.find((d) => d.kind === "cpu");
    return {
      edgec: VERSION,
      model: { file: basename(model), sha256: fileSha256(model) },
      target: o.target.name,
      machine: o.host ? o.host.name : "this machine",
      devices: { cpu: cpuEntry?.name ?? "CPU", gpu: gpu.device ?? "OpenCL device" },
      runs: o.runs,
      wholeRunMs: { cpu: cpu.medianMs! - (cpu.copiesInRunMs ?? 0), gpu: gpu.medianMs! - (gpu.copiesInRunMs ?? 0) },
      copiesInRunMs: { cpu: cpu.copiesInRunMs ?? 0, gpu: gpu.copiesInRunMs ?? 0 },
      kernels,
      copy: fitCopy(gpu.copies ?? []),
      overlap: !gpu.device?.includes("(not a GPU)"),
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** One build's harness on this machine. */
async function runLocal(dir: string, m: Manifest, runs: number): Promise<HarnessOutput> {
  const io = mkdtempSync(join(dir, ".io-"));
  try {
    const cmd = [join(dir, m.runProgram!), "--warmup-ms", String(WARMUP_MS), join(dir, "..", "in"), io, String(Math.max(2, runs))];
    const r = await $({ nothrow: true, quiet: true })`${cmd}`;
    if (r.exitCode !== 0) throw new EdgecError(`profile: ${dir}/${m.runProgram} failed (exit ${r.exitCode}): ${(r.stderr || r.stdout).trim().split("\n").slice(0, 10).join("\n")}`, 3);
    return parseHarness(r.stdout);
  } finally {
    rmSync(io, { recursive: true, force: true });
  }
}

/**
 * Both builds' harnesses on the device over SSH, in one session: the run programs, weights and the
 * input go to a temporary folder there, which is removed afterwards.
 */
async function runRemote(stage: string, ms: Manifest[], o: ProfileOptions): Promise<HarnessOutput[]> {
  const controlDir = mkdtempSync(join(tmpdir(), "edgec-ssh-"));
  const ssh = new Ssh(o.host!, { ...o.ssh, controlDir });
  const files = (device: string, m: Manifest) => [m.runProgram!, ...(m.weightsFile ? [m.weightsFile] : [])].map((f) => `${device}/${f}`);
  const script = `set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
tar -xf - -C "$d"
for b in cpu gpu; do
  mkdir "$d/$b/out"
  echo "== $b"
  "$d/$b/run" --warmup-ms "$2" "$d/in" "$d/$b/out" "$1"
done`;
  try {
    const inputs = ms[0].inputs.map((_, i) => `in/${i}.bin`);
    const out = await ssh.stream(script, [String(Math.max(2, o.runs)), String(WARMUP_MS)], [[stage, [...files("cpu", ms[0]), ...files("gpu", ms[1]), ...inputs]]], () => undefined, `profile on ${o.host!.name}`);
    const parts = out.split(/^== (?:cpu|gpu)$/m).slice(1);
    if (parts.length !== 2) throw new EdgecError(`profile: ${o.host!.name} printed no results`, 3);
    return parts.map(parseHarness);
  } catch (e) {
    throw e instanceof EdgecError ? e : new EdgecError(`profile on ${o.host!.name}: ${(e as Error).message}`, 3);
  } finally {
    await ssh.close();
    rmSync(controlDir, { recursive: true, force: true });
  }
}
