import { readFileSync } from "node:fs";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { runArtifact } from "../../src/driver/run.js";
import { compare } from "../../src/driver/verify.js";
import { add, cst, int, let_, load, mul, store, vr } from "../../src/loop/build.js";
import type { Program } from "../../src/loop/ir.js";
import { vectorizeLoops } from "../../src/loop/passes/vectorize-loops.js";
import { printLoop } from "../../src/loop/print.js";
import { vectorizeLanes } from "../../src/loop/vectorize.js";
import { loadTarget } from "../../src/target/load.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

/**
 * vectorize-loops: elementwise chains with exp (Exp, Elu) and without (SiLU: a rational sigmoid), reductions (global average
 * and max pooling over rows that leave tails of every width) and pooling windows (unrolled, the
 * output columns in vectors, stride 2 too) against onnxruntime, on the host
 * (16 lanes) and rpi4 (4), with the C holding vector exp and vector loads.
 */
let seed = 3;
const rand = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 8 - 4);

const CASES = [
  { name: "SiLU over 37 columns (a rational sigmoid: no exp)", shape: [3, 5, 37], nodes: [node("Sigmoid", ["x"], ["s"]), node("Mul", ["x", "s"], ["y"])], exp: false },
  { name: "Erf over 37 columns (a rational erf: no libm call)", shape: [3, 5, 37], nodes: [node("Erf", ["x"], ["y"])], exp: false },
  { name: "x·exp(x) over 37 columns", shape: [3, 5, 37], nodes: [node("Exp", ["x"], ["e"]), node("Mul", ["x", "e"], ["y"])], exp: true },
  { name: "Elu over 29 columns", shape: [2, 29], nodes: [node("Elu", ["x"], ["y"], [attr.f("alpha", 0.7)])], exp: false },
  { name: "global average pool of an exp, 7x9 maps", shape: [1, 6, 7, 9], nodes: [node("Exp", ["x"], ["s"]), node("GlobalAveragePool", ["s"], ["y"])], exp: true },
  { name: "global average pool of a sigmoid, 7x9 maps", shape: [1, 6, 7, 9], nodes: [node("Sigmoid", ["x"], ["s"]), node("GlobalAveragePool", ["s"], ["y"])], exp: false },
  { name: "global max pool, 5x23 maps", shape: [2, 3, 5, 23], nodes: [node("GlobalMaxPool", ["x"], ["y"])], exp: false },
  { name: "3x3 max pool, stride 2 (window unrolled, columns in vectors)", shape: [1, 4, 19, 41], nodes: [node("MaxPool", ["x"], ["y"], [attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2])])], exp: false },
  { name: "3x3 max pool, stride 1, pads 1, 6x7 map (padded with -inf)", shape: [1, 4, 6, 7], nodes: [node("MaxPool", ["x"], ["y"], [attr.ints("kernel_shape", [3, 3]), attr.ints("pads", [1, 1, 1, 1])])], exp: false },
  { name: "2x2 average pool, stride 1", shape: [1, 3, 9, 30], nodes: [node("AveragePool", ["x"], ["y"], [attr.ints("kernel_shape", [2, 2])])], exp: false },
];

const work = tempDir("edgec-vectorize-loops-");
afterAll(() => work.cleanup());

describe.each(["host", "rpi4"])("vectorize-loops on %s", (targetName) => {
  it.for(CASES)("$name", async (c) => {
    const file = work.write(`${targetName}-${c.name.replace(/\W+/g, "_")}.onnx`, modelBytes({ inputs: [valueInfo("x", T.FLOAT, c.shape)], nodes: c.nodes, outputs: [valueInfo("y", T.FLOAT)] }));
    const x = rand(c.shape.reduce((a, b) => a * b, 1));
    const ref = (await (await ort.InferenceSession.create(file)).run({ x: new ort.Tensor("float32", x, c.shape) })).y;
    const dir = join(work.dir, `${targetName}-${c.name.replace(/\W+/g, "_")}`);
    await buildArtifact(file, dir, { target: loadTarget(targetName) });
    const src = readFileSync(join(dir, "model.c"), "utf8");
    expect(src).toMatch(/edgec_vload\d+\(\w+ \+ /);
    if (c.exp) expect(src).toMatch(/edgec_vexp\d+\(/);
    const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: c.shape, data: x } });
    const r = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-5, atol: 1e-6 });
    expect(r.pass, `max abs error ${r.maxAbs}`).toBe(true);
  });
});

describe.each(["host", "rpi4"])("Sigmoid on %s", (targetName) => {
  it("stays within 2.3e-7 of 1/(1+e^-x) and inside [0, 1], out to ±40 and ±∞; NaN stays NaN", async () => {
    const xs = [...Array.from({ length: 161 }, (_, i) => -40 + i * 0.5), Infinity, -Infinity];
    const file = work.write(`${targetName}-sigmoid.onnx`, modelBytes({ inputs: [valueInfo("x", T.FLOAT, [xs.length])], nodes: [node("Sigmoid", ["x"], ["y"])], outputs: [valueInfo("y", T.FLOAT)] }));
    const dir = join(work.dir, `${targetName}-sigmoid`);
    await buildArtifact(file, dir, { target: loadTarget(targetName) });
    // NaN in a vector body and in the scalar tail.
    const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: [xs.length], data: Float32Array.from(xs, (x, i) => (i === 5 || i === xs.length - 1 ? NaN : x)) } });
    const y = outputs[0].data as Float32Array;
    expect(Number.isNaN(y[5]) && Number.isNaN(y[xs.length - 1]), "sigmoid(NaN)").toBe(true);
    xs.forEach((x, i) => {
      if (i === 5 || i === xs.length - 1) return;
      expect(y[i], `sigmoid(${x})`).toBeGreaterThanOrEqual(0);
      expect(y[i], `sigmoid(${x})`).toBeLessThanOrEqual(1);
      expect(Math.abs(y[i] - 1 / (1 + Math.exp(-x))), `sigmoid(${x})`).toBeLessThan(2.3e-7);
    });
  });
});

describe.each([["host", 16], ["rpi4", 4]] as const)("an elementwise kernel over small maps on %s", (targetName, lanes) => {
  it("runs a map's rows together, so vectors cross rows (7×7 maps by a per-channel scale, through a SiLU)", async () => {
    const shape = [1, 5, 7, 7];
    const file = work.write(`${targetName}-rows.onnx`, modelBytes({
      inputs: [valueInfo("x", T.FLOAT, shape)],
      initializers: [tensorProto("s", T.FLOAT, [1, 5, 1, 1], { floatData: [0.5, -1, 2, 0.25, 3] })],
      nodes: [node("Sigmoid", ["x"], ["g"]), node("Mul", ["x", "g"], ["h"]), node("Mul", ["h", "s"], ["y"])],
      outputs: [valueInfo("y", T.FLOAT)],
    }));
    const x = rand(shape.reduce((a, b) => a * b, 1));
    const ref = (await (await ort.InferenceSession.create(file)).run({ x: new ort.Tensor("float32", x, shape) })).y;
    const dir = join(work.dir, `${targetName}-rows`);
    await buildArtifact(file, dir, { target: loadTarget(targetName) });
    // 49 elements a channel: whole vectors of `lanes` across rows, where each 7-wide row has fewer (none on 16 lanes).
    const kernel = readFileSync(join(dir, "model.c"), "utf8").split(/\n(?=static void )/).find((k) => k.startsWith("static void k0_"))!;
    expect(kernel).toMatch(new RegExp(`i\\d+_v${lanes} < ${Math.floor(49 / lanes)};`));
    const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape, data: x } });
    const r = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-5, atol: 1e-6 });
    expect(r.pass, `max abs error ${r.maxAbs}`).toBe(true);
  });
});

/** erf in double precision: its Taylor series up to 3, then the asymptotic series of erfc (within 1e-8 either way). */
function erf(x: number): number {
  const a = Math.abs(x);
  if (a >= 3) {
    let term = 1, sum = 1;
    for (let n = 1; n < 6; n++) sum += term *= -(2 * n - 1) / (2 * a * a);
    return Math.sign(x) * (1 - (Math.exp(-a * a) / (a * Math.sqrt(Math.PI))) * sum);
  }
  let term = x, sum = x;
  for (let n = 1; n < 60; n++) sum += (term *= (-x * x) / n) / (2 * n + 1);
  return (2 / Math.sqrt(Math.PI)) * sum;
}

describe.each(["host", "rpi4", "wasm32"])("Erf on %s", (targetName) => {
  it("stays within 5e-7 of erf and inside [-1, 1], out to ±40 and ±∞, with no libm call; NaN stays NaN", async () => {
    const xs = [...Array.from({ length: 321 }, (_, i) => -8 + i * 0.05), 40, -40, Infinity, -Infinity];
    const file = work.write(`${targetName}-erf.onnx`, modelBytes({ inputs: [valueInfo("x", T.FLOAT, [xs.length])], nodes: [node("Erf", ["x"], ["y"])], outputs: [valueInfo("y", T.FLOAT)] }));
    const dir = join(work.dir, `${targetName}-erf`);
    await buildArtifact(file, dir, { target: loadTarget(targetName) });
    expect(readFileSync(join(dir, "model.c"), "utf8")).not.toMatch(/\berff?\(/);
    const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: [xs.length], data: Float32Array.from(xs, (x, i) => (i === 5 || i === xs.length - 1 ? NaN : x)) } });
    const y = outputs[0].data as Float32Array;
    expect(Number.isNaN(y[5]) && Number.isNaN(y[xs.length - 1]), "erf(NaN)").toBe(true);
    xs.forEach((x, i) => {
      if (i === 5 || i === xs.length - 1) return;
      expect(Math.abs(y[i]), `erf(${x})`).toBeLessThanOrEqual(1);
      const want = Number.isFinite(x) ? erf(Math.fround(x)) : Math.sign(x);
      expect(Math.abs(y[i] - want), `erf(${x})`).toBeLessThan(5e-7);
    });
  });
});

describe("vectorizeLanes", () => {
  it("refuses a loop that reads what another iteration writes", () => {
    const y = { buf: "y", dtype: "float32" as const, shape: [64] };
    // y[i] = y[i - 1] + 1 would read, in a vector, values the same vector is about to write.
    const body = [store(y, [vr("i")], load(y, [{ k: "bin", op: "-", a: vr("i"), b: int(1), dtype: "int32" }]))];
    expect(vectorizeLanes(body, "i", int(1), 4)).toBeUndefined();
    expect(vectorizeLanes([store(y, [vr("i")], load(y, [vr("i")]))], "i", int(0), 4)).toBeDefined();
  });
});

describe("vectorizeLoops", () => {
  it("folds a loop that adds into one element of memory into a vector of partial sums, stored once", () => {
    const t = { buf: "t", dtype: "float32" as const, shape: [16] };
    const part = { buf: "part", dtype: "float32" as const, shape: [2] };
    const e = vr("e", "float32");
    // A stitched pool's epilogue: each value of a tile row, through its activation, into the row's partial sum.
    const body = [{ k: "for" as const, v: "l", n: 16, body: [{ k: "block" as const, body: [let_("e", "float32", load(t, [vr("l")])), store(part, [int(1)], add(load(part, [int(1)]), mul(e, cst(2))))] }] }];
    const buffers = new Map([t, part].map((r) => [r.buf, { name: r.buf, value: r.buf, dtype: r.dtype, shape: r.shape, kind: "input" as const }]));
    const p: Program = { name: "p", buffers, kernels: [{ name: "k0", node: "n", op: "Fold", params: ["t", "part"], writes: ["part"], body }], inputs: ["t", "part"], outputs: [], arenaBytes: 0 };
    const text = printLoop(vectorizeLoops(p, 4));
    expect(text).toMatch(/for l_v4 in 0\.\.4 \{\n\s*float32x4 e = t\[/);
    expect(text.match(/part\[1\] = /g)).toHaveLength(1);
    expect(text).toContain("part[1] = (part[1] + l_acc)");
  });

  it("with slides, folds the vector of partial results into its lane 0 in registers: log2(lanes) slides, no loop over its lanes", () => {
    const x = { buf: "x", dtype: "float32" as const, shape: [40] };
    const y = { buf: "y", dtype: "float32" as const, shape: [1] };
    const body = [let_("acc", "float32", cst(-Infinity)), { k: "for" as const, v: "i", n: 40, body: [{ k: "set" as const, name: "acc", val: { k: "bin" as const, op: "max" as const, a: vr("acc", "float32"), b: load(x, [vr("i")]), dtype: "float32" as const } }] }, store(y, [int(0)], vr("acc", "float32"))];
    const buffers = new Map([x, y].map((r) => [r.buf, { name: r.buf, value: r.buf, dtype: r.dtype, shape: r.shape, kind: "input" as const }]));
    const p: Program = { name: "p", buffers, kernels: [{ name: "k0", node: "n", op: "Max", params: ["x", "y"], writes: ["y"], body }], inputs: ["x", "y"], outputs: [], arenaBytes: 0 };
    const text = printLoop(vectorizeLoops(p, 16, true));
    // 40 = 2 vectors of 16, one of 8: each width its own vector of partial results, halved down to one lane.
    for (const [w, bys] of [[16, [8, 4, 2, 1]], [8, [4, 2, 1]]] as const) for (const by of bys) expect(text).toContain(`acc_v${w} = max(acc_v${w}, slide${w}(acc_v${w}, acc_v${w}, ${by}))`);
    expect(text).toContain("acc = max(acc, acc_l16[0])");
    expect(text).not.toMatch(/for acc_i\d+ in/);
    expect(printLoop(vectorizeLoops(p, 16))).toMatch(/for acc_i16 in 0\.\.16/);
  });

  it("keeps the work a parallel loop states on its vector loop", () => {
    const t = { buf: "t", dtype: "float32" as const, shape: [18] };
    const body = [{ k: "for" as const, v: "i", n: 18, parallel: true, work: 1 << 20, body: [store(t, [vr("i")], mul(load(t, [vr("i")]), cst(2)))] }];
    const buffers = new Map([[t.buf, { name: t.buf, value: t.buf, dtype: t.dtype, shape: t.shape, kind: "input" as const }]]);
    const p: Program = { name: "p", buffers, kernels: [{ name: "k0", node: "n", op: "Scale", params: ["t"], writes: ["t"], body }], inputs: ["t"], outputs: [], arenaBytes: 0 };
    const [vector, ...rest] = vectorizeLoops(p, 4).kernels[0].body;
    expect(vector).toMatchObject({ k: "for", n: 4, parallel: true, work: 1 << 20 });
    expect(rest.length).toBeGreaterThan(0);
  });
});
