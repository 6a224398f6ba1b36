import { fromNumbers } from "../../core/tensor.js";
import { attrNum, consumers, type Graph, type Node } from "../ir.js";
import { VIEW_OPS } from "./select-fusion.js";

/**
 * A Split whose every result will be read in place becomes one Slice per result: a Slice is an
 * index-only op, which fuse computes inside each reader (reading the input at an offset along the
 * axis), where the Split, a kernel with several results, copies every slice out first. "Read in
 * place" is select-fusion's rule for inlining an index-only op: not a graph output, read by one or
 * two nodes, none of them a view. Otherwise the Split stays: as Slices it would be a kernel per
 * result instead of one.
 */
export function splitSlices(g: Graph): Graph {
  const uses = consumers(g);
  const values = new Map(g.values);
  const replaced = new Map<Node, Node[]>();
  const inPlace = (v: string) => {
    const readers = uses.get(v) ?? [];
    return !g.outputs.includes(v) && readers.length >= 1 && readers.length <= 2 && readers.every((r) => !VIEW_OPS.has(r.op));
  };
  const constant = (hint: string, v: number) => {
    let name = hint;
    while (values.has(name)) name += "_";
    values.set(name, { name, dtype: "int64", shape: [1], data: fromNumbers("int64", [1], [v]) });
    return name;
  };
  for (const n of g.nodes) {
    const x = g.values.get(n.inputs[0]);
    if (n.op !== "Split" || !x?.shape || !n.outputs.every((o) => o && g.values.get(o)?.shape && inPlace(o))) continue;
    const axis = (attrNum(n, "axis", 0) + x.shape.length) % x.shape.length;
    let start = 0;
    replaced.set(n, n.outputs.map((o, k): Node => {
      const size = g.values.get(o)!.shape![axis];
      const at = `${n.name}_slice${k}`;
      const ins = [n.inputs[0], constant(`${at}_starts`, start), constant(`${at}_ends`, start + size), constant(`${at}_axes`, axis)];
      start += size;
      return { name: at, op: "Slice", opset: Math.max(n.opset, 13), inputs: ins, outputs: [o], attrs: {} };
    }));
  }
  if (!replaced.size) return g;
  return { ...g, values, nodes: g.nodes.flatMap((n) => replaced.get(n) ?? [n]) };
}
