import type { Graph, Node } from "../ir.js";

/**
 * Removes Identity nodes and inference-mode Dropout nodes whose mask nobody reads: their readers
 * read the input instead. A node whose output is a graph output stays (the output needs its copy).
 */
export function eliminateIdentity(g: Graph): Graph {
  const read = new Set(g.nodes.flatMap((n) => n.inputs));
  const rename = new Map<string, string>();
  const resolve = (v: string): string => (rename.has(v) ? resolve(rename.get(v)!) : v);
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    const passThrough = n.op === "Identity" || (n.op === "Dropout" && !(n.outputs[1] && read.has(n.outputs[1])));
    if (passThrough && !g.outputs.includes(n.outputs[0])) {
      rename.set(n.outputs[0], n.inputs[0]);
      continue;
    }
    nodes.push(rename.size ? { ...n, inputs: n.inputs.map((i) => (i ? resolve(i) : i)) } : n);
  }
  return { ...g, nodes };
}
