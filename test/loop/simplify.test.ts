import { describe, expect, it } from "vitest";
import { Names, load, nest, store, type Ref } from "../../src/loop/build.js";
import type { Program } from "../../src/loop/ir.js";
import { simplify } from "../../src/loop/passes/simplify.js";
import { printLoop } from "../../src/loop/print.js";
import { verifyLoop } from "../../src/loop/verify.js";

function copyProgram(shape: number[]): Program {
  const x: Ref = { buf: "x", dtype: "float32", shape };
  const y: Ref = { buf: "y", dtype: "float32", shape };
  const body = nest(new Names(), shape, (idx) => [store(y, idx, load(x, idx))]);
  const buffers = new Map([
    ["x", { name: "x", value: "x", dtype: "float32" as const, shape, kind: "input" as const }],
    ["y", { name: "y", value: "y", dtype: "float32" as const, shape, kind: "output" as const }],
  ]);
  return { name: "p", buffers, kernels: [{ name: "k0", node: "n", op: "Identity", params: ["x", "y"], writes: ["y"], body }], inputs: ["x"], outputs: ["y"], arenaBytes: 0 };
}

describe("simplify", () => {
  it("drops unit loops, folds their index terms and keeps the parallel axis", () => {
    const p = simplify(copyProgram([1, 3, 1, 5]));
    verifyLoop(p);
    const text = printLoop(p);
    expect(text).toContain("parallel for i1 in 0..3");
    expect(text).toContain("for i3 in 0..5");
    expect(text).not.toMatch(/i0|i2/);
    expect(text).toContain("y[((i1 * 5) + i3)] = x[((i1 * 5) + i3)]");
  });

  it("moves the work a dropped parallel loop states to the loop that becomes parallel", () => {
    const p = copyProgram([1, 3, 5]);
    const [outer] = p.kernels[0].body;
    if (outer.k !== "for") throw new Error("expected a loop");
    p.kernels[0].body = [{ ...outer, work: 60 }];
    const [loop] = simplify(p).kernels[0].body;
    expect(loop).toMatchObject({ k: "for", n: 3, parallel: true, work: 60 });
  });

  it("removes loops with no iterations, the loops left empty around them, and the empty kernel", () => {
    const p = simplify(copyProgram([2, 0, 3]));
    expect(p.kernels).toEqual([]);
  });
});
