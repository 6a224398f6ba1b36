import { EdgecError, located } from "../core/diag.js";
import type { Graph } from "./ir.js";

/**
 * Structural checks run after every pass in tests and before lowering: values are defined before
 * use, written once, and fully typed. The first problem is reported with its node.
 */
export function verifyGraph(g: Graph): void {
  const defined = new Set<string>(g.inputs);
  for (const [k, v] of g.values) if (v.data) defined.add(k);
  const where = (n: { name: string; op: string; opset: number }) => ({ file: g.source, node: n.name, op: n.op, opset: n.opset });
  for (const n of g.nodes) {
    for (const i of n.inputs) {
      if (i && !defined.has(i)) throw new EdgecError(located(where(n), `input '${i}' is used before it is defined`));
    }
    for (const o of n.outputs) {
      if (!o) continue;
      if (defined.has(o)) throw new EdgecError(located(where(n), `output '${o}' is written twice`));
      const v = g.values.get(o);
      if (!v?.shape) throw new EdgecError(located(where(n), `the shape of output '${o}' could not be inferred (an input that sets it is not a constant?); edgec needs static shapes`));
      defined.add(o);
    }
  }
  for (const o of g.outputs) if (!defined.has(o)) throw new EdgecError(`${g.source ?? "graph"}: output '${o}' is never computed`);
}
