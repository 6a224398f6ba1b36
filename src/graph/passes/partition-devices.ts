import type { DeviceEntry, Target } from "../../target/schema.js";
import { timing, valueBytes, type Costs, type Timing } from "../cost.js";
import type { Graph, Node } from "../ir.js";
import { minCut } from "../mincut.js";

export interface Placement {
  /** names of the kernels (graph nodes) placed on the GPU; every other kernel runs on the CPU */
  onGpu: string[];
  /** predicted milliseconds of one inference under the cost model (graph/cost.ts) */
  predicted: { cpuMs: number; gpuMs: number; partitionedMs: number };
  /** tensors copied between host and GPU memory in the partitioned run */
  transfers: { value: string; bytes: number; to: "cpu" | "gpu" }[];
  /** kernels that must run on the CPU, with the reason */
  pinned: { kernel: string; why: string }[];
  /** kernels whose times came from a costs file (edgec profile), of all kernels; the rest are the cost model's estimates */
  measured: { kernels: number; of: number; machine?: string };
}

/** Why `gpu` cannot run node `n`: float64 on a GPU without it (the loop-level rule is split.ts's gpuCannot). */
export function gpuCannotRun(g: Graph, n: Node, gpu: DeviceEntry): string | undefined {
  if (gpu.fp64 !== false) return undefined;
  const values = [n, ...(n.fused?.body ?? [])].flatMap((m) => [...m.inputs, ...m.outputs]).filter(Boolean);
  return values.some((v) => g.values.get(v)?.dtype === "float64") ? `${gpu.name} has no float64` : undefined;
}

/**
 * The model's tensors as kernel-to-kernel traffic: each tensor a kernel writes (or a graph input:
 * producer -1, on the host), the kernels that read it (through Views), and whether the caller reads it.
 */
function traffic(g: Graph, kernels: Node[]) {
  const viewOf = new Map(g.nodes.filter((n) => n.op === "View").map((n) => [n.outputs[0], n.inputs[0]]));
  const base = (v: string): string => (viewOf.has(v) ? base(viewOf.get(v)!) : v);
  const producer = new Map<string, number>(g.inputs.map((v) => [v, -1]));
  kernels.forEach((n, i) => n.outputs.filter(Boolean).forEach((o) => producer.set(o, i)));
  const tensors = new Map<string, { producer: number; readers: Set<number>; output: boolean; bytes: number }>();
  for (const [v, p] of producer) tensors.set(v, { producer: p, readers: new Set(), output: false, bytes: valueBytes(g, v) });
  kernels.forEach((n, i) => n.inputs.filter(Boolean).forEach((v) => tensors.get(base(v))?.readers.add(i)));
  for (const o of g.outputs) {
    const t = tensors.get(base(o));
    if (t) t.output = true;
  }
  return tensors;
}

/**
 * Predicted seconds of one inference with the kernels in `onGpu` on the GPU and the rest on the CPU,
 * run one after the other: each kernel's time on its device, plus a copy for every tensor read on
 * the other side from where it was written (once per side), inputs starting and outputs ending on the host.
 */
export function placementSeconds(g: Graph, cpu: DeviceEntry, gpu: DeviceEntry, onGpu: Set<string>, time: Timing = timing(g, gpu)): { seconds: number; transfers: Placement["transfers"] } {
  const kernels = g.nodes.filter((n) => n.op !== "View");
  let seconds = kernels.reduce((s, n) => s + time.kernel(n, onGpu.has(n.name) ? gpu : cpu), 0);
  const transfers: Placement["transfers"] = [];
  for (const [value, t] of traffic(g, kernels)) {
    const from = t.producer >= 0 && onGpu.has(kernels[t.producer].name);
    const to = [...t.readers].map((r) => onGpu.has(kernels[r].name));
    if (!from && to.some(Boolean)) transfers.push({ value, bytes: t.bytes, to: "gpu" });
    if (from && (t.output || to.some((x) => !x))) transfers.push({ value, bytes: t.bytes, to: "cpu" });
  }
  seconds += transfers.reduce((s, x) => s + time.copy(x.bytes), 0);
  return { seconds, transfers };
}

/**
 * partition-devices: each kernel of a target with a CPU and an OpenCL GPU on the device that makes
 * one inference fastest under the cost model, kernels the GPU cannot run pinned to the CPU. With
 * kernels run one after the other, the latency is a sum of per-kernel times and per-tensor copies,
 * and the best split is a minimum s-t cut, exact for any split (not only contiguous ones): a kernel
 * on the source side runs on the CPU. A tensor written on the CPU and read on the GPU costs a copy
 * once however many GPU kernels read it; an auxiliary node per tensor and direction that every
 * reader on the other side forces across carries that cost once. `costs` (edgec profile) replaces
 * the estimates with measured times.
 */
export function partitionDevices(g: Graph, target: Target, costs?: Costs): Graph & { placement: Placement } {
  const cpu = target.devices.find((d) => d.kind === "cpu") ?? { kind: "cpu", name: "CPU" };
  const gpu = target.devices.find((d) => d.kind === "gpu" && d.api === "opencl");
  if (!gpu) throw new Error(`partitionDevices: target '${target.name}' has no OpenCL GPU`);
  const kernels = g.nodes.filter((n) => n.op !== "View");
  const time = timing(g, gpu, costs);
  const S = 0, T = 1, K = 2;
  const edges: [number, number, number][] = [];
  const pinned: Placement["pinned"] = [];
  kernels.forEach((n, i) => {
    const why = gpuCannotRun(g, n, gpu);
    if (why) pinned.push({ kernel: n.name, why });
    edges.push([S, K + i, why ? Infinity : time.kernel(n, gpu)], [K + i, T, time.kernel(n, cpu)]);
  });
  let aux = K + kernels.length;
  const node = (p: number) => (p < 0 ? S : K + p);
  for (const t of traffic(g, kernels).values()) {
    const cost = time.copy(t.bytes);
    if (t.readers.size) {
      // up: crosses to the GPU side when any reader is on the GPU; costs a copy when the writer is on the CPU.
      const up = aux++;
      edges.push([node(t.producer), up, cost], ...[...t.readers].map((r): [number, number, number] => [up, K + r, Infinity]));
    }
    if (t.producer >= 0 && (t.readers.size || t.output)) {
      // down: stays on the CPU side when any reader (or the caller) is on the CPU; costs a copy when the writer is on the GPU.
      const down = aux++;
      edges.push([down, K + t.producer, cost], ...[...t.readers].map((r): [number, number, number] => [K + r, down, Infinity]));
      if (t.output) edges.push([S, down, Infinity]);
    }
  }
  const cut = minCut(aux, S, T, edges);
  const onGpu = new Set(kernels.filter((_, i) => !cut.sourceSide[K + i]).map((n) => n.name));
  const cpuOnly = new Set(pinned.map((x) => x.kernel));
  const all = (gpuSide: boolean) => placementSeconds(g, cpu, gpu, new Set(gpuSide ? kernels.filter((n) => !cpuOnly.has(n.name)).map((n) => n.name) : []), time).seconds;
  const split = placementSeconds(g, cpu, gpu, onGpu, time);
  return {
    ...g,
    placement: {
      onGpu: [...onGpu],
      predicted: { cpuMs: all(false) * 1e3, gpuMs: all(true) * 1e3, partitionedMs: split.seconds * 1e3 },
      transfers: split.transfers,
      pinned,
      measured: { kernels: time.measured, of: kernels.length, machine: costs?.machine },
    },
  };
}
