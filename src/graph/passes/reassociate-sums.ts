import { consumers, type Graph, type Node } from "../ir.js";
import { ELEMENTWISE_OPS } from "../ops/elementwise.js";

/**
 * A sum written as a tree of Adds, such as an exporter's chain ((a + b) + c) + d, holds each term
 * until the tree reaches it, however early the term was made: a RandWire node summing five earlier
 * nodes in index order keeps a term the schedule made early live until every term before it in the
 * chain is made too.
 * Addition is commutative, and reassociating a sum changes only its rounding (as a blocked dot
 * product does), so the terms may be added in the order they are made instead. `made(v)` is the
 * step of a schedule at which value v exists (undefined: not known); each tree of three terms or
 * more (sumTrees) whose order differs from it becomes a chain with its terms in that order, made first added
 * first, where its root was. A term that is an elementwise op of one value that is not a constant
 * (a weighted sum's Mul), or a chain of such ops, counts as made when that value is: fused into the
 * sum, it runs there.
 * The pipeline schedules the result and keeps it only when the peak drops (see
 * GraphPass.fromSchedule).
 */
export function reassociateSums(g: Graph, made: (v: string) => number | undefined): Graph {
  const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o): [string, Node] => [o, n])));
  const computed = (v: string) => !!v && !g.values.get(v)?.data && !g.inputs.includes(v);
  const when = (v: string): number => {
    const p = producer.get(v);
    const from = p && ELEMENTWISE_OPS[p.op] ? p.inputs.filter(computed) : [];
    return from.length === 1 ? when(from[0]) : (made(v) ?? Infinity);
  };
  const replaced = new Map<Node, Node[]>();
  const dropped = new Set<Node>();
  for (const { root, adds, terms } of sumTrees(g)) {
    const order = terms.map((t, i) => ({ t, i, at: when(t) })).sort((a, b) => a.at - b.at || a.i - b.i);
    const chain = order.every((o, i) => o.i === i) && adds.every((n, i) => n.inputs[0] === (i === adds.length - 1 ? terms[0] : adds[i + 1].outputs[0]));
    if (chain) continue;
    // The same Adds, each still writing its own value, in graph order (the root last).
    const byPlace = [...adds].sort((a, b) => g.nodes.indexOf(a) - g.nodes.indexOf(b));
    let acc = order[0].t;
    replaced.set(
      root,
      byPlace.map((n, k) => {
        const m = { ...n, inputs: [acc, order[k + 1].t] };
        acc = n.outputs[0];
        return m;
      }),
    );
    for (const n of adds) if (n !== root) dropped.add(n);
  }
  if (!replaced.size) return g;
  return { ...g, nodes: g.nodes.flatMap((n) => replaced.get(n) ?? (dropped.has(n) ? [] : [n])) };
}

/**
 * The sums of three terms or more reassociateSums may reorder: each tree of plain Adds (two inputs
 * of the result's shape, no broadcast) whose inner partial sums only the next Add reads, with its
 * Adds from the root down and its terms left to right.
 */
export function sumTrees(g: Graph): { root: Node; adds: Node[]; terms: string[] }[] {
  const uses = consumers(g);
  const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o): [string, Node] => [o, n])));
  const shape = (v: string) => g.values.get(v)?.shape?.join("x");
  const plainAdd = (n: Node | undefined): n is Node =>
    !!n && n.op === "Add" && n.inputs.length === 2 && n.inputs.every((i) => i && shape(i) !== undefined && shape(i) === shape(n.outputs[0]));
  /** An Add whose result only `into`, another plain Add, reads: part of into's tree. */
  const inner = (n: Node | undefined, into: Node): n is Node =>
    plainAdd(n) && plainAdd(into) && !g.outputs.includes(n.outputs[0]) && uses.get(n.outputs[0])?.length === 1 && uses.get(n.outputs[0])![0] === into;
  const trees = [];
  for (const root of g.nodes) {
    if (!plainAdd(root) || (uses.get(root.outputs[0]) ?? []).some((c) => inner(root, c))) continue;
    const adds: Node[] = [];
    const terms: string[] = [];
    const gather = (n: Node) => {
      adds.push(n);
      for (const i of n.inputs) {
        const p = producer.get(i);
        if (inner(p, n)) gather(p);
        else terms.push(i);
      }
    };
    gather(root);
    if (terms.length >= 3) trees.push({ root, adds, terms });
  }
  return trees;
}

/** The step of `scheduled` (kernels in their order) at which each value it computes exists: its kernel's, fused members' values included. */
export function madeIn(scheduled: Graph): (v: string) => number | undefined {
  const at = new Map<string, number>();
  scheduled.nodes.forEach((n, k) => {
    for (const m of n.fused?.body ?? [n]) for (const o of m.outputs) at.set(o, k);
  });
  return (v) => at.get(v);
}
