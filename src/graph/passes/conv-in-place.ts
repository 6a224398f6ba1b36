import { DTYPES } from "../../core/dtype.js";
import { ELEMENTWISE_OPS } from "../ops/elementwise.js";
import { convGeometry } from "../ops/nn.js";
import { attrNum, type Graph, type Node } from "../ir.js";

/**
 * In-place convolution (MCUNet's in-place depthwise convolution, Lin et al. 2020), a rewrite that
 * lets the peak go below the scheduler's optimum: a depthwise convolution, or a 1×1 one with as
 * many output channels as input channels, whose output has its input's shape may write its output
 * over its input when that input dies there, so the pair costs one tensor instead of two. The CPU
 * lowerings make that safe (see dense.ts): a depthwise convolution copies each channel into
 * per-thread scratch before it writes that channel, and a 1×1 convolution packs each tile of
 * pixels, all channels, before it stores the tile's outputs. The mark is the attribute `inPlace` on
 * the Conv (a fused kernel's anchor); memory.ts then lets the kernel take over its input's buffer.
 * The pipeline keeps it only where the peak drops (see GRAPH_PASSES), and of its places (kernels,
 * by name) only those the peak needs.
 */
export function convInPlace(g: Graph, only?: Set<string>): Graph {
  let changed = false;
  const nodes = g.nodes.map((n) => {
    if ((only && !only.has(n.name)) || !fits(g, n)) return n;
    changed = true;
    const mark = (c: Node): Node => ({ ...c, attrs: { ...c.attrs, inPlace: 1 } });
    if (!n.fused) return mark(n);
    return { ...n, fused: { ...n.fused, body: n.fused.body.map((m) => (m.name === n.fused!.anchor ? mark(m) : m)) } };
  });
  return changed ? { ...g, nodes } : g;
}

/** The kernels of g that `marked` (convInPlace's result on g) marks, by name, in graph order. */
export function inPlaceConvs(g: Graph, marked: Graph): string[] {
  const was = new Map(g.nodes.map((n) => [n.name, n]));
  return marked.nodes.filter((n) => was.get(n.name) !== n).map((n) => n.name);
}

/** The Conv a kernel runs: the node itself, or a fused kernel's anchor. */
export const convOf = (n: Node): Node | undefined => (n.op === "Conv" ? n : n.fused?.body.find((m) => m.name === n.fused!.anchor && m.op === "Conv"));

/**
 * The value a kernel's Conv reads its data from: its input, or, through unary elementwise members
 * of the fused kernel before it (a Relu), the value they start from.
 */
export function convSource(n: Node): string | undefined {
  const conv = convOf(n);
  if (!conv) return undefined;
  const made = new Map((n.fused?.body ?? []).map((m) => [m.outputs[0], m]));
  let v = conv.inputs[0];
  for (let m = made.get(v); m; m = made.get(v)) {
    if (!ELEMENTWISE_OPS[m.op] || m.inputs.length !== 1) return undefined;
    v = m.inputs[0];
  }
  return v;
}

/**
 * A float32 2-D depthwise Conv (one filter per channel, more than one channel: a single one goes
 * the way of plain convolutions, whose gathered tiles reach past their own pixels) or 1×1 Conv with as many outputs as input
 * channels, stride 1, constant weights, whose kernel's output has the shape of what it reads, a
 * computed tensor at least 4 columns wide (the depthwise lowering's copy needs a vector of them).
 */
function fits(g: Graph, n: Node): boolean {
  const conv = convOf(n), src = convSource(n);
  if (!conv || !src || n.outputs.length !== 1) return false;
  const x = g.values.get(conv.inputs[0])!, w = g.values.get(conv.inputs[1])!, v = g.values.get(src)!, y = g.values.get(n.outputs[0])!;
  if (v.data || !w.data || conv.inputs.slice(2).some((b) => b && !g.values.get(b)!.data)) return false;
  if (x.shape?.length !== 4 || !w.shape || !v.shape || !y.shape || [x, v, y].some((t) => t.dtype !== "float32")) return false;
  if (!v.shape.every((d, i) => d === y.shape![i]) || v.shape.length !== y.shape.length || DTYPES[v.dtype].bytes !== DTYPES[y.dtype].bytes) return false;
  const [, C, , W] = x.shape;
  const geo = convGeometry(conv, x.shape, w.shape);
  if (W < 4 || !geo.strides.every((s) => s === 1) || geo.out[0] !== x.shape[2] || geo.out[1] !== W) return false;
  const group = attrNum(conv, "group", 1);
  const depthwise = C > 1 && group === C && w.shape[0] === C && w.shape[1] === 1;
  const pointwise = group === 1 && w.shape[0] === C && geo.kernel.every((k) => k === 1) && [...geo.padsBegin, ...geo.padsEnd].every((p) => p === 0);
  return depthwise || pointwise;
}
