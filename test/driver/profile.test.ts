import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runGraphPasses } from "../../src/driver/pipeline.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import type { Costs } from "../../src/graph/cost.js";
import { CORPUS } from "../conformance/suite.js";
import { haveSshd, startFleet, type Fleet } from "../deploy/devices.js";
import { edgec } from "../deploy/helpers.js";

/**
 * edgec profile on the `opencl` target (this machine's CPU and PoCL), and --costs placing kernels by
 * what it measured: real runs of both builds, here and on a loopback sshd device.
 */
const MODEL = join(CORPUS, "models", "dscnn_kws", "model.onnx");
const DATA = join(CORPUS, "models", "dscnn_kws");
const work = mkdtempSync(join(tmpdir(), "edgec-profile-test-"));
process.env.EDGEC_OPENCL_CACHE = join(work, "clcache");
// The opencl target's kernels: without the fusions only CPU kernels can run (see cpuFusionsOn).
const kernels = runGraphPasses(importOnnx(MODEL).graph, { cpuFusions: false }).nodes.filter((n) => n.op !== "View").map((n) => n.name);
const costsFile = join(work, "costs.json");
let costs: Costs;

beforeAll(async () => {
  const r = await edgec(["profile", MODEL, "--target", "opencl", "-o", costsFile, "--runs", "15"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/wrote .*costs\.json: 11 kernels measured on this machine/);
  costs = JSON.parse(readFileSync(costsFile, "utf8"));
}, 180_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A copy of the measured costs with `edit` applied, written to `name`. */
function edited(name: string, edit: (c: Costs) => void): string {
  const c = structuredClone(costs);
  edit(c);
  const file = join(work, name);
  writeFileSync(file, JSON.stringify(c));
  return file;
}

const placement = async (costsArg: string) => {
  const r = await edgec(["inspect", MODEL, "--target", "opencl", "--costs", costsArg, "--json"]);
  expect(r.stderr).toBe("");
  return JSON.parse(r.stdout).placement as { onGpu: string[]; predicted: { cpuMs: number; gpuMs: number; partitionedMs: number }; measured: { kernels: number; of: number } };
};

describe("edgec profile", () => {
  test("times every kernel on the CPU and on the GPU, scaled to the whole runs, and a copy", () => {
    expect(costs.target).toBe("opencl");
    expect(costs.devices.gpu).toMatch(/Portable Computing Language|OpenCL/);
    expect(Object.keys(costs.kernels).sort()).toEqual([...kernels].sort());
    for (const k of Object.values(costs.kernels)) {
      expect(k.cpuMs).toBeGreaterThan(0);
      expect(k.gpuMs).toBeGreaterThan(0);
    }
    const sum = (d: "cpuMs" | "gpuMs") => Object.values(costs.kernels).reduce((s, k) => s + k[d]!, 0);
    expect(sum("cpuMs")).toBeCloseTo(costs.wholeRunMs.cpu, 6);
    expect(sum("gpuMs")).toBeCloseTo(costs.wholeRunMs.gpu, 6);
    // The copies of inputs and outputs, timed alone, are a small part of a whole run (a blocking
    // copy timed with the kernels queued before it would swallow them).
    expect(costs.copiesInRunMs.cpu).toBe(0);
    expect(costs.copiesInRunMs.gpu).toBeGreaterThan(0);
    expect(costs.copiesInRunMs.gpu).toBeLessThan(costs.wholeRunMs.gpu);
    // PoCL runs the OpenCL kernels on this machine's own cores: the two cannot work at once.
    expect(costs.overlap).toBe(!costs.devices.gpu.includes("(not a GPU)"));
    expect(costs.copy.latencyUs).toBeGreaterThanOrEqual(0);
    expect(costs.copy.GBs).toBeGreaterThan(0);
  });

  test("--costs places each kernel by the measured times: a split that passes verify", async () => {
    // Every other kernel 100 times faster on the GPU, the rest 100 times slower, copies free.
    const fast = kernels.filter((_, i) => i % 2 === 0);
    const file = edited("split.json", (c) => {
      kernels.forEach((k, i) => (c.kernels[k].gpuMs = c.kernels[k].cpuMs! * (i % 2 === 0 ? 0.01 : 100)));
      c.copy = { latencyUs: 0, GBs: 1e6 };
    });
    const p = await placement(file);
    expect(p.measured).toEqual({ kernels: kernels.length, of: kernels.length, machine: "this machine" });
    expect([...p.onGpu].sort()).toEqual([...fast].sort());
    expect(p.predicted.partitionedMs).toBeLessThan(Math.min(p.predicted.cpuMs, p.predicted.gpuMs));
    // PoCL shares the host's memory: the split works in the host's arena, mapping regions instead
    // of copying them, unless EDGEC_OPENCL_ZERO_COPY=off; both pass.
    for (const zeroCopy of ["on", "off"]) {
      process.env.EDGEC_OPENCL_ZERO_COPY = zeroCopy;
      const v = await edgec(["verify", MODEL, "--data", DATA, "--target", "opencl", "--costs", file]);
      expect(v.stderr).toBe("");
      expect(v.stdout).toMatch(/PASS/);
      expect(v.stdout).not.toMatch(/FAIL/);
      expect(v.code).toBe(0);
      const b = await edgec(["bench", MODEL, "--target", "opencl", "--costs", file, "--runs", "2", "--warmup", "0", "--json"]);
      expect(b.code, b.stderr).toBe(0);
      const device = JSON.parse(b.stdout).device as string;
      expect(device.includes("sharing the host's arena")).toBe(zeroCopy === "on");
    }
    delete process.env.EDGEC_OPENCL_ZERO_COPY;
  }, 120_000);

  test("a kernel the file lacks keeps the cost model's estimate", async () => {
    const file = edited("partial.json", (c) => delete c.kernels[kernels[0]]);
    expect((await placement(file)).measured).toEqual({ kernels: kernels.length - 1, of: kernels.length, machine: "this machine" });
  });

  test("a costs file of another model, another target or no costs file at all is refused by name", async () => {
    const other = edited("other.json", (c) => (c.model.sha256 = "0".repeat(64)));
    const r1 = await edgec(["build", MODEL, "--target", "opencl", "--costs", other, "-o", join(work, "a1")]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/--costs: measured on model\.onnx \(sha256 0000000000000000\), not on model\.onnx/);
    const target = edited("target.json", (c) => (c.target = "rk3588"));
    const r2 = await edgec(["build", MODEL, "--target", "opencl", "--costs", target, "-o", join(work, "a2")]);
    expect(r2.stderr).toMatch(/--costs: measured for target 'rk3588', not 'opencl'/);
    const r3 = await edgec(["build", MODEL, "--target", "opencl", "--costs", join(work, "none.json"), "-o", join(work, "a3")]);
    expect(r3.stderr).toMatch(/--costs .*none\.json: no such file/);
    writeFileSync(join(work, "bad.json"), "{}");
    const r4 = await edgec(["build", MODEL, "--target", "opencl", "--costs", join(work, "bad.json"), "-o", join(work, "a4")]);
    expect(r4.stderr).toMatch(/not a costs file from edgec profile/);
    const r5 = await edgec(["build", MODEL, "--target", "opencl", "--placement", "gpu", "--costs", costsFile, "-o", join(work, "a5")]);
    expect(r5.stderr).toMatch(/--costs .* goes with --placement auto, not gpu/);
    const r6 = await edgec(["profile", MODEL, "--target", "host", "-o", join(work, "h.json")]);
    expect(r6.stderr).toMatch(/target 'host' has no OpenCL GPU/);
    const r7 = await edgec(["profile", MODEL, "--target", "rk3588", "-o", join(work, "rk.json")]);
    expect(r7.stderr).toMatch(/target 'rk3588' is aarch64; .*Measure on a rk3588 device with --host user@device/);
    const nan = edited("nan.json", (c) => ((c.kernels[kernels[0]] as { cpuMs: unknown }).cpuMs = "fast"));
    const r8 = await edgec(["build", MODEL, "--target", "opencl", "--costs", nan, "-o", join(work, "a8")]);
    expect(r8.stderr).toContain(`kernel '${kernels[0]}' has no valid times`);
    for (const r of [r2, r3, r4, r5, r6, r7, r8]) expect(r.code).toBe(2);
  }, 60_000);
});

describe.runIf(haveSshd())("edgec profile --host", () => {
  let fleet: Fleet;
  beforeAll(async () => {
    fleet = await startFleet(1);
  }, 60_000);
  afterAll(() => fleet?.stop());

  test("measures on the device over SSH", async () => {
    const d = fleet.devices[0];
    const file = join(work, "remote.json");
    const r = await edgec(["profile", MODEL, "--target", "opencl", "--host", `127.0.0.1:${d.port}`, "-F", fleet.sshConfig, "-o", file, "--runs", "3"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const c = JSON.parse(readFileSync(file, "utf8")) as Costs;
    expect(c.machine).toBe(`127.0.0.1:${d.port}`);
    expect(Object.keys(c.kernels).sort()).toEqual([...kernels].sort());
    expect(Object.values(c.kernels).every((k) => k.cpuMs! > 0 && k.gpuMs! > 0)).toBe(true);
    expect(c.copy.GBs).toBeGreaterThan(0);
  }, 180_000);
});
