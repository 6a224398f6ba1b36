import { numel, type Tensor } from "../../core/tensor.js";
import { attrNum, consumers, type Graph, type Node, type Value } from "../ir.js";
import { ELEMENTWISE_OPS } from "../ops/elementwise.js";
import { eliminateDeadNodes } from "./eliminate-dead-nodes.js";

/** One way the Concat's result reaches a convolution: through unary elementwise ops. */
interface Path {
  chain: Node[];
  conv: Node;
}

/**
 * SERENITY's graph rewriting, which lets the scheduler go below the optimum of the graph as given.
 * A channel Concat feeding convolutions (possibly through unary elementwise ops such as Relu) must
 * hold all its inputs and its whole result at once. Instead, each input slice is convolved alone:
 * - Conv (group 1): partial convolutions over each input's channel slice of the weights, summed
 *   (the Add becomes the next partial convolution's epilogue and writes over the running sum);
 * - depthwise Conv: one depthwise convolution per slice, concatenated.
 * Each slice can then be consumed as soon as it is made. The pipeline keeps the rewrite only when
 * the scheduler reports a lower peak with it, and of its Concats (`only`, by name) only those the
 * peak needs (see rewrittenConcats).
 */
export function rewriteConcat(g: Graph, only?: Set<string>): Graph {
  const uses = consumers(g);
  const values = new Map(g.values);
  const replaced = new Map<Node, Node[]>();
  const val = (v: string) => g.values.get(v)!;
  const unary = (n: Node) =>
    !!ELEMENTWISE_OPS[n.op] && n.inputs.slice(1).every((i) => !i || (val(i).data && numel(val(i).shape!) === 1)) && val(n.outputs[0]).dtype === val(n.inputs[0]).dtype;
  const paths = (v: string, chain: Node[]): Path[] | undefined => {
    if (g.outputs.includes(v)) return undefined;
    const found: Path[] = [];
    for (const c of uses.get(v) ?? []) {
      if (c.op === "Conv" && c.inputs[0] === v && !c.inputs.slice(1).includes(v) && slicable(g, c)) found.push({ chain, conv: c });
      else if (unary(c) && c.inputs[0] === v && !c.inputs.slice(1).includes(v)) {
        const more = paths(c.outputs[0], [...chain, c]);
        if (!more) return undefined;
        found.push(...more);
      } else return undefined;
    }
    return found;
  };
  for (const cat of g.nodes) {
    if (only && !only.has(cat.name)) continue;
    const shape = val(cat.outputs[0]).shape!;
    if (cat.op !== "Concat" || shape.length !== 4 || cat.inputs.length < 2 || (attrNum(cat, "axis", 0) + 4) % 4 !== 1) continue;
    if (cat.inputs.some((i) => !i || val(i).data || !val(i).shape![1])) continue;
    const found = paths(cat.outputs[0], []);
    if (!found?.length || found.some((p) => replaced.has(p.conv))) continue;
    for (const p of found) replaced.set(p.conv, split(g, values, cat, p));
  }
  if (!replaced.size) return g;
  return eliminateDeadNodes({ ...g, nodes: g.nodes.flatMap((n) => replaced.get(n) ?? [n]), values });
}

/** The Concats of g that `rewritten` (rewriteConcat's result on g) rewrote, by name, in graph order. */
export function rewrittenConcats(g: Graph, rewritten: Graph): string[] {
  const kept = new Set(rewritten.nodes.map((n) => n.name));
  return g.nodes.filter((n) => n.op === "Concat" && !kept.has(n.name)).map((n) => n.name);
}

const isDepthwise = (g: Graph, c: Node) => {
  const cin = g.values.get(c.inputs[0])!.shape![1];
  return cin > 1 && attrNum(c, "group", 1) === cin && g.values.get(c.inputs[1])!.shape![1] === 1;
};

/** A float32 2-D Conv with constant weights and bias, plain or depthwise. */
function slicable(g: Graph, c: Node): boolean {
  const w = g.values.get(c.inputs[1])?.data;
  const b = c.inputs[2] ? g.values.get(c.inputs[2])?.data : undefined;
  if (!w || w.dtype !== "float32" || w.shape.length !== 4 || (c.inputs[2] && !b)) return false;
  return attrNum(c, "group", 1) === 1 || isDepthwise(g, c);
}

/** Rows [from, to) of axis `axis` (0 or 1) of a constant. */
function sliceAxis(t: Tensor, axis: 0 | 1, from: number, to: number): Tensor {
  const inner = numel(t.shape.slice(axis + 1));
  const outer = numel(t.shape.slice(0, axis));
  const n = t.shape[axis];
  const data = new Float32Array(outer * (to - from) * inner);
  for (let o = 0; o < outer; o++) data.set(t.data.subarray((o * n + from) * inner, (o * n + to) * inner) as Float32Array, o * (to - from) * inner);
  const shape = [...t.shape];
  shape[axis] = to - from;
  return { dtype: t.dtype, shape, data };
}

/** The nodes that replace `p.conv`: per input slice, the chain and a partial convolution. */
function split(g: Graph, values: Map<string, Value>, cat: Node, p: Path): Node[] {
  const conv = p.conv;
  const out = g.values.get(conv.outputs[0])!;
  const w = g.values.get(conv.inputs[1])!.data!;
  const bias = conv.inputs[2] ? g.values.get(conv.inputs[2])!.data! : undefined;
  const depthwise = isDepthwise(g, conv);
  const mult = depthwise ? w.shape[0] / g.values.get(conv.inputs[0])!.shape![1] : 1;
  const nodes: Node[] = [];
  const add = (name: string, v: Omit<Value, "name">) => {
    values.set(name, { name, ...v });
    return name;
  };
  const parts: string[] = [];
  let channel = 0;
  cat.inputs.forEach((x, i) => {
    const xv = g.values.get(x)!;
    const c = xv.shape![1];
    let u = x;
    for (const m of p.chain) {
      const o = add(`${m.outputs[0]}/${conv.name}/s${i}`, { dtype: xv.dtype, shape: xv.shape });
      nodes.push({ ...m, name: `${m.name}/${conv.name}/s${i}`, inputs: [u, ...m.inputs.slice(1)], outputs: [o] });
      u = o;
    }
    const rows: [number, number] = depthwise ? [channel * mult, (channel + c) * mult] : [0, w.shape[0]];
    const wi = add(`${conv.inputs[1]}/s${i}`, { dtype: "float32", shape: undefined, data: depthwise ? sliceAxis(w, 0, ...rows) : sliceAxis(w, 1, channel, channel + c) });
    values.get(wi)!.shape = values.get(wi)!.data!.shape;
    const bi = !bias ? "" : depthwise ? add(`${conv.inputs[2]}/s${i}`, { dtype: "float32", shape: [rows[1] - rows[0]], data: sliceAxis(bias, 0, ...rows) }) : i === 0 ? conv.inputs[2] : "";
    const partShape = depthwise ? [out.shape![0], rows[1] - rows[0], ...out.shape!.slice(2)] : out.shape;
    const part = add(`${conv.outputs[0]}/s${i}`, { dtype: out.dtype, shape: partShape });
    nodes.push({ ...conv, name: `${conv.name}/s${i}`, inputs: [u, wi, bi], outputs: [part], attrs: { ...conv.attrs, group: depthwise ? c : 1 } });
    parts.push(part);
    channel += c;
  });
  if (depthwise) {
    nodes.push({ name: `${conv.name}/concat`, op: "Concat", opset: cat.opset, inputs: parts, outputs: [conv.outputs[0]], attrs: { axis: 1 } });
    return nodes;
  }
  let acc = parts[0];
  parts.slice(1).forEach((part, i) => {
    const sum = i === parts.length - 2 ? conv.outputs[0] : add(`${conv.outputs[0]}/sum${i + 1}`, { dtype: out.dtype, shape: out.shape });
    nodes.push({ name: `${conv.name}/add${i + 1}`, op: "Add", opset: 14, inputs: [acc, part], outputs: [sum], attrs: {} });
    acc = sum;
  });
  return nodes;
}
