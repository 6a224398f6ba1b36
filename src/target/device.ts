import { EdgecError } from "../core/diag.js";
import { loadTarget } from "./load.js";
import type { Target } from "./schema.js";

/** Where the kernels run (--placement, or --device): the CPU, the GPU, or each where the cost model says (auto). */
export type DeviceKind = "cpu" | "gpu" | "auto";

/**
 * The target as built for `device` (--device): gpu switches a target with an OpenCL GPU to the
 * OpenCL backend, cpu switches an OpenCL target back to C; absent keeps the target's own backend.
 * `here`: the artifact runs on this build machine (run, verify, bench, conformance). A foreign
 * target's GPU build then gets this machine's compiler and CPU settings for its host code: the
 * kernels are the target's own, run through this machine's OpenCL (PoCL, without a GPU).
 */
export function forDevice(t: Target, device: DeviceKind | undefined, here: boolean): Target {
  if (device === "cpu") return t.backend === "opencl" ? { ...t, backend: "c" } : t;
  if (device === undefined && t.backend !== "opencl") return t;
  if (!t.devices.some((d) => d.kind === "gpu" && d.api === "opencl")) {
    throw new EdgecError(`target '${t.name}' has no OpenCL GPU (its devices: ${t.devices.map((d) => `${d.kind} ${d.name}`).join(", ") || "none"}); --placement ${device ?? "gpu"} needs one (see \`edgec targets\`)`);
  }
  const gpu: Target = { ...t, backend: "opencl" };
  if (!here || !t.emulator.length) return gpu;
  const host = loadTarget("host");
  return { ...gpu, triple: host.triple, arch: host.arch, cc: host.cc, cflags: host.cflags, ldflags: host.ldflags, emulator: [], vectorBytes: host.vectorBytes, vectorRegisters: host.vectorRegisters, cores: host.cores };
}

/** The command prefix that runs an artifact built for `target` and `triple` on this machine: none for one built for it. */
export function emulatorFor(target: string, triple: string): string[] {
  return triple === loadTarget("host").triple ? [] : loadTarget(target).emulator;
}
