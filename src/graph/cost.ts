import { DTYPES } from "../core/dtype.js";
import { numel } from "../core/tensor.js";
import type { DeviceEntry } from "../target/schema.js";
import { attrNum, isAlias, type Graph, type Node } from "./ir.js";

/** Multiply-accumulates of the compute-heavy ops (Conv, ConvTranspose, Gemm, MatMul). */
export function nodeMacs(g: Graph, n: Node): number {
  const shape = (i: number) => g.values.get(n.inputs[i])?.shape ?? [];
  const out = g.values.get(n.outputs[0])?.shape ?? [];
  switch (n.op) {
    case "Conv":
    case "ConvInteger":
    case "QLinearConv": {
      const w = shape(n.op === "QLinearConv" ? 3 : 1);
      return numel(out) * numel(w.slice(1));
    }
    case "ConvTranspose":
      // Each input element is scattered to (M/group)·kernel outputs, W being [C, M/group, k...].
      return numel(shape(0)) * numel(shape(1).slice(1));
    case "Gemm":
    case "MatMul":
    case "MatMulInteger": {
      const a = shape(0);
      const k = n.op === "Gemm" && attrNum(n, "transA", 0) ? a[0] : a[a.length - 1];
      return numel(out) * (k ?? 1);
    }
    default:
      return 0;
  }
}

/** Multiply-accumulates of a shape-inferred graph; run it on the unfused graph, where every Conv is still a node. */
export function countMacs(g: Graph): number {
  return g.nodes.reduce((s, n) => s + nodeMacs(g, n), 0);
}

/** Bytes of value `v`. */
export const valueBytes = (g: Graph, v: string): number => numel(g.values.get(v)!.shape!) * DTYPES[g.values.get(v)!.dtype].bytes;

/** Bytes one kernel reads and writes: its inputs, outputs and weights, each once. */
export function kernelBytes(g: Graph, n: Node): number {
  return [...new Set([...n.inputs, ...n.outputs].filter(Boolean))].reduce((t, v) => t + valueBytes(g, v), 0);
}

/** Bytes every kernel of `g` reads and writes; a View or ConcatView is an alias and moves nothing. */
export const bytesMoved = (g: Graph): number => g.nodes.filter((n) => !isAlias(n)).reduce((s, n) => s + kernelBytes(g, n), 0);

/** A fused kernel's multiply-accumulates: its members'. */
export const kernelMacs = (g: Graph, n: Node): number => (n.fused ? n.fused.body.reduce((s, m) => s + (m.outputs.every((o) => g.values.get(o)?.shape) ? nodeMacs(g, m) : 0), 0) : nodeMacs(g, n));

/** What the cost model assumes where a target's device entry gives no number. */
export const COST_DEFAULTS = { peakGflops: 10, bandwidthGBs: 5, efficiency: 0.2, launchUs: { cpu: 0, gpu: 20 }, transferLatencyUs: 20 };

/**
 * Predicted seconds for kernel `n` on device `d`: a roofline (compute at the share of the peak
 * edgec's kernels reach, or memory traffic at the device's bandwidth, whichever is slower) plus the
 * device's launch overhead.
 */
export function kernelSeconds(g: Graph, n: Node, d: DeviceEntry): number {
  const flops = 2 * kernelMacs(g, n);
  const compute = flops / ((d.peakGflops ?? COST_DEFAULTS.peakGflops) * 1e9 * (d.efficiency ?? COST_DEFAULTS.efficiency));
  const memory = kernelBytes(g, n) / ((d.bandwidthGBs ?? COST_DEFAULTS.bandwidthGBs) * 1e9);
  return Math.max(compute, memory) + (d.launchUs ?? COST_DEFAULTS.launchUs[d.kind]) * 1e-6;
}

/** Predicted seconds to copy `bytes` between host and GPU memory (a copy reads and writes: half the bandwidth, unless the entry says). */
export function transferSeconds(bytes: number, gpu: DeviceEntry): number {
  const gbs = gpu.transferGBs ?? (gpu.bandwidthGBs ?? COST_DEFAULTS.bandwidthGBs) / 2;
  return (gpu.transferLatencyUs ?? COST_DEFAULTS.transferLatencyUs) * 1e-6 + bytes / (gbs * 1e9);
}

/**
 * Times measured on the device (edgec profile) that replace the estimates above: each kernel's
 * milliseconds on the CPU and on the GPU, keyed by its graph node, and a host-GPU copy as a latency
 * plus bytes at a bandwidth.
 */
export interface Costs {
  edgec: string;
  model: { file: string; sha256: string };
  target: string;
  /** where it was measured: "this machine" or user@host */
  machine: string;
  /** what ran the kernels: the CPU entry's name and the OpenCL platform and device */
  devices: { cpu: string; gpu: string };
  runs: number;
  /** the median latency of the model all on the CPU and all on the GPU, without clocks and less its copies of inputs and outputs: what the kernel times add up to */
  wholeRunMs: { cpu: number; gpu: number };
  /** what those runs spent copying inputs and outputs between host and device, taken out of wholeRunMs */
  copiesInRunMs: { cpu: number; gpu: number };
  kernels: Record<string, { cpuMs?: number; gpuMs?: number }>;
  copy: { latencyUs: number; GBs: number };
  /** false when the OpenCL device was the CPU itself (PoCL): its kernels take the CPU's cores, so the two never work at once */
  overlap: boolean;
}

/** Seconds per kernel on a device and per copy between host and GPU: measured where `costs` has them, estimated otherwise. */
export interface Timing {
  kernel(n: Node, d: DeviceEntry): number;
  copy(bytes: number): number;
  /** kernels whose time on both devices was measured */
  measured: number;
}

export function timing(g: Graph, gpu: DeviceEntry, costs?: Costs): Timing {
  const kernels = g.nodes.filter((n) => !isAlias(n));
  return {
    kernel(n, d) {
      const ms = costs?.kernels[n.name]?.[d.kind === "gpu" ? "gpuMs" : "cpuMs"];
      return ms === undefined ? kernelSeconds(g, n, d) : ms * 1e-3;
    },
    copy: (bytes) => (costs ? costs.copy.latencyUs * 1e-6 + bytes / (costs.copy.GBs * 1e9) : transferSeconds(bytes, gpu)),
    measured: costs ? kernels.filter((n) => costs.kernels[n.name]?.cpuMs !== undefined && costs.kernels[n.name]?.gpuMs !== undefined).length : 0,
  };
}
