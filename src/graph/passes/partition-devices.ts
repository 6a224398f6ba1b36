import type { DeviceEntry, Target } from "../../target/schema.js";
import { timing, valueBytes, type Costs, type Timing } from "../cost.js";
import { ideals } from "../ideals.js";
import { isAlias, type Graph, type Node } from "../ir.js";
import { minCut } from "../mincut.js";

/** What the placement minimises: one inference's latency, or the time between results of a stream (--objective). */
export type Objective = "latency" | "throughput";

export interface Placement {
  objective: Objective;
  /** names of the kernels (graph nodes) placed on the GPU; every other kernel runs on the CPU */
  onGpu: string[];
  /** predicted milliseconds under the cost model (graph/cost.ts): of one inference (latency), or between results of a stream (throughput) */
  predicted: { cpuMs: number; gpuMs: number; partitionedMs: number };
  /** the split's predicted milliseconds per inference on each device, and in copies between them */
  split: { cpuMs: number; gpuMs: number; copiesMs: number };
  /**
   * throughput with kernels on both devices: a two-stage pipeline. The `first` device runs the
   * stage-1 kernels (an ideal of the graph, in `kernels`) of input i+1 while the other runs the
   * rest of input i. `ideals`: the splits compared; `exhaustive`: every ideal, or (false) only the
   * prefixes of the kernel order, past MAX_IDEALS.
   */
  stages?: { first: "cpu" | "gpu"; kernels: string[]; ideals: number; exhaustive: boolean };
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

/** Seconds of each device's kernels and of the copies between them, with the kernels in `onGpu` on the GPU. */
type Loads = { cpu: number; gpu: number; copies: number; transfers: Placement["transfers"] };

/** One inference, the kernels run one after the other. */
const latencyOf = (l: Loads) => l.cpu + l.gpu + l.copies;

/**
 * Between results of a stream split in two pipeline stages: while one device runs its stage of
 * input i+1, the other runs its stage of input i, and the host thread makes the copies in between,
 * so the slower device sets the pace and every copy adds to it. Devices that cannot work at once
 * (`overlap` false: an OpenCL device on the CPU's own cores) add up.
 */
const periodOf = (l: Loads, overlap = true) => (overlap ? Math.max(l.cpu, l.gpu) + l.copies : latencyOf(l));

/**
 * The per-kernel times and per-tensor copy costs of `g`, once, and a function from a placement
 * (gpu[i]: kernel i on the GPU) to its loads: each kernel's time on its device, plus a copy for
 * every tensor read on the other side from where it was written (once per side), inputs starting
 * and outputs ending on the host.
 */
function loadModel(g: Graph, cpu: DeviceEntry, gpu: DeviceEntry, time: Timing) {
  const kernels = g.nodes.filter((n) => !isAlias(n));
  const seconds = kernels.map((n) => [time.kernel(n, cpu), time.kernel(n, gpu)]);
  const tensors = [...traffic(g, kernels)].map(([value, t]) => ({ value, ...t, readers: [...t.readers], copy: time.copy(t.bytes) }));
  const loads = (onGpu: boolean[], withTransfers = false): Loads => {
    const l: Loads = { cpu: 0, gpu: 0, copies: 0, transfers: [] };
    kernels.forEach((_, i) => (onGpu[i] ? (l.gpu += seconds[i][1]) : (l.cpu += seconds[i][0])));
    for (const t of tensors) {
      const from = t.producer >= 0 && onGpu[t.producer];
      const up = !from && t.readers.some((r) => onGpu[r]);
      const down = from && (t.output || t.readers.some((r) => !onGpu[r]));
      l.copies += (up ? t.copy : 0) + (down ? t.copy : 0);
      if (withTransfers && up) l.transfers.push({ value: t.value, bytes: t.bytes, to: "gpu" });
      if (withTransfers && down) l.transfers.push({ value: t.value, bytes: t.bytes, to: "cpu" });
    }
    return l;
  };
  return { kernels, seconds, tensors, loads };
}

/** Predicted seconds of one inference with the kernels in `onGpu` on the GPU and the rest on the CPU, run one after the other. */
export function placementSeconds(g: Graph, cpu: DeviceEntry, gpu: DeviceEntry, onGpu: Set<string>, time: Timing = timing(g, gpu)): { seconds: number; transfers: Placement["transfers"] } {
  const m = loadModel(g, cpu, gpu, time);
  const l = m.loads(m.kernels.map((n) => onGpu.has(n.name)), true);
  return { seconds: latencyOf(l), transfers: l.transfers };
}

/** Predicted seconds between results of a stream split in two pipeline stages (`onGpu` on the GPU, one side an ideal of the graph): periodOf. */
export function periodSeconds(g: Graph, cpu: DeviceEntry, gpu: DeviceEntry, onGpu: Set<string>, time: Timing = timing(g, gpu)): number {
  const m = loadModel(g, cpu, gpu, time);
  return periodOf(m.loads(m.kernels.map((n) => onGpu.has(n.name))));
}

/** More ideals than this (a wide graph) and the throughput split compares the prefixes of the kernel order only. */
export const MAX_IDEALS = 20000;

/**
 * The throughput objective's split: over every ideal I of the kernel graph (or, past MAX_IDEALS,
 * every prefix of the kernel order) and both orders (I on the CPU and the rest on the GPU, or the
 * reverse), the lowest period; ties go to the lower latency. Kernels the GPU cannot run stay on the CPU.
 */
function pipelineSplit(m: ReturnType<typeof loadModel>, cpuOnly: Set<string>, overlap: boolean) {
  const n = m.kernels.length;
  const deps = m.kernels.map(() => [] as number[]);
  for (const t of m.tensors) if (t.producer >= 0) for (const r of t.readers) deps[r].push(t.producer);
  const all = ideals(n, deps, MAX_IDEALS);
  const masks = all ?? Array.from({ length: n + 1 }, (_, i) => (1n << BigInt(i)) - 1n);
  const pinned = m.kernels.map((k) => cpuOnly.has(k.name));
  let best = { period: Infinity, latency: Infinity, onGpu: [] as boolean[], mask: 0n, first: "cpu" as "cpu" | "gpu" };
  for (const mask of masks) {
    const inFirst = m.kernels.map((_, i) => (mask >> BigInt(i)) & 1n ? true : false);
    for (const first of ["cpu", "gpu"] as const) {
      const onGpu = inFirst.map((x) => x === (first === "gpu"));
      if (onGpu.some((g, i) => g && pinned[i])) continue;
      const l = m.loads(onGpu);
      const latency = latencyOf(l);
      const period = periodOf(l, overlap);
      if (period < best.period || (period === best.period && latency < best.latency)) best = { period, latency, onGpu, mask, first };
    }
  }
  const split = best.onGpu.some(Boolean) && !best.onGpu.every(Boolean);
  return { ...best, stages: split ? { first: best.first, kernels: m.kernels.filter((_, i) => (best.mask >> BigInt(i)) & 1n).map((k) => k.name), ideals: masks.length, exhaustive: all !== undefined } : undefined };
}

/**
 * partition-devices: each kernel of a target with a CPU and an OpenCL GPU on the device that makes
 * one inference fastest under the cost model, kernels the GPU cannot run pinned to the CPU. With
 * kernels run one after the other, the latency is a sum of per-kernel times and per-tensor copies,
 * and the best split is a minimum s-t cut, exact for any split (not only contiguous ones): a kernel
 * on the source side runs on the CPU. A tensor written on the CPU and read on the GPU costs a copy
 * once however many GPU kernels read it; an auxiliary node per tensor and direction that every
 * reader on the other side forces across carries that cost once. `costs` (edgec profile) replaces
 * the estimates with measured times. The throughput objective pipelines a stream in two stages
 * instead (pipelineSplit).
 */
export function partitionDevices(g: Graph, target: Target, costs?: Costs, objective: Objective = "latency"): Graph & { placement: Placement } {
  const cpu = target.devices.find((d) => d.kind === "cpu") ?? { kind: "cpu", name: "CPU" };
  const gpu = target.devices.find((d) => d.kind === "gpu" && d.api === "opencl");
  if (!gpu) throw new Error(`partitionDevices: target '${target.name}' has no OpenCL GPU`);
  if (g.nodes.some((n) => n.op === "ConcatView")) throw new Error("partitionDevices: the graph has concat views, which a CPU/GPU split cannot copy (see cpuFusionsOn)");
  const time = timing(g, gpu, costs);
  const m = loadModel(g, cpu, gpu, time);
  const kernels = m.kernels;
  const pinned = kernels.flatMap((n) => {
    const why = gpuCannotRun(g, n, gpu);
    return why ? [{ kernel: n.name, why }] : [];
  });
  const cpuOnly = new Set(pinned.map((x) => x.kernel));
  const overlap = costs?.overlap !== false;
  const cost = (l: Loads) => (objective === "throughput" ? periodOf(l, overlap) : latencyOf(l));
  const pipeline = objective === "throughput" ? pipelineSplit(m, cpuOnly, overlap) : undefined;
  const onGpu = pipeline?.onGpu ?? latencyCut(m, cpuOnly);
  const split = m.loads(onGpu, true);
  const all = (gpuSide: boolean) => cost(m.loads(kernels.map((n) => gpuSide && !cpuOnly.has(n.name))));
  return {
    ...g,
    placement: {
      objective,
      onGpu: kernels.filter((_, i) => onGpu[i]).map((n) => n.name),
      predicted: { cpuMs: all(false) * 1e3, gpuMs: all(true) * 1e3, partitionedMs: cost(split) * 1e3 },
      split: { cpuMs: split.cpu * 1e3, gpuMs: split.gpu * 1e3, copiesMs: split.copies * 1e3 },
      stages: pipeline?.stages,
      transfers: split.transfers,
      pinned,
      measured: { kernels: time.measured, of: kernels.length, machine: costs?.machine },
    },
  };
}

/** The latency objective's placement: the minimum cut described above (gpu[i]: kernel i on the GPU). */
function latencyCut(m: ReturnType<typeof loadModel>, cpuOnly: Set<string>): boolean[] {
  const S = 0, T = 1, K = 2;
  const edges: [number, number, number][] = [];
  m.kernels.forEach((n, i) => edges.push([S, K + i, cpuOnly.has(n.name) ? Infinity : m.seconds[i][1]], [K + i, T, m.seconds[i][0]]));
  let aux = K + m.kernels.length;
  const node = (p: number) => (p < 0 ? S : K + p);
  for (const t of m.tensors) {
    if (t.readers.length) {
      // up: crosses to the GPU side when any reader is on the GPU; costs a copy when the writer is on the CPU.
      const up = aux++;
      edges.push([node(t.producer), up, t.copy], ...t.readers.map((r): [number, number, number] => [up, K + r, Infinity]));
    }
    if (t.producer >= 0 && (t.readers.length || t.output)) {
      // down: stays on the CPU side when any reader (or the caller) is on the CPU; costs a copy when the writer is on the GPU.
      const down = aux++;
      edges.push([down, K + t.producer, t.copy], ...t.readers.map((r): [number, number, number] => [K + r, down, Infinity]));
      if (t.output) edges.push([S, down, Infinity]);
    }
  }
  const cut = minCut(aux, S, T, edges);
  return m.kernels.map((_, i) => !cut.sourceSide[K + i]);
}
