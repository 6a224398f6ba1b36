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

describe("planMemory", () => {
  it("reuses the buffer of a dead intermediate in a chain", () => {
    // x → a → b → c → d → y: at most two intermediates are alive at once.
    const g = planMemory(graph([relu("x", "a"), relu("a", "b"), relu("b", "c"), relu("c", "d"), relu("d", "y")], [1, 1000]));
    expect(Object.keys(g.memory.offsets).sort()).toEqual(["a", "b", "c", "d"]);
    expect(g.memory.arenaBytes).toBe(2 * 4032);
    expect(g.memory.offsets.a).not.toBe(g.memory.offsets.b);
    expect(g.memory.offsets.a).toBe(g.memory.offsets.c);
  });

  it("never overlaps buffers whose lifetimes intersect, and aligns them to 64 bytes", () => {
    // a lives until the final Add, so it overlaps everything in between.
    const g = planMemory(graph([relu("x", "a"), relu("a", "b"), relu("b", "c"), relu("c", "d"), add("a", "d", "y")], [3, 7]));
    const { offsets, arenaBytes } = g.memory;
    const live: Record<string, [number, number]> = { a: [0, 4], b: [1, 2], c: [2, 3], d: [3, 4] };
    for (const [p, lp] of Object.entries(live))
      for (const [q, lq] of Object.entries(live)) {
        if (p >= q || lp[1] < lq[0] || lq[1] < lp[0]) continue;
        expect(Math.abs(offsets[p] - offsets[q])).toBeGreaterThanOrEqual(128);
      }
    for (const off of Object.values(offsets)) expect(off % 64).toBe(0);
    expect(arenaBytes).toBe(3 * 128);
  });

  it("keeps inputs and outputs out of the arena", () => {
    const g = planMemory(graph([relu("x", "y")], [4]));
    expect(g.memory.offsets).toEqual({});
    expect(g.memory.arenaBytes).toBe(0);
  });
});
