import type { DeviceEntry } from "../target/schema.js";
import type { Kernel, Program } from "./ir.js";

/** Whether kernel `k` of `p` touches or computes float64 anywhere. */
export const usesFloat64 = (k: Kernel, p: Program): boolean => k.params.some((n) => p.buffers.get(n)!.dtype === "float64") || JSON.stringify(k.body).includes('"float64"');

/** Why `gpu` cannot run kernel `k` of `p`, or undefined when it can: float64 on a GPU without it. */
export function gpuCannot(k: Kernel, p: Program, gpu: DeviceEntry): string | undefined {
  return gpu.fp64 === false && usesFloat64(k, p) ? `${gpu.name} has no float64` : undefined;
}

/**
 * One program from the same graph lowered twice, for the CPU and for the GPU: kernel i from `cpu`
 * where `onCpu[i]`, else from `gpu`, each tagged with its device. Both lowerings name buffers and
 * kernels alike and place graph tensors at the same arena offsets; the CPU's may add packed weights
 * and per-thread scratch after the arena, so the arena is the larger of the two.
 */
export function splitProgram(cpu: Program, gpu: Program, onCpu: boolean[]): Program {
  if (cpu.kernels.length !== gpu.kernels.length || cpu.kernels.some((k, i) => k.name !== gpu.kernels[i].name)) {
    throw new Error("splitProgram: the CPU and GPU lowerings do not have the same kernels");
  }
  const kernels = gpu.kernels.map((k, i): Kernel => (onCpu[i] ? { ...cpu.kernels[i], device: "cpu" } : { ...k, device: "gpu" }));
  for (const [n, b] of gpu.buffers) {
    const c = cpu.buffers.get(n);
    if (c && (c.value !== b.value || c.kind !== b.kind || c.offset !== b.offset || c.dtype !== b.dtype || c.shape.join() !== b.shape.join())) {
      throw new Error(`splitProgram: buffer ${n} is ${b.value} in the GPU lowering but ${c.value} in the CPU one`);
    }
  }
  const used = new Set(kernels.flatMap((k) => k.params));
  const buffers = new Map([...gpu.buffers, ...cpu.buffers].filter(([n, b]) => b.kind !== "weight" || used.has(n)));
  return { ...gpu, kernels, buffers, arenaBytes: Math.max(cpu.arenaBytes, gpu.arenaBytes) };
}
