import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runGraphPasses } from "../../src/driver/pipeline.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { timing, type Costs } from "../../src/graph/cost.js";
import type { Graph } from "../../src/graph/ir.js";
import { gpuCannotRun, MAX_IDEALS, partitionDevices, periodSeconds, placementSeconds } from "../../src/graph/passes/partition-devices.js";
import { loadTarget } from "../../src/target/load.js";
import type { DeviceEntry, Target } from "../../src/target/schema.js";
import { CORPUS } from "../conformance/suite.js";
import { randWire } from "../helpers/irregular.js";
import { tempDir } from "../helpers/onnx-builder.js";

/** The lowest predicted time over every placement the GPU allows, by enumeration. */
function bruteForce(g: Graph, cpu: DeviceEntry, gpu: DeviceEntry, costs?: Costs): number {
  const kernels = g.nodes.filter((n) => n.op !== "View");
  const free = kernels.filter((n) => !gpuCannotRun(g, n, gpu));
  let best = Infinity;
  for (let mask = 0; mask < 1 << free.length; mask++) {
    const onGpu = new Set(free.filter((_, i) => mask & (1 << i)).map((n) => n.name));
    best = Math.min(best, placementSeconds(g, cpu, gpu, onGpu, timing(g, gpu, costs)).seconds);
  }
  return best;
}

const work = tempDir("edgec-partition-");
afterAll(() => work.cleanup());

/** A small randomly wired network, fused and scheduled. */
function smallNet(seed: number): Graph {
  const net = randWire(seed, { graph: "ER", nodes: [3 + (seed % 3)], p: 0.5, channels: 4 + (seed % 5) * 4, hw: 4 + (seed % 4) * 4, weighted: seed % 2 === 0 });
  const file = join(work.dir, `net${seed}.onnx`);
  writeFileSync(file, net.bytes);
  // partition-devices runs on GPU targets, without the CPU-only fusions.
  return runGraphPasses(importOnnx(file).graph, { cpuFusions: false });
}

/** A target with one CPU and one GPU whose cost numbers come from `r`: splits in every direction. */
function randomTarget(r: () => number): Target {
  const base = loadTarget("jetson-orin");
  const cpu: DeviceEntry = { kind: "cpu", name: "cpu", peakGflops: 5 + 100 * r(), bandwidthGBs: 2 + 30 * r(), efficiency: 0.1 + 0.5 * r(), launchUs: 2 * r() };
  const gpu: DeviceEntry = { kind: "gpu", name: "gpu", api: "opencl", peakGflops: 5 + 500 * r(), bandwidthGBs: 2 + 60 * r(), efficiency: 0.05 + 0.3 * r(), launchUs: 60 * r(), transferGBs: 0.5 + 10 * r(), transferLatencyUs: 40 * r() };
  return { ...base, devices: [cpu, gpu] };
}

describe("partition-devices", () => {
  it("finds the lowest predicted latency that enumeration finds, on small random networks and cost models", () => {
    let seed = 7;
    const r = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed / 2 ** 31);
    let checked = 0, splits = 0;
    for (let s = 1; s <= 12; s++) {
      const g = smallNet(s);
      if (g.nodes.filter((n) => n.op !== "View").length > 14) continue;
      for (let trial = 0; trial < 4; trial++) {
        const t = randomTarget(r);
        const { placement } = partitionDevices(g, t);
        const best = bruteForce(g, t.devices[0], t.devices[1]);
        expect(placement.predicted.partitionedMs / 1e3).toBeCloseTo(best, 12);
        checked++;
        if (placement.onGpu.length && placement.onGpu.length < g.nodes.filter((n) => n.op !== "View").length) splits++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(20);
    // The cost models are varied enough that some optima are true splits, not all on one side.
    expect(splits).toBeGreaterThan(0);
  });

  it("finds the enumeration's optimum under measured costs too (edgec profile's file)", () => {
    let seed = 11;
    const r = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed / 2 ** 31);
    const t = loadTarget("opencl");
    let splits = 0;
    for (let s = 1; s <= 12; s++) {
      const g = smallNet(s);
      const kernels = g.nodes.filter((n) => n.op !== "View");
      if (kernels.length > 14) continue;
      const costs: Costs = {
        edgec: "test", model: { file: "net.onnx", sha256: "" }, target: "opencl", machine: "test", devices: { cpu: "cpu", gpu: "gpu" }, runs: 1, wholeRunMs: { cpu: 0, gpu: 0 }, copiesInRunMs: { cpu: 0, gpu: 0 }, overlap: true,
        kernels: Object.fromEntries(kernels.map((n) => [n.name, { cpuMs: r(), gpuMs: r() }])),
        copy: { latencyUs: 200 * r(), GBs: 0.5 + 5 * r() },
      };
      const { placement } = partitionDevices(g, t, costs);
      expect(placement.measured.kernels).toBe(kernels.length);
      // A GPU on the CPU's own cores (overlap false) cannot pipeline: the period is the latency.
      const shared = partitionDevices(g, t, { ...costs, overlap: false }, "throughput").placement;
      const same = placementSeconds(g, t.devices[0], t.devices[1], new Set(shared.onGpu), timing(g, t.devices[1], costs)).seconds;
      expect(shared.predicted.partitionedMs / 1e3).toBeCloseTo(same, 12);
      expect(placement.predicted.partitionedMs / 1e3).toBeCloseTo(bruteForce(g, t.devices[0], t.devices[1], costs), 12);
      if (placement.onGpu.length && placement.onGpu.length < kernels.length) splits++;
    }
    expect(splits).toBeGreaterThan(0);
  });

  /** Kernel i's producers among the kernels (through Views). */
  function producers(g: Graph): number[][] {
    const kernels = g.nodes.filter((n) => n.op !== "View");
    const viewOf = new Map(g.nodes.filter((n) => n.op === "View").map((n) => [n.outputs[0], n.inputs[0]]));
    const base = (v: string): string => (viewOf.has(v) ? base(viewOf.get(v)!) : v);
    const writer = new Map(kernels.flatMap((n, i) => n.outputs.map((o): [string, number] => [o, i])));
    return kernels.map((n) => n.inputs.filter(Boolean).map((v) => writer.get(base(v))).filter((w): w is number => w !== undefined));
  }

  it("throughput: the lowest period over every two-stage split that enumeration finds", () => {
    let seed = 5;
    const r = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed / 2 ** 31);
    let checked = 0, splits = 0;
    for (let s = 1; s <= 12; s++) {
      const g = smallNet(s);
      const kernels = g.nodes.filter((n) => n.op !== "View");
      if (kernels.length > 12) continue;
      const deps = producers(g);
      for (let trial = 0; trial < 4; trial++) {
        const t = randomTarget(r);
        const [cpu, gpu] = t.devices;
        let best = Infinity;
        for (let mask = 0; mask < 1 << kernels.length; mask++) {
          if (!deps.every((d, i) => !(mask & (1 << i)) || d.every((j) => mask & (1 << j)))) continue;
          for (const firstOnGpu of [false, true]) {
            const onGpu = new Set(kernels.filter((_, i) => Boolean(mask & (1 << i)) === firstOnGpu).map((n) => n.name));
            best = Math.min(best, periodSeconds(g, cpu, gpu, onGpu));
          }
        }
        const { placement } = partitionDevices(g, t, undefined, "throughput");
        expect(placement.objective).toBe("throughput");
        expect(placement.predicted.partitionedMs / 1e3).toBeCloseTo(best, 12);
        expect(placement.predicted.partitionedMs).toBeLessThanOrEqual(Math.min(placement.predicted.cpuMs, placement.predicted.gpuMs) * (1 + 1e-12));
        const st = placement.stages;
        if (st) {
          splits++;
          expect(st.exhaustive).toBe(true);
          // stage 1 is an ideal: whatever a stage-1 kernel reads was written in stage 1 (or is an input)
          const first = new Set(st.kernels);
          kernels.forEach((n, i) => first.has(n.name) && deps[i].forEach((j) => expect(first.has(kernels[j].name)).toBe(true)));
          expect(placement.onGpu.every((k) => first.has(k) === (st.first === "gpu"))).toBe(true);
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(20);
    expect(splits).toBeGreaterThan(0);
  });

  it("throughput on a graph with more ideals than MAX_IDEALS compares the prefixes of the kernel order, and says so", () => {
    const net = randWire(3, { graph: "ER", nodes: [40], p: 0.05, channels: 8, hw: 8, weighted: false });
    const file = join(work.dir, "wide.onnx");
    writeFileSync(file, net.bytes);
    const g = runGraphPasses(importOnnx(file).graph, { cpuFusions: false });
    const kernels = g.nodes.filter((n) => n.op !== "View");
    const t = { ...loadTarget("rk3588"), devices: [{ kind: "cpu", name: "cpu", peakGflops: 1 }, { kind: "gpu", name: "gpu", api: "opencl", peakGflops: 1, launchUs: 0, transferLatencyUs: 0 }] } as Target;
    const { placement } = partitionDevices(g, t, undefined, "throughput");
    expect(placement.stages).toBeDefined();
    expect(placement.stages!.exhaustive).toBe(false);
    expect(placement.stages!.ideals).toBe(kernels.length + 1);
    expect(placement.stages!.kernels).toEqual(kernels.slice(0, placement.stages!.kernels.length).map((n) => n.name));
    expect(MAX_IDEALS).toBeGreaterThan(kernels.length);
  });

  const models = readdirSync(join(CORPUS, "models")).sort();
  it.each(["jetson-orin", "rk3588", "jetson-nano"].flatMap((t) => models.map((m) => [t, m])))("%s, %s: never predicted slower than all on the CPU or all on the GPU", (t, m) => {
    const g = runGraphPasses(importOnnx(join(CORPUS, "models", m, "model.onnx")).graph, { cpuFusions: false });
    const { predicted } = partitionDevices(g, loadTarget(t)).placement;
    expect(predicted.partitionedMs).toBeLessThanOrEqual(Math.min(predicted.cpuMs, predicted.gpuMs) * (1 + 1e-12));
  });

  it("pins float64 kernels to the CPU of a GPU without float64", () => {
    const t = loadTarget("rk3588");
    const g = smallNet(3);
    const first = g.nodes.find((n) => n.op !== "View")!;
    const out = g.values.get(first.outputs[0])!;
    const g64: Graph = { ...g, values: new Map([...g.values, [out.name, { ...out, dtype: "float64" }]]) };
    const { placement } = partitionDevices(g64, { ...t, devices: t.devices.map((d) => (d.kind === "gpu" ? { ...d, launchUs: 0, peakGflops: 1e6, bandwidthGBs: 1e6, transferGBs: 1e6, transferLatencyUs: 0 } : d)) });
    expect(placement.pinned.map((p) => p.kernel)).toContain(first.name);
    expect(placement.onGpu).not.toContain(first.name);
  });
});
