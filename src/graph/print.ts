import { shapeStr } from "../core/tensor.js";
import type { AttrValue, Graph, Node } from "./ir.js";

const attr = (a: AttrValue): string =>
  Array.isArray(a) ? `[${a.join(",")}]` : typeof a === "object" ? `tensor<${a.dtype}${shapeStr(a.shape)}>` : JSON.stringify(a);

/** Text form of the graph IR, one node a line; what --dump-ir prints for graph passes. */
export function printGraph(g: Graph): string {
  const ty = (n: string) => {
    const v = g.values.get(n);
    return v ? `${v.dtype}${shapeStr(v.shape)}` : "?";
  };
  const lines = [`graph ${g.name}(${g.inputs.map((i) => `%${i}: ${ty(i)}`).join(", ")}) {`];
  const consts = [...g.values.values()].filter((v) => v.data);
  lines.push(`  // ${consts.length} constants`);
  const line = (n: Node, indent: string) => {
    const attrs = Object.entries(n.attrs).map(([k, v]) => `${k}=${attr(v)}`).join(", ");
    const outs = n.outputs.map((o) => (o ? `%${o}: ${ty(o)}` : "_")).join(", ");
    const ins = n.inputs.map((i) => (i ? (g.values.get(i)?.data ? `$${i}` : `%${i}`) : "_")).join(", ");
    lines.push(`${indent}${outs} = ${n.op}(${ins})${attrs ? ` {${attrs}}` : ""}  // ${n.fused ? n.fused.reason : n.name}`);
    if (n.fused) {
      lines.push(`${indent}  {`);
      for (const m of n.fused.body) line(m, `${indent}    `);
      lines.push(`${indent}  }`);
    }
  };
  for (const n of g.nodes) line(n, "  ");
  lines.push(`  return ${g.outputs.map((o) => `%${o}`).join(", ")}`, "}");
  return lines.join("\n") + "\n";
}
