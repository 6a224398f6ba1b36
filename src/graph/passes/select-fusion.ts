import { numel, toNumbers } from "../../core/tensor.js";
import { attrInts, attrNum, attrStr, consumers, type Graph, type Node } from "../ir.js";
import { ELEMENTWISE_OPS } from "../ops/elementwise.js";
import { poolGeometry, windowsInMap } from "../ops/nn.js";
import { reduceAxes } from "../ops/reduce.js";

/**
 * Decides what fuses (the apply step is fuse.ts). Memory-intensive ops never get a kernel of their
 * own when a neighbour can absorb them:
 * 1. views: Reshape-like ops become aliases of their input's memory (no copy);
 * 2. inlining: an elementwise or index-only producer is computed inside each consumer that reads
 *    it, instead of being written and read back, when the rules below say recomputation is cheap;
 * 3. epilogues: an elementwise consumer that is the only reader of a kernel's result is applied to
 *    each result before it is stored (Conv → Clip, MatMul → Add → Gelu, ReduceMean → Sqrt, ...);
 *    A Conv's epilogue may end in a global pooling that is its result's only reader (stitched): each
 *    result is folded into the pooled output on its way out, so the map itself is never stored;
 *    or in a MaxPool that is (banded): the convolution writes its map into cache-sized scratch,
 *    whole or a band of rows at a time (recomputing the rows where neighbouring bands' windows
 *    overlap), and it is pooled while it is in cache (the fused-layer idea: a network's first
 *    convolution and pool otherwise write and read back its largest map);
 * 4. concat views: a Concat that would be a kernel of its own (not inlined into its readers), whose
 *    inputs each occupy one contiguous range of its output (every dim before the axis is 1) and
 *    are written by kernels anyway (a Conv, a pool, or such a kernel's
 *    epilogue) moves nothing: each producer stores straight into its slice, and those inputs are
 *    not inlined into the Concat.
 * The decision is data: one group per kernel, with the reason it was formed.
 */
export interface FusionGroup {
  /** the member whose lowering runs */
  anchor: string;
  /** every member, in graph order (the anchor, producers inlined into it, epilogue members and their inlined producers) */
  members: string[];
  epilogue: string[];
  /** the one value the group writes to memory */
  output: string;
  reason: string;
}

export interface FusionDecision {
  /** nodes that become aliases of their input */
  views: string[];
  /** Concat nodes whose inputs are written into their slices of the output (ConcatView) */
  concatViews: string[];
  groups: FusionGroup[];
}

export const VIEW_OPS = new Set(["Reshape", "Flatten", "Squeeze", "Unsqueeze"]);

/**
 * Whether reduction r can end a Conv's epilogue (the loop layer folds each result into it as it is
 * stored, loop/lower/stitch.ts): a global pool, or a ReduceMean or ReduceMax over every spatial
 * axis (what torchvision's MNASNet exports for its pooling), which computes the same.
 */
export function stitchable(g: Graph, r: Node): boolean {
  if (r.op === "GlobalAveragePool" || r.op === "GlobalMaxPool") return true;
  if (r.op !== "ReduceMean" && r.op !== "ReduceMax") return false;
  const rank = g.values.get(r.inputs[0])!.shape!.length;
  const given = r.inputs[1] ? g.values.get(r.inputs[1])!.data : undefined;
  if (rank < 3 || (r.inputs[1] && !given)) return false;
  const axes = reduceAxes(r, rank, given ? toNumbers(given) : []);
  return !!axes && axes.join() === Array.from({ length: rank - 2 }, (_, i) => i + 2).join();
}

/** Pools that can end a 2-D Conv's epilogue, computed from bands of the convolution's rows. */
export const BANDED_POOLS = new Set(["MaxPool"]);

/** Ops whose value at an index is a read of one input element: inlined at no arithmetic cost. */
const INDEX_OPS: Record<string, (n: Node) => boolean> = {
  Transpose: () => true,
  Slice: () => true,
  Expand: () => true,
  Tile: () => true,
  Gather: () => true,
  Concat: () => true,
  Pad: (n) => attrStr(n, "mode", "constant") === "constant",
};

/** How many times a consumer reads each element of its inputs; inlining multiplies a producer's cost by this. */
const READS_FEW = new Set(["Softmax", "LogSoftmax", "LayerNormalization", "InstanceNormalization"]);
const READS_ONCE = new Set([
  "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSumExp",
  "ReduceSumSquare", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Split",
]);
const reads = (op: string): "once" | "few" | "many" =>
  ELEMENTWISE_OPS[op] || INDEX_OPS[op] || READS_ONCE.has(op) ? "once" : READS_FEW.has(op) ? "few" : "many";

/** Limits that keep inlined expressions small: arithmetic ops per element, consumers sharing a producer. */
const MAX_COST = { once: 24, few: 2, many: 0 };
const MAX_SHARING = 2;

export const isElementwise = (n: Node) => !!ELEMENTWISE_OPS[n.op];
export const isIndexOnly = (n: Node) => !!INDEX_OPS[n.op]?.(n);

export interface FusionOptions {
  /** false: every Concat copies (a CPU/GPU split copies whole tensors between devices, not slices) */
  concatViews?: boolean;
  /** false: no stitched reductions or banded pools (their kernels keep per-thread partial results or scratch, which only the C backend has) */
  stitchReductions?: boolean;
  /**
   * true: fusion for the lowest peak memory rather than the fewest kernels. A kernel that reads
   * two computed tensors holds both until it runs, so joins (elementwise ops that read two or
   * more computed tensors, counting through what is inlined into them, such as the partial sums
   * of an Add chain) are never inlined into their readers, and no epilogue reads a
   * computed tensor besides its kernel's result: the scheduler can then run each join as soon as
   * its inputs exist and free them one by one. A Concat stays inlined: stored, it would need all
   * its inputs at once all the same, and its own buffer besides. And an elementwise op of stored
   * tensors read by a Conv (the Relu of a pre-activation block, whose input other nodes read too)
   * is inlined into it, so it is never stored: the convolution's lowering computes it where it
   * reads its input, once per element where it copies or packs it (a depthwise convolution's
   * padded copy, a 1×1 one's tiles), once per tap where it gathers (im2col), and may still run in
   * place over the tensor it is computed from (conv-in-place).
   */
  memoryFirst?: boolean;
}

/** Whether the op always runs as a kernel of its own: neither a view nor ever inlined. */
const isKernelOp = (n: Node) => !VIEW_OPS.has(n.op) && !ELEMENTWISE_OPS[n.op] && !INDEX_OPS[n.op];

export function selectFusion(g: Graph, opts: FusionOptions = {}): FusionDecision {
  const uses = consumers(g);
  const graphOutputs = new Set(g.outputs);
  const byOutput = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) byOutput.set(o, n);
  const isConst = (v: string) => !!g.values.get(v)?.data;
  const shapeOf = (v: string) => g.values.get(v)!.shape!.join("x");

  const views = g.nodes.filter(
    (n) => VIEW_OPS.has(n.op) && !graphOutputs.has(n.outputs[0]) && !isConst(n.inputs[0]) && !g.inputs.includes(n.outputs[0]),
  );
  const viewSet = new Set(views.map((n) => n.name));

  // 4. Concat views, decided around inlining: their inputs must be written by their producers, not inlined.
  /** Whether v is the result of a kernel, or of an elementwise chain hanging off one that only it reads (an epilogue). */
  const written = (v: string): boolean => {
    const p = byOutput.get(v);
    if (!p || p.outputs.length !== 1) return !!p && isKernelOp(p);
    if (isKernelOp(p)) return true;
    return !!ELEMENTWISE_OPS[p.op] && p.inputs.some((i) => i && !isConst(i) && shapeOf(i) === shapeOf(v) && uses.get(i)?.length === 1 && written(i));
  };
  const placeable = (n: Node): boolean => {
    const out = n.outputs[0];
    const shape = g.values.get(out)!.shape!;
    const axis = (attrNum(n, "axis", 0) + shape.length) % shape.length;
    return (
      n.inputs.length >= 2 &&
      new Set(n.inputs).size === n.inputs.length &&
      !graphOutputs.has(out) &&
      numel(shape.slice(0, axis)) === 1 &&
      n.inputs.every((i) => i && !g.inputs.includes(i) && !graphOutputs.has(i) && !isConst(i) && numel(g.values.get(i)!.shape!) > 0 && written(i))
    );
  };
  const computed = (v: string | undefined) => !!v && !isConst(v) && !g.inputs.includes(v);
  /** The computed tensors n reads from memory, through the producers `inlined` into it. */
  const stored = (n: Node, inlined: Set<string>, acc = new Set<string>()): Set<string> => {
    for (const i of n.inputs) {
      if (i && inlined.has(i)) stored(byOutput.get(i)!, inlined, acc);
      else if (computed(i)) acc.add(i!);
    }
    return acc;
  };
  // 2. Inlining, in graph order so a producer's own inlined inputs are already costed.
  const inlining = (aliases: Set<string>) => {
    const inlined = new Set<string>();
    const cost = new Map<string, number>();
    for (const n of g.nodes) {
      const out = n.outputs[0];
      if (n.outputs.length !== 1 || !out || graphOutputs.has(out) || aliases.has(n.name)) continue;
      const own = isElementwise(n) ? 1 : isIndexOnly(n) ? 0 : undefined;
      if (own === undefined) continue;
      const readers = uses.get(out) ?? [];
      if (opts.memoryFirst && isElementwise(n) && stored(n, inlined).size >= 2) continue;
      if (!readers.length || readers.length > MAX_SHARING || readers.some((r) => aliases.has(r.name))) continue;
      const c = own + n.inputs.reduce((s, i) => s + (inlined.has(i) ? cost.get(i)! : 0), 0);
      // For memory, an op of stored tensors inlined into the Conv reading it (a prologue, see memoryFirst).
      const prologue = (r: Node) => opts.memoryFirst && r.op === "Conv" && r.inputs[0] === out && !r.inputs.slice(1).includes(out) && !n.inputs.some((i) => inlined.has(i));
      const limit = Math.min(...readers.map((r) => (prologue(r) ? MAX_COST.few : MAX_COST[reads(r.op)])));
      if (c > limit) continue;
      inlined.add(out);
      cost.set(out, c);
    }
    return inlined;
  };
  // A Concat inlined into its readers is never stored at all, which beats a view of it: the view's
  // buffer is live whole from its first slice on.
  const copied = inlining(viewSet);
  // A value is a slice of one Concat's buffer at most.
  const sliced = new Set<string>();
  const concatViews: Node[] = [];
  for (const n of g.nodes) {
    if (opts.concatViews === false || n.op !== "Concat" || copied.has(n.outputs[0]) || !placeable(n) || n.inputs.some((i) => sliced.has(i))) continue;
    concatViews.push(n);
    for (const i of n.inputs) sliced.add(i);
  }
  for (const n of concatViews) viewSet.add(n.name);
  const inlined = concatViews.length ? inlining(viewSet) : copied;

  /** Materialized nodes that read `v`, directly or through inlined producers. */
  const effectiveReaders = (v: string, seen = new Set<Node>()): Node[] => {
    for (const r of uses.get(v) ?? []) {
      if (inlined.has(r.outputs[0])) effectiveReaders(r.outputs[0], seen);
      else seen.add(r);
    }
    return [...seen];
  };
  /** Whether every path from v to `to` runs through same-shape elementwise nodes (same index on both ends). */
  const elementwisePath = (v: string, to: Node): boolean =>
    (uses.get(v) ?? []).every(
      (r) => r === to || (inlined.has(r.outputs[0]) && isElementwise(r) && shapeOf(r.outputs[0]) === shapeOf(v) && elementwisePath(r.outputs[0], to)),
    );

  const order = new Map(g.nodes.map((n, i) => [n.name, i]));
  /** Whether e reads, from memory, a value whose kernel comes after `n` in the graph order (n's own epilogue, `own`, aside). */
  const readsLater = (e: Node, n: Node, own: string[] = []): boolean =>
    e.inputs.some((i) => {
      const p = i ? byOutput.get(i) : undefined;
      if (!p || p === n || own.includes(p.name)) return false;
      return inlined.has(i) ? readsLater(p, n, own) : order.get(p.name)! > order.get(n.name)!;
    });

  // 3. Epilogues: chains of elementwise nodes after a kernel that are its result's only readers.
  // An epilogue that reads another kernel's result made later in the graph order goes to that
  // kernel instead: absorbing it here would make the later kernel run first and keep its result
  // alive meanwhile (a chain of partial sums would then hold every part at once).
  const epilogueOf = new Map<string, string[]>();
  const taken = new Set<string>();
  const f32 = (v: string | undefined) => !v || g.values.get(v)!.dtype === "float32";
  /** Whether pool p, reading v (Conv n's result through its epilogue) itself, can be computed from bands of n's rows. */
  const bandable = (n: Node, v: string, p: Node): boolean =>
    n.op === "Conv" && p.inputs[0] === v && BANDED_POOLS.has(p.op) && attrNum(n, "group", 1) === 1 && g.values.get(n.inputs[0])!.shape!.length === 4 &&
    [...n.inputs, ...n.outputs, ...p.inputs].every(f32) && p.outputs.filter(Boolean).length === 1 && attrInts(p, "dilations", [1, 1]).every((d) => d === 1) &&
    windowsInMap(poolGeometry(p, g.values.get(v)!.shape!), g.values.get(v)!.shape!.slice(2));
  const roots = g.nodes.filter((n) => !viewSet.has(n.name) && !n.outputs.every((o) => !o || inlined.has(o)));
  for (const n of roots) {
    if (taken.has(n.name) || n.outputs.filter(Boolean).length !== 1) continue;
    const chain: string[] = [];
    let v = n.outputs[0];
    for (;;) {
      if (graphOutputs.has(v)) break;
      const readers = effectiveReaders(v);
      const e = readers[0];
      if (readers.length !== 1 || !isElementwise(e) || taken.has(e.name) || shapeOf(e.outputs[0]) !== shapeOf(v) || !elementwisePath(v, e) || readsLater(e, n) || (opts.memoryFirst && [...stored(e, inlined)].some((i) => i !== v))) break;
      chain.push(e.name);
      taken.add(e.name);
      v = e.outputs[0];
    }
    const r = effectiveReaders(v);
    const ends = opts.stitchReductions !== false && r.length === 1 && !taken.has(r[0].name) && !graphOutputs.has(v) && elementwisePath(v, r[0]) && !readsLater(r[0], n, chain);
    if (ends && ((n.op === "Conv" && stitchable(g, r[0]) && f32(r[0].outputs[0])) || bandable(n, v, r[0]))) {
      chain.push(r[0].name);
      taken.add(r[0].name);
    }
    if (chain.length) epilogueOf.set(n.name, chain);
  }

  // Groups: each remaining root, with what is inlined into it and its epilogue.
  const nodeByName = new Map(g.nodes.map((n) => [n.name, n]));
  const producersOf = (n: Node, acc: Set<string>) => {
    for (const i of n.inputs) {
      if (!i || !inlined.has(i)) continue;
      const p = byOutput.get(i)!;
      if (!acc.has(p.name)) {
        acc.add(p.name);
        producersOf(p, acc);
      }
    }
  };
  const groups: FusionGroup[] = [];
  for (const n of roots) {
    if (taken.has(n.name)) continue;
    const epilogue = epilogueOf.get(n.name) ?? [];
    const intoAnchor = new Set<string>();
    producersOf(n, intoAnchor);
    const members = new Set([n.name, ...intoAnchor, ...epilogue]);
    for (const m of epilogue) producersOf(nodeByName.get(m)!, members);
    if (members.size === 1) continue;
    const sorted = [...members].sort((a, b) => order.get(a)! - order.get(b)!);
    const ops = (names: string[]) => names.map((m) => nodeByName.get(m)!.op).join(", ");
    const last = epilogue.length ? nodeByName.get(epilogue[epilogue.length - 1])! : n;
    // A pool or reduction that anchors its own group (its producers inlined) ends nothing.
    const ending = last !== n && (stitchable(g, last) || BANDED_POOLS.has(last.op)) ? last.name : undefined;
    const after = sorted.filter((m) => m !== n.name && !intoAnchor.has(m) && m !== ending);
    const reason = [
      `${n.op} kernel`,
      intoAnchor.size ? `inlined producers [${ops(sorted.filter((m) => intoAnchor.has(m)))}]` : "",
      after.length ? `epilogue [${ops(after)}]` : "",
      ending ? `${BANDED_POOLS.has(last.op) ? "banded" : "stitched"} ${last.op}` : "",
    ].filter(Boolean).join(", ");
    groups.push({
      anchor: n.name,
      members: sorted,
      epilogue,
      output: last.outputs[0],
      reason,
    });
  }
  return { views: views.map((n) => n.name), concatViews: concatViews.map((n) => n.name), groups };
}
