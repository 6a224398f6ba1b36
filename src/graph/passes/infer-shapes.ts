import type { Graph, Value } from "../ir.js";
import { OPS } from "../ops/index.js";

/**
 * Gives every node output a dtype and shape, in node order. A node whose inference needs a constant
 * that is not folded yet (Reshape's shape, Slice's starts, ...) is left for the next round: the
 * driver alternates this pass with foldConstants until neither changes the graph.
 */
export function inferShapes(g: Graph): Graph {
  const values = new Map(g.values);
  for (const n of g.nodes) {
    if (n.outputs.every((o) => !o || values.get(o)?.shape)) continue;
    const ins = n.inputs.map((i) => (i ? values.get(i) : undefined));
    if (ins.some((v, k) => n.inputs[k] && !v?.shape)) continue;
    const outs = OPS[n.op]?.infer(n, ins);
    if (!outs) continue;
    n.outputs.forEach((o, k) => {
      if (!o || !outs[k]) return;
      const v: Value = { ...values.get(o)!, dtype: outs[k].dtype, shape: outs[k].shape };
      values.set(o, v);
    });
  }
  return { ...g, values };
}
