import { attrNum, consumers, type Graph, type Node } from "../ir.js";
import { poolGeometry } from "../ops/nn.js";

/**
 * Pools that work channel by channel, so that pooling a channel Concat is concatenating its inputs'
 * pools, and that select-fusion can band into a Conv (the point of pooling the slices).
 */
const PER_CHANNEL = new Set(["MaxPool"]);

/**
 * A pool whose input is a channel Concat read by nothing else pools each of the Concat's inputs
 * instead, and the Concat joins the pooled results. The same arithmetic, but each input's pool can
 * then end its producer's epilogue (a banded pool, see select-fusion), and the Concat, a view or a
 * copy, holds the pooled map rather than the map: SqueezeNet's fire modules before each pool.
 */
export function poolSlices(g: Graph): Graph {
  const uses = consumers(g);
  const byOutput = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  const values = new Map(g.values);
  const replaced = new Map<Node, Node[]>();
  const dropped = new Set<Node>();
  for (const p of g.nodes) {
    const c = byOutput.get(p.inputs[0]);
    const x = c && g.values.get(c.outputs[0]);
    if (!PER_CHANNEL.has(p.op) || p.outputs.slice(1).some(Boolean) || !c || c.op !== "Concat" || !x?.shape || x.shape.length < 3) continue;
    if ((attrNum(c, "axis", 0) + x.shape.length) % x.shape.length !== 1 || uses.get(c.outputs[0])?.length !== 1 || g.outputs.includes(c.outputs[0])) continue;
    if (c.inputs.some((i) => !g.values.get(i)?.shape)) continue;
    const geo = poolGeometry(p, x.shape);
    const pools = c.inputs.map((i, k): Node => {
      let out = `${p.outputs[0]}_slice${k}`;
      while (values.has(out)) out += "_";
      const shape = [x.shape![0], g.values.get(i)!.shape![1], ...geo.out];
      values.set(out, { name: out, dtype: x.dtype, shape });
      return { ...p, name: `${p.name}_slice${k}`, inputs: [i], outputs: [out] };
    });
    values.delete(c.outputs[0]);
    replaced.set(p, [...pools, { ...c, inputs: pools.map((q) => q.outputs[0]), outputs: [p.outputs[0]] }]);
    dropped.add(c);
  }
  if (!replaced.size) return g;
  return { ...g, values, nodes: g.nodes.filter((n) => !dropped.has(n)).flatMap((n) => replaced.get(n) ?? [n]) };
}
