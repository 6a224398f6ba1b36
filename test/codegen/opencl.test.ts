import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { deviceLayout, kernelLaunches } from "../../src/codegen/opencl/kernels.js";
import { buildArtifact } from "../../src/driver/artifact.js";
import { runArtifact } from "../../src/driver/run.js";
import { verifyModel } from "../../src/driver/verify.js";
import { forDevice } from "../../src/target/device.js";
import { loadTarget } from "../../src/target/load.js";
import { fromNumbers, toNumbers } from "../../src/core/tensor.js";
import type { Expr, Kernel, Program, Stmt } from "../../src/loop/ir.js";
import { verifyLoop } from "../../src/loop/verify.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";
import { edgecCli } from "../helpers/run.js";

/**
 * The OpenCL backend on this machine's OpenCL (PoCL): device selection, the binary cache, what a
 * run says where OpenCL is missing, --device on foreign targets, and how loops map to NDRanges.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CONV = join(ROOT, "..", "shared", "corpus", "onnx-node", "test_conv_with_strides_padding");
const work = tempDir("edgec-opencl-test-");
afterAll(() => work.cleanup());

const edgec = (args: string[], env: Record<string, string> = {}) => edgecCli(args, { cwd: work.dir, env: { ...process.env, EDGEC_OPENCL_CACHE: join(work.dir, "cache"), ...env } });

const verifyConv = (env: Record<string, string> = {}, ...extra: string[]) => edgec(["verify", join(CONV, "model.onnx"), "--data", CONV, "--target", "opencl", "--placement", "gpu", ...extra], env);

describe("running an OpenCL artifact", () => {
  it("passes, and caches the program binary, which a damaged cache file does not break", async () => {
    const cache = join(work.dir, "cache-a");
    const first = await verifyConv({ EDGEC_OPENCL_CACHE: cache });
    expect(first.stdout + first.stderr).toMatch(/PASS/);
    expect(first.code).toBe(0);
    const files = readdirSync(cache).filter((f) => f.endsWith(".clbin"));
    expect(files).toHaveLength(1);
    writeFileSync(join(cache, files[0]), "not a program binary");
    const second = await verifyConv({ EDGEC_OPENCL_CACHE: cache });
    expect(second.code, second.stderr).toBe(0);
    expect(readFileSync(join(cache, files[0]), "utf8")).not.toBe("not a program binary");
  });

  it.each([
    ["no OpenCL library", { EDGEC_OPENCL_LIBRARY: "/nonexistent/libOpenCL.so.1" }, /cannot load \/nonexistent\/libOpenCL\.so\.1/],
    ["no OpenCL platform", { OCL_ICD_VENDORS: "/nonexistent-vendors" }, /no OpenCL platform is installed/],
    ["no device of the name asked for", { EDGEC_OPENCL_DEVICE: "no-such-device" }, /no device or platform name contains 'no-such-device'/],
  ])("%s: one error line naming it, exit 3, no crash", async (_, env, message) => {
    const r = await verifyConv(env);
    const lines = r.stderr.split("\n").filter(Boolean);
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^edgec: error: running .* failed \(exit 3\): run: model_run failed \(-3\): OpenCL: /);
    expect(lines[0]).toMatch(message);
    expect(r.code).toBe(3);
  });
});

describe("--device", () => {
  it("gpu on a foreign target runs its kernels here, the host code built for this machine", async () => {
    const r = await edgec(["verify", join(CONV, "model.onnx"), "--data", CONV, "--target", "jetson-orin", "--device", "gpu"]);
    expect(r.stdout, r.stderr).toMatch(/PASS/);
    expect(r.code).toBe(0);
  });

  it("gpu builds a foreign target's artifact with its cross compiler", async () => {
    const out = join(work.dir, "orin-gpu");
    const r = await edgec(["build", join(CONV, "model.onnx"), "--target", "jetson-orin", "--device", "gpu", "-o", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")).triple).toBe("aarch64-linux-gnu");
    expect(readFileSync(join(out, "kernels.cl"), "utf8")).toMatch(/__kernel void/);
    // ELF e_machine 183: AArch64.
    expect(readFileSync(join(out, "run")).readUInt16LE(18)).toBe(183);
  });

  it("gpu on a target without an OpenCL GPU is an error naming its devices", async () => {
    const r = await edgec(["build", join(CONV, "model.onnx"), "--target", "rpi4", "--device", "gpu", "-o", join(work.dir, "nope")]);
    expect(r.stderr).toMatch(/^edgec: error: target 'rpi4' has no OpenCL GPU \(its devices: cpu /);
    expect(r.code).toBe(2);
  });

  it("auto, the default on rk3588, splits squeezenet between the CPU and the GPU as the cost model says, and the split passes", async () => {
    const m = join(ROOT, "..", "shared", "corpus", "models", "squeezenet1_1_c10_64");
    const out = join(work.dir, "rk-auto");
    const built = await edgec(["build", join(m, "model.onnx"), "--target", "rk3588", "-o", out, "--stop-after", "codegen", "--dump-ir", "after:partition-devices"]);
    expect(built.code, built.stderr).toBe(0);
    const onGpu = Number(/on the GPU \((\d+)\)/.exec(built.stdout)![1]);
    expect(onGpu).toBeGreaterThan(0);
    expect(readFileSync(join(out, "kernels.cl"), "utf8").match(/__kernel void k\d+_\w+\(/g)!.length).toBeGreaterThanOrEqual(onGpu);
    expect(readFileSync(join(out, "model.c"), "utf8")).toMatch(/static void k\d+_/);
    const r = await edgec(["verify", join(m, "model.onnx"), "--data", m, "--target", "rk3588", "--placement", "auto"]);
    expect(r.stdout, r.stderr).toMatch(/PASS/);
    expect(r.code).toBe(0);
    // The copies into outputs that lowering adds (an input that is also an output) follow the
    // placement: all on the CPU stays plain C, with no OpenCL at run time.
    const dup = join(work.dir, "dup.onnx");
    writeFileSync(dup, modelBytes({ nodes: [node("Relu", ["x"], ["y"])], inputs: [valueInfo("x", T.FLOAT, [8])], outputs: [valueInfo("y", T.FLOAT, [8]), valueInfo("x", T.FLOAT, [8])] }));
    const dupOut = join(work.dir, "dup-auto");
    const dupBuilt = await edgec(["build", dup, "--target", "opencl", "-o", dupOut, "--stop-after", "codegen"]);
    expect(dupBuilt.code, dupBuilt.stderr).toBe(0);
    expect(readFileSync(join(dupOut, "model.c"), "utf8")).toMatch(/static void k\d+_copy\(/);
    expect(readdirSync(dupOut)).not.toContain("kernels.cl");
    // Several models in one artifact are C only, so auto is not their default.
    const two = await edgec(["build", join(m, "model.onnx"), join(CONV, "model.onnx"), "--names", "a,b", "--target", "rk3588", "-o", join(work.dir, "rk-two"), "--stop-after", "codegen"]);
    expect(two.code, two.stderr).toBe(0);
    // A target without a GPU has nothing to place.
    const host = await edgec(["build", join(m, "model.onnx"), "--target", "host", "-o", join(work.dir, "host-default"), "--stop-after", "codegen", "--dump-ir", "after:partition-devices"]);
    expect(host.code, host.stderr).toBe(0);
    expect(host.stdout).not.toMatch(/predicted/);
  });

  it("inspect shows the placement partition-devices picks and its predicted times", async () => {
    const m = join(ROOT, "..", "shared", "corpus", "models", "squeezenet1_1_c10_64", "model.onnx");
    const r = await edgec(["inspect", m, "--target", "rk3588", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const { placement, kernels } = JSON.parse(r.stdout);
    expect(placement.onGpu.length).toBeGreaterThan(0);
    expect(placement.onGpu.length).toBeLessThan(kernels);
    expect(placement.predicted.partitionedMs).toBeLessThanOrEqual(Math.min(placement.predicted.cpuMs, placement.predicted.gpuMs));
    // one inference of the split: its kernels on each device plus its copies
    expect(placement.split.cpuMs + placement.split.gpuMs + placement.split.copiesMs).toBeCloseTo(placement.predicted.partitionedMs, 9);
    expect(placement.split.cpuMs).toBeGreaterThan(0);
    expect(placement.split.gpuMs).toBeGreaterThan(0);
    expect((await edgec(["inspect", m, "--target", "rk3588"])).stdout).toMatch(/^placement  \d+ of 39 kernels on the GPU, \d+ copies .*split \(CPU [\d.]+ ms, GPU [\d.]+ ms, copies [\d.]+ ms\)/m);
  });

  it("cpu on the opencl target builds plain C", async () => {
    const out = join(work.dir, "opencl-cpu");
    const r = await edgec(["build", join(CONV, "model.onnx"), "--target", "opencl", "--device", "cpu", "-o", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(out)).not.toContain("kernels.cl");
  });
});

describe("kernels split between the CPU and the GPU", () => {
  const MODELS = join(ROOT, "..", "shared", "corpus", "models");

  it.each(readdirSync(MODELS).sort())("%s passes with every other kernel on the CPU", async (m) => {
    const place = (k: Kernel) => (Number(/^k(\d+)/.exec(k.name)![1]) % 2 ? "cpu" : "gpu");
    const results = await verifyModel(join(MODELS, m, "model.onnx"), join(MODELS, m), { target: loadTarget("opencl"), place }, { rtol: 1e-3, atol: 1e-5 });
    expect(results.flatMap((r) => r.outputs.filter((o) => !o.pass))).toEqual([]);
    expect(results.length).toBeGreaterThan(0);
  });

  it.each(readdirSync(MODELS).sort())("%s passes with its products tiled through local memory (EDGEC_OPENCL_TILED=on)", async (m) => {
    process.env.EDGEC_OPENCL_TILED = "on";
    try {
      const results = await verifyModel(join(MODELS, m, "model.onnx"), join(MODELS, m), { target: loadTarget("opencl") }, { rtol: 1e-3, atol: 1e-5 });
      expect(results.flatMap((r) => r.outputs.filter((o) => !o.pass))).toEqual([]);
      expect(results.length).toBeGreaterThan(0);
    } finally {
      delete process.env.EDGEC_OPENCL_TILED;
    }
  });

  it("keeps each side's weights apart when a packed CPU constant is named like a GPU weight", async () => {
    // tf2onnx-style names: the same first 40 characters, where identifiers are cut.
    const scope = "StatefulPartitionedCall/functional_1/dense_layer";
    const model = join(work.dir, "dense.onnx");
    const w = Array.from({ length: 16 }, (_, i) => i + 1);
    writeFileSync(model, modelBytes({
      nodes: [node("MatMul", ["x", `${scope}/MatMul/ReadVariableOp:0`], ["h"], [], `${scope}/MatMul`), node("Add", ["h", `${scope}/BiasAdd/ReadVariableOp:0`], ["y"], [], `${scope}/BiasAdd`)],
      inputs: [valueInfo("x", T.FLOAT, [1, 4])],
      outputs: [valueInfo("y", T.FLOAT, [1, 4])],
      initializers: [tensorProto(`${scope}/MatMul/ReadVariableOp:0`, T.FLOAT, [4, 4], { floatData: w }), tensorProto(`${scope}/BiasAdd/ReadVariableOp:0`, T.FLOAT, [4], { floatData: [100, 200, 300, 400] })],
    }));
    const place = (k: Kernel) => (k.op === "MatMul" ? "cpu" : "gpu");
    const { dir } = await buildArtifact(model, join(work.dir, "dense"), { target: loadTarget("opencl"), fuse: false, place });
    const r = await runArtifact(dir, { x: fromNumbers("float32", [1, 4], [1, 0, 0, 0]) });
    expect(toNumbers(r.outputs[0])).toEqual([101, 202, 303, 404]);
  });

  it("runs float64 kernels on the CPU of a GPU without float64 (rk3588's Mali)", async () => {
    const model = join(work.dir, "f64.onnx");
    writeFileSync(model, modelBytes({
      nodes: [node("Cast", ["x"], ["d"], [attr.i("to", T.DOUBLE)]), node("Mul", ["d", "d"], ["d2"]), node("Cast", ["d2"], ["y2"], [attr.i("to", T.FLOAT)]), node("Relu", ["y2"], ["y"])],
      inputs: [valueInfo("x", T.FLOAT, [64])],
      outputs: [valueInfo("y", T.FLOAT, [64])],
    }));
    const { dir } = await buildArtifact(model, join(work.dir, "f64"), { target: forDevice(loadTarget("rk3588"), "gpu", true), fuse: false });
    expect(readFileSync(join(dir, "kernels.cl"), "utf8")).not.toMatch(/\bdouble\b|cl_khr_fp64/);
    expect(readFileSync(join(dir, "model.c"), "utf8")).toMatch(/static void k\d+_Mul\(/);
    const x = Array.from({ length: 64 }, (_, i) => (i - 32) / 7);
    const r = await runArtifact(dir, { x: fromNumbers("float32", [64], x) });
    expect(toNumbers(r.outputs[0])).toEqual(x.map((v) => Math.fround(Math.fround(v) ** 2)));
    // A GPU with float64 (PoCL here) runs the same kernels in double itself.
    const gpu = await buildArtifact(model, join(work.dir, "f64-gpu"), { target: loadTarget("opencl"), fuse: false });
    expect(readFileSync(join(gpu.dir, "kernels.cl"), "utf8")).toMatch(/cl_khr_fp64 : enable/);
    expect(readFileSync(join(gpu.dir, "model.c"), "utf8")).not.toMatch(/static void k\d+_/);
    const g = await runArtifact(gpu.dir, { x: fromNumbers("float32", [64], x) });
    expect(toNumbers(g.outputs[0])).toEqual(x.map((v) => Math.fround(Math.fround(v) ** 2)));
  });
});

describe("OpenCL C for integer math", () => {
  it("computes Pow and fmod Mod on int32 through float, as the C backend does", async () => {
    const model = join(work.dir, "ipow.onnx");
    writeFileSync(model, modelBytes({
      nodes: [node("Pow", ["x", "e"], ["p"]), node("Mod", ["x", "e"], ["m"], [attr.i("fmod", 1)])],
      inputs: [valueInfo("x", T.INT32, [4]), valueInfo("e", T.INT32, [4])],
      outputs: [valueInfo("p", T.INT32, [4]), valueInfo("m", T.INT32, [4])],
    }));
    const { dir } = await buildArtifact(model, join(work.dir, "ipow"), { target: loadTarget("opencl") });
    const r = await runArtifact(dir, { x: fromNumbers("int32", [4], [2, -3, 5, 7]), e: fromNumbers("int32", [4], [3, 2, 1, 4]) });
    expect(toNumbers(r.outputs[0])).toEqual([8, 9, 5, 2401]);
    expect(toNumbers(r.outputs[1])).toEqual([2, -1, 0, 3]);
  });
});

describe("kernelLaunches", () => {
  const v = (name: string): Expr => ({ k: "var", name, dtype: "int32" });
  const c = (n: number): Expr => ({ k: "const", dtype: "int32", v: n });
  const idx = (...terms: [string, number][]): Expr => terms.map(([x, s]): Expr => ({ k: "bin", op: "*", a: v(x), b: c(s), dtype: "int32" })).reduce((a, b) => ({ k: "bin", op: "+", a, b, dtype: "int32" }));
  const load = (buf: string, i: Expr): Expr => ({ k: "load", buf, idx: i, dtype: "float32" });
  const program = (body: Stmt[]): { p: Program; k: Kernel } => {
    const buffers = new Map([
      ["x", { name: "x", value: "x", dtype: "float32" as const, shape: [4, 8], kind: "input" as const }],
      ["y", { name: "y", value: "y", dtype: "float32" as const, shape: [4, 8], kind: "output" as const }],
    ]);
    const k: Kernel = { name: "k0", node: "n", op: "Op", params: ["x", "y"], writes: ["y"], body };
    return { p: { name: "m", buffers, kernels: [k], inputs: ["x"], outputs: ["y"], arenaBytes: 0 }, k };
  };
  const launches = (body: Stmt[]) => {
    const { p, k } = program(body);
    return kernelLaunches(k, p, deviceLayout(p), 16);
  };

  it("maps a parallel loop and the independent loop inside it to a 2-D NDRange, fastest dimension first", () => {
    const [l] = launches([{ k: "for", v: "i", n: 4, parallel: true, body: [{ k: "for", v: "j", n: 8, body: [{ k: "store", buf: "y", idx: idx(["i", 8], ["j", 1]), val: load("x", idx(["i", 8], ["j", 1])) }] }] }]);
    expect(l.global).toEqual([8, 4]);
    expect(l.local).toEqual([8, 2]);
    expect(l.source).toMatch(/const int j = \(int\)get_global_id\(0\);/);
  });

  it("keeps an inner loop that accumulates across its iterations inside the work-item", () => {
    const acc: Stmt = { k: "store", buf: "y", idx: idx(["i", 8]), val: { k: "bin", op: "+", a: load("y", idx(["i", 8])), b: load("x", idx(["i", 8], ["j", 1])), dtype: "float32" } };
    const [l] = launches([{ k: "for", v: "i", n: 4, parallel: true, body: [{ k: "for", v: "j", n: 8, body: [acc] }] }]);
    expect(l.global).toEqual([4]);
    expect(l.source).toMatch(/for \(int j = 0; j < 8; \+\+j\)/);
  });

  it("keeps loops whose iterations could store to the same element inside the work-item", () => {
    const half: Expr = { k: "bin", op: "/", a: v("j"), b: c(2), dtype: "int32" };
    const rmw = (i: Expr): Stmt => ({ k: "store", buf: "y", idx: i, val: { k: "bin", op: "+", a: load("y", i), b: load("x", i), dtype: "float32" } });
    const byHalf: Expr = { k: "bin", op: "+", a: idx(["i", 8]), b: half, dtype: "int32" };
    expect(launches([{ k: "for", v: "i", n: 4, parallel: true, body: [{ k: "for", v: "j", n: 8, body: [rmw(byHalf)] }] }])[0].global).toEqual([4]);
    // j + k: each alone looks independent, together (j, k) = (1, 0) and (0, 1) store to one element.
    const overlapping = idx(["i", 8], ["j", 1], ["k", 1]);
    const nest3: Stmt[] = [{ k: "for", v: "i", n: 4, parallel: true, body: [{ k: "for", v: "j", n: 4, body: [{ k: "for", v: "k", n: 4, body: [rmw(overlapping)] }] }] }];
    expect(launches(nest3)[0].global).toEqual([4]);
    const disjoint = idx(["i", 16], ["j", 4], ["k", 1]);
    const nest3ok: Stmt[] = [{ k: "for", v: "i", n: 2, parallel: true, body: [{ k: "for", v: "j", n: 4, body: [{ k: "for", v: "k", n: 4, body: [rmw(disjoint)] }] }] }];
    expect(launches(nest3ok)[0].global).toEqual([4, 4, 2]);
  });

  it("splits a body of loops into launches in order, and runs a body with shared state as one work-item", () => {
    const copy = (n: number): Stmt => ({ k: "for", v: "i", n, parallel: true, body: [{ k: "store", buf: "y", idx: v("i"), val: load("x", v("i")) }] });
    expect(launches([copy(32), copy(16)]).map((l) => [l.name, l.global])).toEqual([["k0_0", [32]], ["k0_1", [16]]]);
    const shared: Stmt[] = [{ k: "let", name: "s", dtype: "float32", val: { k: "const", dtype: "float32", v: 0 } }, copy(32)];
    expect(launches(shared).map((l) => l.global)).toEqual([[1]]);
  });

  // y[i][j] = x[i][j] + x[i][j ^ 1] through group memory: 4 groups of 1 × 2 groups of 4 work-items.
  const gridBody = (): Stmt[] => {
    const at = idx(["g", 8], ["h", 4], ["t", 1]);
    const mem = (i: Expr): Expr => ({ k: "load", buf: "s", idx: i, dtype: "float32" });
    return [{
      k: "grid",
      dims: [{ group: "g", groups: 4, item: "u", items: 1 }, { group: "h", groups: 2, item: "t", items: 4 }],
      body: [
        { k: "local", name: "s", dtype: "float32", n: 4, scope: "group" },
        { k: "store", buf: "s", idx: v("t"), val: load("x", at) },
        { k: "barrier" },
        { k: "store", buf: "y", idx: at, val: { k: "bin", op: "+", a: mem(v("t")), b: mem({ k: "bin", op: "-", a: c(3), b: v("t"), dtype: "int32" }), dtype: "float32" } },
      ],
    }];
  };

  it("launches a grid as laid out, its group memory __local at kernel scope, its ids the group's and the item's", () => {
    const [l] = launches(gridBody());
    expect(l.global).toEqual([8, 4]);
    expect(l.local).toEqual([4, 1]);
    expect(l.fixed).toBe(true);
    expect(l.source).toMatch(/const int h = \(int\)get_group_id\(0\);\n {2}const int t = \(int\)get_local_id\(0\);/);
    expect(l.source).toMatch(/^ {2}__local float s\[4\];$/m);
    expect(l.source).toMatch(/^ {2}barrier\(CLK_LOCAL_MEM_FENCE\);$/m);
  });

  it("verifyLoop refuses a barrier outside a grid, group memory below its top, a grid inside a loop or beside other statements", () => {
    const { p } = program([]);
    const check = (body: Stmt[]) => () => verifyLoop({ ...p, kernels: [{ ...p.kernels[0], body }] });
    expect(check(gridBody())).not.toThrow();
    expect(check([{ k: "barrier" }])).toThrow(/a barrier outside a grid/);
    const [grid] = gridBody() as (Stmt & { k: "grid" })[];
    expect(check([{ ...grid, body: [grid.body[1], grid.body[0], ...grid.body.slice(2)] }])).toThrow(/group memory declared below the top of a grid/);
    expect(check([{ k: "for", v: "i", n: 2, body: [grid] }])).toThrow(/a grid is not at the kernel's top level/);
    expect(check([{ k: "let", name: "z", dtype: "int32", val: c(0) }, grid])).toThrow(/a grid beside statements other than loops/);
  });
});
