import type { Graph, Node } from "../ir.js";
import { selectFusion, type FusionDecision, type FusionOptions } from "./select-fusion.js";

/**
 * Applies a fusion decision: each view becomes a "View" node (an alias of its input's memory, shape
 * in attrs), each concat view a "ConcatView" node (its inputs' memory is its output's), each group
 * one "Fused" node whose body holds its members. The Fused node reads the
 * values its members read from memory and writes the group's output; it sits where the group's
 * last member was, so the node order stays topological.
 */
export function fuse(g: Graph, decision: FusionDecision | FusionOptions = {}): Graph {
  if (!("groups" in decision)) decision = selectFusion(g, decision);
  const viewSet = new Set(decision.views);
  const concatViews = new Set(decision.concatViews);
  const groupAt = new Map<string, (typeof decision.groups)[number]>();
  const member = new Set<string>();
  for (const grp of decision.groups) {
    groupAt.set(grp.members[grp.members.length - 1], grp);
    for (const m of grp.members) member.add(m);
  }
  const byName = new Map(g.nodes.map((n) => [n.name, n]));
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    const grp = groupAt.get(n.name);
    if (grp) {
      const body = grp.members.map((m) => byName.get(m)!);
      const produced = new Set(body.flatMap((b) => b.outputs));
      const inputs = [...new Set(body.flatMap((b) => b.inputs).filter((i) => i && !produced.has(i)))];
      nodes.push({
        name: grp.anchor,
        op: "Fused",
        opset: byName.get(grp.anchor)!.opset,
        inputs,
        outputs: [grp.output],
        attrs: {},
        fused: { body, anchor: grp.anchor, epilogue: grp.epilogue, reason: grp.reason },
      });
    } else if (viewSet.has(n.name)) {
      nodes.push({ name: n.name, op: "View", opset: n.opset, inputs: [n.inputs[0]], outputs: [n.outputs[0]], attrs: { shape: g.values.get(n.outputs[0])!.shape! } });
    } else if (concatViews.has(n.name)) nodes.push({ ...n, op: "ConcatView" });
    else if (!member.has(n.name)) nodes.push(n);
  }
  return { ...g, nodes };
}
