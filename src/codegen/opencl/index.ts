import { numel } from "../../core/tensor.js";
import { EdgecError } from "../../core/diag.js";
import { DTYPES } from "../../core/dtype.js";
import { touched, type Kernel, type Program } from "../../loop/ir.js";
import type { Backend, Files } from "../backend.js";
import { cBackend, harnessView, headerView, makeGoals, makefileView, view, weightsBlob, type CConfig } from "../c/index.js";
import { renderTemplate } from "../template.js";
import { usesFloat64 } from "../../loop/split.js";
import { deviceLayout, kernelLaunches, type DeviceLayout } from "./kernels.js";

/** Work-items per work-group when the target's GPU entry does not say. */
export const DEFAULT_WORK_GROUP = 64;

/** The runtime's code for a launch's variant (which devices run it). */
const VARIANT = { any: 0, tiled: 1, untiled: 2 } as const;

/** A C string literal per source line (kernels.cl compiled into the host code). */
const cString = (text: string) =>
  text.split("\n").map((line, i, all) => JSON.stringify(line + (i < all.length - 1 ? "\n" : ""))).join("\n");

/** The weights blob as 32-bit little-endian words in hex, twelve a line. */
function words(blob: Uint8Array): string {
  const n = Math.max(1, Math.ceil(blob.byteLength / 4));
  const padded = new Uint8Array(n * 4);
  padded.set(blob);
  const view = new DataView(padded.buffer);
  const lines: string[] = [];
  for (let i = 0; i < n; i += 12) {
    const row: string[] = [];
    for (let j = i; j < Math.min(n, i + 12); j++) row.push(`0x${view.getUint32(4 * j, true).toString(16).padStart(8, "0")}u`);
    lines.push(`  ${row.join(", ")}`);
  }
  return lines.join(",\n");
}

/** Which sides hold a tensor's current contents. */
type Where = { host: boolean; device: boolean };

/**
 * What a statement of NAME_run is to a pipelined stream (NAME_run_stream): starting OpenCL, a CPU
 * kernel, an upload or launch that hands the GPU its work, or waiting for the GPU and reading back.
 */
type Phase = "ready" | "cpu" | "enqueue" | "drain";

/**
 * NAME_run's statements for a program whose kernels run on the GPU (tagged "gpu" or untagged) and
 * the CPU ("cpu"): consecutive GPU kernels as one enqueue of their launches, CPU kernels as calls,
 * and a blocking copy wherever a kernel reads a tensor last written on the other side (never one
 * nothing wrote yet, such as the CPU's per-thread scratch, which its kernels write before reading).
 * Weights live on both sides; inputs start on the host; outputs not last written on the host are
 * read back.
 */
function runSteps(p: Program, cfg: CConfig, layout: DeviceLayout, ranges: Map<string, [number, number]>, calls: Map<string, string>): { text: string; phase: Phase }[] {
  const name = cfg.opts.name;
  const fresh = new Map<string, Where>();
  for (const b of p.buffers.values()) fresh.set(b.name, { host: b.kind !== "arena" && b.kind !== "output", device: b.kind === "weight" });
  const bytes = (n: string) => numel(p.buffers.get(n)!.shape) * DTYPES[p.buffers.get(n)!.dtype].bytes;
  const hostPtr = (n: string) => {
    const b = p.buffers.get(n)!;
    const field = n.replace(/^(in|out)_/, "");
    return b.kind === "input" ? `inputs->${field}` : b.kind === "output" ? `outputs->${field}` : `((char *)&edgec_arena + ${b.offset})`;
  };
  const copy = (n: string, dir: "write" | "read") => {
    const r = layout.region.get(n)!;
    const buffer = r.base === "edgec_arena" ? 0 : 2;
    const src = dir === "write" ? `(const void *)${hostPtr(n)}` : `(void *)${hostPtr(n)}`;
    const statement = `if (${name}_cl_${dir}(${buffer}, ${r.offset}, ${bytes(n)}, ${src}, "${p.buffers.get(n)!.value.replace(/["\\]/g, "")}") != 0) return -3;`;
    // A profiling build times the copy alone: a blocking copy would otherwise wait out the kernels queued before it.
    return cfg.opts.profile ? [`if (${name}_cl_finish() != 0) return -3;`, "edgec_copy_start();", statement, "edgec_copy_mark();"].join("\n  ") : statement;
  };
  // The host's arena, when the CPU runs kernels: a device sharing host memory works in it directly,
  // unless a pipeline runs the two devices on different inferences at once.
  const hostArena = p.arenaBytes && p.kernels.some((k) => k.device === "cpu") && !cfg.opts.pipeline ? "(void *)&edgec_arena" : "NULL";
  const out: { text: string; phase: Phase }[] = [];
  const push = (phase: Phase, ...texts: string[]) => texts.forEach((text) => out.push({ text, phase }));
  if (cfg.opts.profile) push("ready", "edgec_prof_copies = 0;");
  push("ready", `{ int rc = ${name}_cl_ready(${cfg.opts.weights === "file" ? "edgec_weights" : "NULL"}, ${hostArena}); if (rc != 0) return rc; }`);
  const finish = `if (${name}_cl_finish() != 0) return -3;`;
  let group: Kernel[] = [];
  /** Enqueues the group; `timed`: a profiling build's one kernel, launched alone and waited for, its uploads outside its time. */
  const flush = (timed?: number) => {
    if (!group.length) return;
    // The host does not change while the group runs, so every upload it needs can go first.
    for (const k of group) {
      for (const n of touched(k.body).reads) if (!fresh.get(n)!.device && fresh.get(n)!.host && bytes(n) > 0) (push("enqueue", copy(n, "write")), (fresh.get(n)!.device = true));
      for (const n of k.writes) fresh.set(n, { host: false, device: true });
    }
    const launch = `if (${name}_cl_launch(${ranges.get(group[0].name)![0]}, ${ranges.get(group[group.length - 1].name)![1]}) != 0) return -3;`;
    push("enqueue", ...(timed === undefined ? [launch] : ["edgec_prof_start();", launch, `if (edgec_prof_on && ${name}_cl_finish() != 0) return -3;`, `edgec_prof_mark(${timed});`]));
    group = [];
  };
  p.kernels.forEach((k, i) => {
    if (k.device !== "cpu") {
      group.push(k);
      if (cfg.opts.profile) flush(i);
      return;
    }
    // On a shared arena the CPU's writes could land on what queued GPU kernels still read: wait for them.
    const afterGpu = group.length > 0;
    flush();
    if (afterGpu) push("drain", `if (${name}_cl_shared_wait() != 0) return -3;`);
    for (const n of touched(k.body).reads) if (!fresh.get(n)!.host && fresh.get(n)!.device && bytes(n) > 0) (push("drain", copy(n, "read")), (fresh.get(n)!.host = true));
    for (const n of k.writes) fresh.set(n, { host: true, device: false });
    if (cfg.opts.profile) push("cpu", "edgec_prof_start();", calls.get(k.name)!, `edgec_prof_mark(${i});`);
    else push("cpu", calls.get(k.name)!);
  });
  flush();
  for (const n of p.outputs) if (!fresh.get(n)!.host && bytes(n) > 0) push("drain", copy(n, "read"));
  push("drain", finish);
  return out;
}

/**
 * NAME_run_stream for a two-stage pipeline (--objective throughput): NAME_run's statements in three
 * stage functions, and a loop that runs the first device's stage of input i while the other device
 * runs its stage of input i-1. CPU first: the CPU kernels of input i run while the GPU works on
 * i-1; then the host waits for it, reads i-1 back and hands the GPU input i. GPU first: input i goes
 * to the GPU, the CPU kernels of input i-1 run meanwhile, then the host waits and reads i back.
 * Host and device arenas are separate memories here (runSteps passes no host arena to share for a
 * pipeline), so neither stage overwrites the other's tensors.
 */
function streamView(p: Program, name: string, phased: { text: string; phase: Phase }[], first: "cpu" | "gpu", weightsCheck: string[]) {
  const devices = p.kernels.map((k) => (k.device === "cpu" ? "cpu" : "gpu"));
  const switches = devices.filter((d, i) => i > 0 && d !== devices[i - 1]).length;
  if (devices[0] !== first || switches !== 1) throw new Error(`streamView: the kernels are not two stages, ${first} first (${devices.join(" ")})`);
  const part = (phase: Phase) => phased.filter((x) => x.phase === phase).map((x) => `  ${x.text}`).join("\n");
  const call = (stage: string, at: string, when: string) => `  if (${when} && (rc = edgec_stage_${stage}(&inputs[${at}], &outputs[${at}])) != 0) return rc;`;
  const loop = first === "cpu" ? [call("cpu", "i", "i < n"), call("drain", "i - 1", "i > 0"), call("enqueue", "i", "i < n")] : [call("enqueue", "i", "i < n"), call("cpu", "i - 1", "i > 0"), call("drain", "i", "i < n")];
  return {
    streamDoc: `A two-stage pipeline (--objective throughput): the ${first === "cpu" ? "CPU's kernels of inference i run while the GPU works on inference i-1" : "GPU works on inference i while the CPU's kernels of inference i-1 run"}, so a stream takes about as long as the slower device's share plus the copies, not the sum.`,
    streamStages: [{ name, cpu: part("cpu"), enqueue: `${part("enqueue")}\n  if (${name}_cl_flush() != 0) return -3;`, drain: part("drain") }],
    streamBody: [...weightsCheck, part("ready").trim(), "for (i = 0; i <= n; i++) {", "  int rc;", ...loop, "}"],
  };
}

/** The run's view of the OpenCL runtime (runtime.c), declared in model.c. */
const runtimeDecls = (name: string) => `int ${name}_cl_ready(const void *weights, void *host_arena);
int ${name}_cl_launch(int first, int end);
int ${name}_cl_write(int buffer, size_t offset, size_t bytes, const void *src, const char *what);
int ${name}_cl_read(int buffer, size_t offset, size_t bytes, void *dst, const char *what);
int ${name}_cl_finish(void);
int ${name}_cl_flush(void);
int ${name}_cl_shared_wait(void);
`;

function render(p: Program, cfg: CConfig): Files {
  const gpu = cfg.target.devices.find((d) => d.kind === "gpu" && d.api === "opencl");
  const layout = deviceLayout(p);
  const onGpu = p.kernels.filter((k) => k.device !== "cpu");
  const onCpu = p.kernels.filter((k) => k.device === "cpu");
  // Everything on the CPU (placed there by the cost model): a plain C artifact, no OpenCL at run time.
  if (!onGpu.length) return cBackend.render(p, cfg);
  const ranges = new Map<string, [number, number]>();
  const launches = onGpu.flatMap((k) => {
    const ls = kernelLaunches(k, p, layout, gpu?.workGroupSize ?? DEFAULT_WORK_GROUP);
    const first = [...ranges.values()].reduce((n, [, end]) => Math.max(n, end), 0);
    ranges.set(k.name, [first, first + ls.length]);
    return ls;
  });
  const { name, version, source } = cfg.opts;
  const external = cfg.opts.weights === "file";
  // Kernels in double need cl_khr_fp64, enabled in the source and checked on the device at run time.
  const fp64 = onGpu.some((k) => usesFloat64(k, p));
  const kernels = renderTemplate("opencl/kernels.cl", { version, source, target: cfg.target.name, fp64: fp64 ? [{}] : [], launches })
    .replace(/[^\x20-\x7e\n]/g, "?");
  const blob = weightsBlob(p);
  // The copy probe of a profiling build times 4 KiB and 1 MiB copies, in a buffer of its own.
  const profileCopy = { name, NAME: name.toUpperCase(), small: 4096, max: 1 << 20 };
  const runtime = renderTemplate("opencl/runtime.c", {
    profileCopy: cfg.opts.profile ? [profileCopy] : [],
    version, source, name, target: cfg.target.name,
    deviceHint: (gpu?.openclName ?? "").replace(/["\\]/g, ""),
    kernelSource: cString(kernels),
    launchCount: launches.length,
    launches: launches.map((l) => ({ name: l.name, dims: l.global.length, global: l.global.join(", "), local: [...l.local, 1, 1].slice(0, 3).join(", "), fixed: l.fixed ? 1 : 0, variant: VARIANT[l.variant] })),
    tiledKernels: launches.some((l) => l.variant === "tiled") ? 1 : 0,
    arenaBytes: p.arenaBytes,
    ioBytes: layout.ioBytes,
    weightBytes: layout.weightBytes,
    embeddedWeights: external ? [] : [{ words: Math.max(1, Math.ceil(blob.byteLength / 4)), values: words(blob) }],
    weightsSource: external ? "weights" : "edgec_weights_words",
    needsFp64: fp64 ? 1 : 0,
  });
  // model.c is the C backend's, over the CPU's kernels and the weights they read (all of weights.bin when external).
  const cpuUses = new Set(onCpu.flatMap((k) => k.params));
  const buffers = external ? p.buffers : new Map([...p.buffers].filter(([n, b]) => b.kind !== "weight" || cpuUses.has(n)));
  const base = view({ ...p, kernels: onCpu, buffers }, cfg);
  const phased = runSteps(p, cfg, layout, ranges, new Map(onCpu.map((k, i) => [k.name, base.kernels[i].call])));
  const v = {
    ...base,
    ...(cfg.opts.pipeline ? streamView(p, name, phased, cfg.opts.pipeline.first, base.weightsCheck) : {}),
    steps: phased.map((x) => x.text),
    arenaDecl: onCpu.length ? base.arenaDecl : "",
    deviceDecls: runtimeDecls(name),
    lastError: [{ fn: `${name}_last_error`, device: `${name}_device` }],
    lastErrorFn: `${name}_last_error`,
    deviceFn: `${name}_device`,
    runFailures: `, or -3 when OpenCL fails (${name}_last_error says why)`,
    profile: cfg.opts.profile ? [{ name, NAME: name.toUpperCase(), count: p.kernels.length }] : [],
    profileCopy: cfg.opts.profile ? [profileCopy] : [],
  };
  const files: Files = {
    "kernels.cl": kernels,
    "model.h": renderTemplate("c/model.h", headerView([v], cfg, [])),
    "model.c": renderTemplate("c/model.c", v),
    "opencl.c": runtime,
    "run.c": renderTemplate("c/run.c", harnessView([v], cfg, false)),
    Makefile: renderTemplate("c/Makefile", makefileView(cfg, ["model.c", "opencl.c"], "-lm -ldl")),
  };
  if (external) files["weights.bin"] = blob;
  return files;
}

/**
 * OpenCL: the GPU's kernels as OpenCL C 1.2 (kernels.cl) and their runtime on the OpenCL API
 * (opencl.c); model.c is the C backend's, with the CPU's kernels (those tagged "cpu": what the GPU
 * cannot run) and a run that interleaves them with the GPU's launches and the copies between. Same
 * model.h, run harness and Makefile as the C backend. GPU loops are lowered without the CPU's vector
 * shape: a work-item per output element, not a register-blocked micro-kernel.
 */
export const openclBackend: Backend<CConfig> = {
  name: "opencl",
  device: "gpu",
  configure: (target, opts) => ({ target, opts }),
  lower: (p) => p,
  render,
  renderShared() {
    throw new EdgecError("several models in one artifact are not supported on the GPU (--placement gpu or auto) yet; build them one by one");
  },
  package: (dir, cfg) => makeGoals(dir, cfg, ["run", `lib${cfg.opts.name}.a`]),
};
