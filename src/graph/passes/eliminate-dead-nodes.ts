import type { Graph, Value } from "../ir.js";

/** Drops nodes none of whose outputs reach a graph output, then values nothing refers to. */
export function eliminateDeadNodes(g: Graph): Graph {
  const live = new Set(g.outputs);
  const kept = [];
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i];
    if (!n.outputs.some((o) => o && live.has(o))) continue;
    kept.push(n);
    for (const x of n.inputs) if (x) live.add(x);
  }
  kept.reverse();
  for (const x of g.inputs) live.add(x);
  const values = new Map<string, Value>();
  for (const [k, v] of g.values) if (live.has(k) || kept.some((n) => n.outputs.includes(k))) values.set(k, v);
  return { ...g, nodes: kept, values };
}
