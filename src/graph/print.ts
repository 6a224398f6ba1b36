import { shapeStr } from "../core/tensor.js";
import type { AttrValue, Graph } from "./ir.js";

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
  for (const n of g.nodes) {
    const attrs = Object.entries(n.attrs).map(([k, v]) => `${k}=${attr(v)}`).join(", ");
    const outs = n.outputs.map((o) => (o ? `%${o}: ${ty(o)}` : "_")).join(", ");
    const ins = n.inputs.map((i) => (i ? (g.values.get(i)?.data ? `$${i}` : `%${i}`) : "_")).join(", ");
    lines.push(`  ${outs} = ${n.op}(${ins})${attrs ? ` {${attrs}}` : ""}  // ${n.name}`);
  }
  lines.push(`  return ${g.outputs.map((o) => `%${o}`).join(", ")}`, "}");
  return lines.join("\n") + "\n";
}
