import { numel } from "../../core/tensor.js";
import { EdgecError } from "../../core/diag.js";
import { DTYPES } from "../../core/dtype.js";
import type { Program } from "../../loop/ir.js";
import type { Backend, Files } from "../backend.js";
import { harnessView, headerView, makeGoals, makefileView, view, weightsBlob, type CConfig } from "../c/index.js";
import { renderTemplate } from "../template.js";
import { deviceLayout, kernelLaunches, usesDouble } from "./kernels.js";

/** Work-items per work-group when the target's GPU entry does not say. */
const DEFAULT_WORK_GROUP = 64;

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

function render(p: Program, cfg: CConfig): Files {
  const gpu = cfg.target.devices.find((d) => d.kind === "gpu" && d.api === "opencl");
  const layout = deviceLayout(p);
  const launches = p.kernels.flatMap((k) => kernelLaunches(k, p, layout, gpu?.workGroupSize ?? DEFAULT_WORK_GROUP));
  const { name, version, source } = cfg.opts;
  const external = cfg.opts.weights === "file";
  const kernels = renderTemplate("opencl/kernels.cl", { version, source, target: cfg.target.name, fp64: usesDouble(launches.map((l) => l.source).join("")) ? [{}] : [], launches })
    .replace(/[^\x20-\x7e\n]/g, "?");
  const io = (names: string[]) =>
    names
      .map((n) => ({ field: n.replace(/^(in|out)_/, ""), offset: layout.region.get(n)!.offset, bytes: numel(p.buffers.get(n)!.shape) * DTYPES[p.buffers.get(n)!.dtype].bytes }))
      .filter((x) => x.bytes > 0);
  const blob = weightsBlob(p);
  const host = renderTemplate("opencl/model.c", {
    version, source, name, target: cfg.target.name,
    deviceHint: (gpu?.openclName ?? "").replace(/["\\]/g, ""),
    kernelSource: cString(kernels),
    launchCount: Math.max(1, launches.length),
    launches: launches.map((l) => ({ name: l.name, dims: l.global.length, global: l.global.join(", "), local: l.local.join(", ") })),
    arenaBytes: p.arenaBytes,
    ioBytes: layout.ioBytes,
    weightBytes: layout.weightBytes,
    embeddedWeights: external ? [] : [{ words: Math.max(1, Math.ceil(blob.byteLength / 4)), values: words(blob) }],
    externalWeights: external ? [{ name, bytes: layout.weightBytes }] : [],
    inputs: io(p.inputs),
    outputs: io(p.outputs),
  });
  const v = { ...view(p, cfg, undefined, true), maxThreads: 1, lastError: [{ fn: `${name}_last_error`, device: `${name}_device` }], lastErrorFn: `${name}_last_error`, deviceFn: `${name}_device`, runFailures: `, or -3 when OpenCL fails (${name}_last_error says why)` };
  const files: Files = {
    "kernels.cl": kernels,
    "model.h": renderTemplate("c/model.h", headerView([v], cfg, [])),
    "model.c": host,
    "run.c": renderTemplate("c/run.c", harnessView([v], cfg, false)),
    Makefile: renderTemplate("c/Makefile", makefileView(cfg, ["model.c"], "-lm -ldl")),
  };
  if (external) files["weights.bin"] = blob;
  return files;
}

/**
 * OpenCL: the model's kernels as OpenCL C 1.2 (kernels.cl) and C host code on the OpenCL API
 * (model.c), behind the same model.h, run harness and Makefile as the C backend. The GPU runs every
 * kernel; the host moves inputs and outputs. Loops are lowered without the CPU's vector shape: a
 * work-item per output element, not a register-blocked micro-kernel.
 */
export const openclBackend: Backend<CConfig> = {
  name: "opencl",
  device: "gpu",
  configure: (target, opts) => ({ target, opts }),
  lower: (p) => p,
  render,
  renderShared() {
    throw new EdgecError("several models in one artifact are not supported on the GPU (--device gpu) yet; build them one by one");
  },
  package: (dir, cfg) => makeGoals(dir, cfg, ["run", `lib${cfg.opts.name}.a`]),
};
