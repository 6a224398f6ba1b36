import { describe, expect, it } from "vitest";
import type { Graph, Node, Value } from "../../src/graph/ir.js";
import { inferShapes } from "../../src/graph/passes/infer-shapes.js";
import { planMemory } from "../../src/graph/passes/plan-memory.js";

const relu = (i: string, o: string): Node => ({ name: o, op: "Relu", opset: 14, inputs: [i], outputs: [o], attrs: {} });
const add = (a: string, b: string, o: string): Node => ({ name: o, op: "Add", opset: 14, inputs: [a, b], outputs: [o], attrs: {} });

function graph(nodes: Node[], shape: number[]): Graph {
  const names = new Set(nodes.flatMap((n) => [...n.inputs, ...n.outputs]));
  const values = new Map<string, Value>([...names].map((n) => [n, { name: n, dtype: "float32" as const, shape: n === "x" ? shape : undefined }]));
  return inferShapes({ name: "g", values, nodes, inputs: ["x"], outputs: [nodes[nodes.length - 1].outputs[0]] });
}

const softmax = (i: string, o: string): Node => ({ name: o, op: "Softmax", opset: 13, inputs: [i], outputs: [o], attrs: { axis: -1 } });

describe("planMemory", () => {
  it("lets an elementwise kernel write over the input that dies in it", () => {
    // x → a → b → c → d → y, all Relu: each one overwrites its input, so one buffer serves all four.
    const g = planMemory(graph([relu("x", "a"), relu("a", "b"), relu("b", "c"), relu("c", "d"), relu("d", "y")], [1, 1000]));
    expect(Object.keys(g.memory.offsets).sort()).toEqual(["a", "b", "c", "d"]);
    expect(new Set(Object.values(g.memory.offsets))).toEqual(new Set([0]));
    expect(g.memory.inPlace).toEqual({ b: "a", c: "b", d: "c" });
    expect(g.memory.arenaBytes).toBe(4032);
    expect(g.memory.lowerBoundBytes).toBe(4032);
  });

  it("never overwrites an input read again later, nor one a kernel reads in a different order", () => {
    // a lives until the final Add; Softmax reads its input several times, so it gets a buffer of its own.
    const g = planMemory(graph([relu("x", "a"), relu("a", "b"), softmax("b", "c"), relu("c", "d"), add("a", "d", "y")], [3, 7]));
    const { offsets, arenaBytes, inPlace } = g.memory;
    expect(inPlace).toEqual({ d: "c" });
    const live: Record<string, [number, number]> = { a: [0, 4], b: [1, 2], c: [2, 4], d: [3, 4] };
    for (const [p, lp] of Object.entries(live))
      for (const [q, lq] of Object.entries(live)) {
        if (p >= q || lp[1] < lq[0] || lq[1] < lp[0] || inPlace[q] === p || inPlace[p] === q) continue;
        expect(Math.abs(offsets[p] - offsets[q])).toBeGreaterThanOrEqual(128);
      }
    for (const off of Object.values(offsets)) expect(off % 64).toBe(0);
    expect(arenaBytes).toBe(3 * 128);
    expect(arenaBytes).toBeGreaterThanOrEqual(g.memory.lowerBoundBytes);
  });

  it("places a kernel's scratch in memory free while it runs, not after the tensors", () => {
    // x → a → b → c → y: a 1 KiB tensor dies at each step. c's kernel asks for 4000 bytes of
    // scratch: a's memory is free then (so is the room past b's), so the arena grows only by the
    // scratch beyond what is live at that step.
    const nodes = [relu("x", "a"), softmax("a", "b"), softmax("b", "c"), relu("c", "y")];
    const g = planMemory(graph(nodes, [1, 256]), new Map([[nodes[2], 4000]]));
    const { offsets, arenaBytes, lowerBoundBytes } = g.memory;
    expect([...g.memory.scratch.keys()]).toEqual([nodes[2]]);
    const scratch = { c: g.memory.scratch.get(nodes[2])! };
    // While c runs, b and c are live: the scratch overlaps neither.
    for (const v of ["b", "c"]) expect(scratch.c >= offsets[v] + 1024 || scratch.c + 4032 <= offsets[v]).toBe(true);
    expect(lowerBoundBytes).toBe(2 * 1024 + 4032);
    expect(arenaBytes).toBe(lowerBoundBytes);
    expect(scratch.c % 64).toBe(0);
  });

  it("keeps inputs and outputs out of the arena", () => {
    const g = planMemory(graph([relu("x", "y")], [4]));
    expect(g.memory.offsets).toEqual({});
    expect(g.memory.arenaBytes).toBe(0);
  });
});
