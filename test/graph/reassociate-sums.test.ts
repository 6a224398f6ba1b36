import { afterAll, describe, expect, it } from "vitest";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { interpret } from "../../src/graph/interp.js";
import type { Graph } from "../../src/graph/ir.js";
import { inferShapes } from "../../src/graph/passes/infer-shapes.js";
import { reassociateSums } from "../../src/graph/passes/reassociate-sums.js";
import { verifyGraph } from "../../src/graph/verify.js";
import { modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

let seed = 11;
const rand = (n: number) => Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const weight = (name: string, dims: number[]) => tensorProto(name, T.FLOAT, dims, { floatData: rand(dims.reduce((a, b) => a * b, 1)) });

const work = tempDir("edgec-reassociate-");
afterAll(() => work.cleanup());

/** Four 1×1 convolutions of x, a..d, summed by `sum` (nodes after them), then a Relu into y. */
function graph(name: string, sum: ReturnType<typeof node>[], extraInits = [] as ReturnType<typeof tensorProto>[]): Graph {
  const bytes = modelBytes({
    inputs: [valueInfo("x", T.FLOAT, [1, 4, 3, 3])],
    initializers: [..."abcd"].map((t) => weight(`w${t}`, [4, 4, 1, 1])).concat(extraInits),
    nodes: [...[..."abcd"].map((t) => node("Conv", ["x", `w${t}`], [t], [], `conv_${t}`)), ...sum, node("Relu", ["s"], ["y"], [], "relu")],
    outputs: [valueInfo("y", T.FLOAT)],
  });
  return inferShapes(importOnnx(work.write(`${name}.onnx`, bytes)).graph);
}

const chain = [node("Add", ["a", "b"], ["ab"], [], "add1"), node("Add", ["ab", "c"], ["abc"], [], "add2"), node("Add", ["abc", "d"], ["s"], [], "add3")];
/** Made in reverse: d first, then c, b, a. */
const reverse = (v: string) => ({ a: 3, b: 2, c: 1, d: 0 })[v];
const adds = (g: Graph) => g.nodes.filter((n) => n.op === "Add").map((n) => `${n.inputs.join("+")}=${n.outputs[0]}`);
const x = { dtype: "float32" as const, shape: [1, 4, 3, 3], data: Float32Array.from(rand(36)) };

function sameSum(g: Graph, h: Graph) {
  verifyGraph(h);
  const [want, got] = [interpret(g, { x }).y.data as Float32Array, interpret(h, { x }).y.data as Float32Array];
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 5);
}

describe("reassociateSums", () => {
  it("adds a chain's terms in the order they are made, each Add still writing its own value", () => {
    const g = graph("chain", chain);
    const h = reassociateSums(g, reverse);
    expect(adds(h)).toEqual(["d+c=ab", "ab+b=abc", "abc+a=s"]);
    sameSum(g, h);
  });

  it("leaves a chain already in that order as it is", () => {
    const g = graph("ordered", chain);
    expect(reassociateSums(g, (v) => ({ a: 0, b: 1, c: 2, d: 3 })[v])).toBe(g);
    // Terms made at the same step, or not known, keep their places.
    expect(reassociateSums(g, () => undefined)).toBe(g);
  });

  it("flattens a tree of Adds into one chain", () => {
    const g = graph("tree", [node("Add", ["a", "b"], ["ab"], [], "add1"), node("Add", ["c", "d"], ["cd"], [], "add2"), node("Add", ["ab", "cd"], ["s"], [], "add3")]);
    const h = reassociateSums(g, reverse);
    expect(adds(h)).toEqual(["d+c=ab", "ab+b=cd", "cd+a=s"]);
    sameSum(g, h);
  });

  it("stops at a partial sum another node reads, and at a sum of two terms", () => {
    const shared = [...chain.slice(0, 2), node("Add", ["abc", "d"], ["s"], [], "add3"), node("Relu", ["ab"], ["r"], [], "relu_ab")];
    const g = graph("shared", shared);
    // ab is read by relu_ab too, so the tree under add3 is (ab + c) + d with ab a term; a + b has two terms.
    const h = reassociateSums(g, (v) => ({ a: 4, b: 4, ab: 3, c: 2, d: 1 })[v]);
    expect(adds(h)).toEqual(["a+b=ab", "d+c=abc", "abc+ab=s"]);
    sameSum(g, h);
  });

  it("takes a scaled term as made when its tensor is, and leaves broadcasting Adds alone", () => {
    const weighted = [node("Mul", ["a", "k"], ["ak"], [], "mul"), node("Add", ["ak", "b"], ["ab"], [], "add1"), node("Add", ["ab", "c"], ["s"], [], "add2")];
    const g = graph("weighted", weighted, [tensorProto("k", T.FLOAT, [], { floatData: [0.5] })]);
    // The Mul itself is not in the schedule (fused into the sum): a's step counts.
    const h = reassociateSums(g, (v) => ({ a: 0, b: 2, c: 1 })[v]);
    expect(adds(h)).toEqual(["ak+c=ab", "ab+b=s"]);
    sameSum(g, h);
    const bias = [node("Add", ["a", "bias"], ["ab"], [], "add1"), node("Add", ["ab", "c"], ["s"], [], "add2")];
    const b = graph("bias", bias, [weight("bias", [4, 1, 1])]);
    expect(reassociateSums(b, (v) => ({ a: 2, c: 0 })[v])).toBe(b);
  });
});
