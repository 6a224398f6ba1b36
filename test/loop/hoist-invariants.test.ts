import { readFileSync } from "node:fs";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { runArtifact } from "../../src/driver/run.js";
import { compare } from "../../src/driver/verify.js";
import { add, cst, div, if_, int, let_, load, lt, mul, select, set, store, un, vr, type Ref } from "../../src/loop/build.js";
import type { Program, Stmt } from "../../src/loop/ir.js";
import { hoistInvariants } from "../../src/loop/passes/hoist-invariants.js";
import { printLoop } from "../../src/loop/print.js";
import { verifyLoop } from "../../src/loop/verify.js";
import { loadTarget } from "../../src/target/load.js";
import { modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

const s: Ref = { buf: "s", dtype: "float32", shape: [4] };
const x: Ref = { buf: "x", dtype: "float32", shape: [4, 8] };
const y: Ref = { buf: "y", dtype: "float32", shape: [4, 8] };
const sigmoidOf = (e: Parameters<typeof un>[1]) => div(cst(1), add(cst(1), un("exp", un("neg", e))));

function program(body: Stmt[]): Program {
  const buf = (r: Ref, kind: "input" | "output") => [r.buf, { name: r.buf, value: r.buf, dtype: r.dtype, shape: r.shape, kind }] as const;
  return {
    name: "p",
    buffers: new Map([buf(s, "input"), buf(x, "input"), buf(y, "output")]),
    kernels: [{ name: "k0", node: "n", op: "Mul", params: ["s", "x", "y"], writes: ["y"], body }],
    inputs: ["s", "x"],
    outputs: ["y"],
    arenaBytes: 0,
  };
}

const [c, j] = [vr("c"), vr("j")];

describe("hoistInvariants", () => {
  it("computes a channel's sigmoid once per channel, not per element", () => {
    const p = hoistInvariants(program([{ k: "for", v: "c", n: 4, parallel: true, body: [{ k: "for", v: "j", n: 8, body: [store(y, [c, j], mul(load(x, [c, j]), sigmoidOf(load(s, [c]))))] }] }]));
    verifyLoop(p);
    const text = printLoop(p);
    expect(text).toMatch(/float32 j_h0 = \(1:float32 \/ \(1:float32 \+ exp\(neg\(s\[c\]\)\)\)\)\n\s*for j in 0\.\.8/);
    expect(text).toContain("y[((c * 8) + j)] = (x[((c * 8) + j)] * j_h0)");
  });

  it("moves what changes in no loop out of all of them, but never out of a parallel loop", () => {
    const body: Stmt[] = [{ k: "for", v: "c", n: 4, body: [{ k: "for", v: "j", n: 8, body: [store(y, [c, j], sigmoidOf(load(s, [int(2)])))] }] }];
    const text = printLoop(hoistInvariants(program(body)));
    expect(text).toMatch(/float32 c_h0 = [^\n]*\n\s*for c in/);
    expect(text).not.toContain("j_h0");
    const parallel = printLoop(hoistInvariants(program([{ ...body[0], parallel: true } as Stmt])));
    expect(parallel).toMatch(/parallel for c in 0\.\.4[^\n]*\n\s*float32 j_h0/);
  });

  it("leaves what the loop changes, guarded reads, stored buffers and cheap arithmetic in place", () => {
    const cases: Stmt[][] = [
      // reads a variable the loop sets
      [let_("t", "float32", cst(0)), { k: "for", v: "j", n: 8, body: [set("t", add(vr("t", "float32"), cst(1))), store(y, [int(0), j], sigmoidOf(vr("t", "float32")))] }],
      // a read under an if: its index may be valid only when the condition holds
      [{ k: "for", v: "j", n: 8, body: [if_(lt(j, int(4)), [store(y, [int(0), j], sigmoidOf(load(s, [int(5)])))])] }],
      // a read in a select's arm
      [{ k: "for", v: "j", n: 8, body: [store(y, [int(0), j], select(lt(j, int(4)), sigmoidOf(load(s, [int(5)])), cst(0)))] }],
      // a buffer the loop stores to
      [{ k: "for", v: "j", n: 8, body: [store(s, [int(0)], sigmoidOf(load(s, [int(1)]))), store(y, [int(0), j], cst(0))] }],
      // no exp, log or division
      [{ k: "for", v: "j", n: 8, body: [store(y, [int(0), j], mul(load(s, [int(1)]), cst(2)))] }],
    ];
    for (const body of cases) expect(printLoop(hoistInvariants(program(body)))).toBe(printLoop(program(body)));
  });
});

/** A squeeze-and-excitation block as exporters write it, on host (16 lanes) and rpi4 (4) against onnxruntime. */
describe("a squeeze-and-excitation block", () => {
  const work = tempDir("edgec-hoist-");
  afterAll(() => work.cleanup());
  const X = [1, 6, 9, 13];
  let seed = 5;
  const rand = (n: number) => Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 4 - 2);
  const file = work.write(
    "se.onnx",
    modelBytes({
      inputs: [valueInfo("x", T.FLOAT, X)],
      initializers: [tensorProto("w1", T.FLOAT, [3, 6, 1, 1], { floatData: rand(18) }), tensorProto("w2", T.FLOAT, [6, 3, 1, 1], { floatData: rand(18) })],
      nodes: [
        node("Sigmoid", ["x"], ["sx"]),
        node("Mul", ["x", "sx"], ["a"]),
        node("GlobalAveragePool", ["a"], ["p"]),
        node("Conv", ["p", "w1"], ["h"]),
        node("Relu", ["h"], ["r"]),
        node("Conv", ["r", "w2"], ["g"]),
        node("Sigmoid", ["g"], ["sg"]),
        node("Mul", ["a", "sg"], ["y"]),
      ],
      outputs: [valueInfo("y", T.FLOAT)],
    }),
  );
  for (const t of ["host", "rpi4"]) {
    it(`scales each channel by a sigmoid computed once per channel, on ${t}`, async () => {
      const data = Float32Array.from(rand(X.reduce((a, b) => a * b, 1)));
      const ref = (await (await ort.InferenceSession.create(file)).run({ x: new ort.Tensor("float32", data, X) })).y;
      const dir = join(work.dir, t);
      await buildArtifact(file, dir, { target: loadTarget(t) });
      // The scale's sigmoid (a rational function, with a division) is bound before the loops over the channel's elements.
      expect(readFileSync(join(dir, "model.c"), "utf8")).toMatch(/float \w+_h0 = \(edgec_fminf\(edgec_fmaxf\([^\n]* \/ /);
      const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: X, data } });
      const r = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-5, atol: 1e-6 });
      expect(r.pass, `max abs error ${r.maxAbs}`).toBe(true);
    });
  }
});
