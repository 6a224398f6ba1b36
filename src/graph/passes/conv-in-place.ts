import { ELEMENTWISE_OPS } from "../ops/elementwise.js";
import { convGeometry } from "../ops/nn.js";
import { anchorOf, attrNum, type Graph, type Node } from "../ir.js";
import { convSource, memoryModel, reusedInput, savedBy, simulate } from "../memory.js";
import type { Scheduled } from "./schedule-memory.js";

/**
 * In-place convolution (MCUNet's in-place depthwise convolution, Lin et al. 2020), a rewrite that
 * lets the peak go below the scheduler's optimum: a depthwise convolution, or a 1×1 one, may write
 * its output over its input when that input dies there, so the pair costs the larger of the two
 * instead of both. The CPU lowerings make that safe (see dense.ts): a depthwise convolution copies
 * each channel into per-thread scratch before it writes that channel, and a 1×1 convolution packs
 * each tile of pixels, all channels, before it stores the tile's outputs. Those lie at the same
 * pixels of each output channel (NCHW, one image), so where the output overlaps the input, whole
 * channels apart (see `alignments` in memory.ts), they lie over input at pixels packed already.
 * The mark is the attribute `inPlace` on the Conv (a fused kernel's anchor); memory.ts then lets
 * the kernel take over its input's buffer. The pipeline keeps it only where the peak drops (see
 * GRAPH_PASSES), and then only the marks the peak needs (keepNeeded). Only with `channels` does it
 * mark the 1×1 convolutions that change the channel count.
 */
export function convInPlace(g: Graph, o: { threads: number; channels?: boolean }): Graph {
  const viewed = new Map(g.nodes.filter((m) => m.op === "View").map((m) => [m.outputs[0], m.inputs[0]]));
  const root = (v: string): string => (viewed.has(v) ? root(viewed.get(v)!) : v);
  let changed = false;
  const nodes = g.nodes.map((n) => {
    const kind = fits(g, n, o.threads, root);
    if (!kind || (kind === "channels" && !o.channels)) return n;
    changed = true;
    const mark = (c: Node): Node => ({ ...c, attrs: { ...c.attrs, inPlace: 1 } });
    if (!n.fused) return mark(n);
    return { ...n, fused: { ...n.fused, body: n.fused.body.map((m) => (m.name === n.fused!.anchor ? mark(m) : m)) } };
  });
  return changed ? { ...g, nodes } : g;
}

/** Whether kernel n's convolution is marked to run in place. */
export const marked = (n: Node) => attrNum(anchorOf(n), "inPlace", 0) === 1;

/**
 * The scheduled graph with the marks its order's peak does not need taken back, and whether any is
 * left. Unmarked, a kernel changes only its own step (its input dies there either way): the step
 * stays as it is where another input it may overwrite is still free to take (a residual its
 * epilogue adds), or its output took over nothing, and otherwise grows by what taking the input
 * over saved (the smaller of input and output). So a mark comes off wherever its step stays within
 * the peak: the order keeps its peak, and, as marks only ever lower the optimum, an order proven
 * optimal stays so. Exact for the order, with no schedule per mark; another order might need fewer
 * marks.
 */
export function keepNeeded(g: Scheduled): { g: Scheduled; left: boolean } {
  const unmark = (c: Node): Node => ({ ...c, attrs: Object.fromEntries(Object.entries(c.attrs).filter(([key]) => key !== "inPlace")) });
  const without = (drop: (n: Node) => boolean): Graph => ({
    ...g,
    nodes: g.nodes.map((n) => (!drop(n) ? n : n.fused ? { ...n, fused: { ...n.fused, body: n.fused.body.map((b) => (b.name === n.fused!.anchor ? unmark(b) : b)) } } : unmark(n))),
  });
  // Kernel k is step k: the graph's nodes are in the schedule's order, and memoryModel keeps it.
  const m = memoryModel(g), bare = memoryModel(without(marked));
  const sim = simulate(m, m.kernels.map((_, k) => k));
  const drop = new Set(
    m.kernels.filter((n, k) => {
      if (!marked(n) || reusedInput(bare, k, (j) => j < k) !== undefined) return marked(n);
      const r = m.writes[k].length === 1 ? sim.reuse.get(m.writes[k][0]) : undefined;
      return sim.curve[k] + (r === undefined ? 0 : savedBy(m, k, r)) <= sim.peak;
    }),
  );
  const left = m.kernels.some((n) => marked(n) && !drop.has(n));
  if (!drop.size) return { g, left };
  const kept = without((n) => drop.has(n));
  const m2 = memoryModel(kept);
  const after = simulate(m2, m2.kernels.map((_, k) => k));
  if (after.peak !== g.schedule.peakBytes) throw new Error(`internal: taking back unneeded in-place marks moved the peak from ${g.schedule.peakBytes} to ${after.peak} bytes`);
  return { g: { ...kept, schedule: { ...g.schedule, curve: after.curve } }, left };
}

/**
 * Which kind of convolution in place kernel n can run, if any: "same" for a depthwise or 1×1 Conv
 * whose output has its input's shape, "channels" for a 1×1 one of one image changing the channel
 * count. Either way the Conv (float32, 2-D, stride 1, constant weights and bias) reads a computed
 * tensor x (not the graph's input) that the kernel does not compute itself, or only through
 * elementwise ops inlined before it (convSource: the copy or packing computes them), and the
 * kernel's other members are elementwise ops on its result (a SiLU's Sigmoid and Mul; no banded
 * pool or stitched reduction), of which those that read x are its epilogue, which reads x at the
 * output's index (none may when the channels change). A depthwise one also has more than one
 * channel (a single one is lowered as a plain convolution, whose tiles gather past their own
 * pixels), rows at least 4 wide (its copy moves a vector of them at a time), and at least two
 * channels per thread: on a large map its copy, a padded channel per thread, is scratch the
 * convolution would not need otherwise, and must cost well under the tensor it saves.
 */
function fits(g: Graph, n: Node, threads: number, root: (v: string) => string): "same" | "channels" | undefined {
  const conv = anchorOf(n);
  if (conv.op !== "Conv" || n.outputs.length !== 1) return undefined;
  const f = n.fused;
  const source = convSource(g, n);
  if (!source) return undefined;
  const own = (m: Node) => m === conv || source.prologue.includes(m);
  const reads = (m: Node) => m.inputs.includes(source.value);
  if (f && !f.body.every((m) => own(m) || (ELEMENTWISE_OPS[m.op] && (!reads(m) || f.epilogue.includes(m.name))))) return undefined;
  const x = g.values.get(source.value)!, w = g.values.get(conv.inputs[1])!, y = g.values.get(n.outputs[0])!;
  if (x.data || g.inputs.includes(x.name) || !w.data || conv.inputs.slice(2).some((b) => b && !g.values.get(b)!.data)) return undefined;
  if (x.shape?.length !== 4 || !w.shape || !y.shape || [x, w, y].some((t) => t.dtype !== "float32")) return undefined;
  if (y.shape.length !== 4 || !x.shape.every((d, i) => i === 1 || d === y.shape![i])) return undefined;
  const [N, C, H, W] = x.shape;
  const geo = convGeometry(conv, x.shape, w.shape);
  if (!geo.strides.every((s) => s === 1) || geo.out[0] !== H || geo.out[1] !== W) return undefined;
  const group = attrNum(conv, "group", 1);
  const depthwise = C > 1 && group === C && w.shape[0] === C && w.shape[1] === 1 && W >= 4 && C >= 2 * threads;
  const pointwise = group === 1 && geo.kernel.every((k) => k === 1) && [...geo.padsBegin, ...geo.padsEnd].every((p) => p === 0);
  if (depthwise || (pointwise && w.shape[0] === C)) return "same";
  // Nothing else may read x's memory, under its name or a View's (`root`): an epilogue can broadcast a View.
  return pointwise && N === 1 && !f?.body.some((m) => !own(m) && m.inputs.some((v) => v && root(v) === root(x.name))) ? "channels" : undefined;
}
