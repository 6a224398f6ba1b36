import { numel } from "../../core/tensor.js";
import type { Graph, Node } from "../ir.js";
import { OPS } from "../ops/index.js";

/** Results larger than this stay computed at run time rather than bloating the weights. */
const MAX_FOLD_ELEMENTS = 1 << 24;

/**
 * Evaluates, with the reference semantics of graph/ops, every node whose inputs are all constants
 * (or, for Shape-like ops, whose input shapes are known) and replaces it by its constant results.
 * This folds shape subgraphs (Shape→Gather→Concat→Reshape) and weight preprocessing alike.
 */
export function foldConstants(g: Graph): Graph {
  const values = new Map(g.values);
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    const def = OPS[n.op] ?? {};
    const ins = n.inputs.map((i) => (i ? values.get(i) : undefined));
    const ready = def.eval && ins.every((v, k) => !n.inputs[k] || (def.shapeOnly ? v?.shape : v?.data));
    const small = n.outputs.every((o) => !o || (values.get(o)?.shape && numel(values.get(o)!.shape!) <= MAX_FOLD_ELEMENTS));
    if (!ready || !small) {
      nodes.push(n);
      continue;
    }
    const tensors = ins.map((v) => (v ? v.data ?? { dtype: v.dtype, shape: v.shape!, data: new Float32Array(0) } : undefined));
    const outs = def.eval!(n, tensors);
    n.outputs.forEach((o, k) => {
      if (o && outs[k]) values.set(o, { name: o, dtype: outs[k].dtype, shape: outs[k].shape, data: outs[k] });
    });
  }
  return { ...g, values, nodes };
}
