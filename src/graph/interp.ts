import { EdgecError } from "../core/diag.js";
import type { Tensor } from "../core/tensor.js";
import type { Graph, Node } from "./ir.js";
import { OPS } from "./ops/index.js";

/** Reference evaluator: runs the graph node by node with the ops' JS semantics (tests, folding); a fused node runs its members. */
export function interpret(g: Graph, inputs: Record<string, Tensor>): Record<string, Tensor> {
  const env = new Map<string, Tensor>();
  for (const [k, v] of g.values) if (v.data) env.set(k, v.data);
  for (const i of g.inputs) {
    if (!inputs[i]) throw new EdgecError(`interpret: missing input '${i}'`);
    env.set(i, inputs[i]);
  }
  const run = (n: Node): void => {
    if (n.fused) return n.fused.body.forEach(run);
    const def = OPS[n.op];
    if (!def.eval) throw new EdgecError(`interpret: op ${n.op} (node '${n.name}') has no reference implementation`);
    const ins = n.inputs.map((i) => (i ? env.get(i) : undefined));
    const outs = def.eval(n, ins);
    n.outputs.forEach((o, k) => o && outs[k] && env.set(o, outs[k]));
  };
  g.nodes.forEach(run);
  return Object.fromEntries(g.outputs.map((o) => [o, env.get(o)!]));
}
