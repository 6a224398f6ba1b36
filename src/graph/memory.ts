import { DTYPES } from "../core/dtype.js";
import { numel } from "../core/tensor.js";
import { ELEMENTWISE_OPS } from "./ops/elementwise.js";
import { anchorOf, attrNum, isAlias, type Graph, type Node, type Value } from "./ir.js";
import { concatLayout } from "./ops/movement.js";

/** Every arena buffer starts on a 64-byte boundary (a cache line, the widest vector load). */
export const ARENA_ALIGN = 64;

/**
 * The activation-memory view of a graph that the scheduler, the planner and `inspect` share.
 * Kernels are the graph's nodes except Views (aliases, which cost nothing); buffers are the values
 * that live in the arena: written by a kernel, not a graph input, output or constant. A View's
 * readers are readers of the buffer it aliases; a ConcatView's buffer is written by the kernels of
 * its slices, and reading a slice reads that buffer.
 */
export interface MemoryModel {
  kernels: Node[];
  /** kernels each kernel waits for (every value it reads, arena or not) */
  preds: number[][];
  succs: number[][];
  /** a ConcatView's buffer has one producer per slice; it lives from the first of them */
  buffers: { value: string; bytes: number; producers: number[]; readers: number[] }[];
  /** per kernel: the buffers it writes */
  writes: number[][];
  /** per kernel: for its single arena output, the input buffers it may overwrite when they die there, those saving most first */
  inPlace: number[][];
  /** each ConcatView input: the ConcatView's output and the byte offset of its slice there */
  slices: Map<string, [string, number]>;
}

const aligned = (b: number) => Math.max(ARENA_ALIGN, Math.ceil(b / ARENA_ALIGN) * ARENA_ALIGN);
/** A value's bytes in the arena. */
const arenaBytes = (v: Value) => aligned(numel(v.shape!) * DTYPES[v.dtype].bytes);
const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
const elementwise = (n: Node) => !!ELEMENTWISE_OPS[n.op];

/**
 * Whether `n` may write its output over input `v`: each output element is then computed from v's
 * element at the same flat index only, read before that element is stored. True for plain
 * elementwise kernels, for groups made only of elementwise ops, and for a value read only by the
 * epilogue of a fused kernel (a residual Add on a Conv or MatMul result); and for the input of a
 * Conv that convInPlace marked, or the tensor it reads through inlined elementwise ops
 * (convSource), whose lowering reads what it overwrites before it stores there.
 */
function overwritable(g: Graph, n: Node, v: string): boolean {
  const vs = g.values.get(v)!, os = g.values.get(n.outputs[0])!;
  const conv = anchorOf(n);
  const source = conv.op === "Conv" && attrNum(conv, "inPlace", 0) === 1 ? convSource(g, n) : undefined;
  const inPlace = source?.value === v;
  const ownReader = (m: Node) => inPlace && (m === conv || source.prologue.includes(m));
  const readers = n.fused ? n.fused.body.filter((m) => m.inputs.includes(v)) : [n];
  // A 1×1 convolution in place may change the channel count: only it (and its prologue) reads its input then.
  if (!sameShape(vs.shape!, os.shape!) || DTYPES[vs.dtype].bytes !== DTYPES[os.dtype].bytes) return readers.every(ownReader);
  if (!n.fused) return elementwise(n) || inPlace;
  const f = n.fused;
  if (f.body.every(elementwise)) return true;
  return readers.every((m) => (elementwise(m) && f.epilogue.includes(m.name)) || ownReader(m));
}

/**
 * Where the convolution of kernel n reads its input from: the value in memory (`value`) and the
 * elementwise ops inlined between it and the Conv (`prologue`, nearest the Conv first), each of one
 * input that is not a constant, of its own shape and dtype, and read only by the next. Undefined
 * when the kernel computes the input any other way.
 */
export function convSource(g: Graph, n: Node): { value: string; prologue: Node[] } | undefined {
  const conv = anchorOf(n);
  const body = n.fused?.body ?? [];
  const prologue: Node[] = [];
  for (let v = conv.inputs[0], next = conv; ; ) {
    const p = body.find((m) => m.outputs.includes(v));
    if (!p) return { value: v, prologue };
    const from = p.inputs.filter((i) => i && !g.values.get(i)?.data);
    if (!elementwise(p) || from.length !== 1 || !sameShape(g.values.get(from[0])!.shape!, g.values.get(v)!.shape!)) return undefined;
    if (g.values.get(from[0])!.dtype !== g.values.get(v)!.dtype || body.some((m) => m !== next && m.inputs.includes(v))) return undefined;
    prologue.push(p);
    [v, next] = [from[0], p];
  }
}

export function memoryModel(g: Graph): MemoryModel {
  const external = new Set([...g.inputs, ...g.outputs]);
  // A View's output is its input's memory; a ConcatView's inputs are slices of its output's.
  const alias = new Map<string, string>();
  const slices = new Map<string, [string, number]>();
  const root = (v: string): string => (alias.has(v) ? root(alias.get(v)!) : v);
  const kernels: Node[] = [];
  const producer = new Map<string, number>();
  for (const n of g.nodes) {
    if (n.op === "View") alias.set(n.outputs[0], n.inputs[0]);
    else if (n.op === "ConcatView") {
      const { axis, offsets } = concatLayout(n, n.inputs.map((i) => g.values.get(i)!.shape!));
      const out = g.values.get(n.outputs[0])!;
      const inner = numel(out.shape!.slice(axis + 1));
      n.inputs.forEach((i, k) => (alias.set(i, n.outputs[0]), slices.set(i, [n.outputs[0], offsets[k] * inner * DTYPES[out.dtype].bytes])));
    } else {
      for (const o of n.outputs) if (o) producer.set(o, kernels.length);
      kernels.push(n);
    }
  }
  const buffers: MemoryModel["buffers"] = [];
  const bufferOf = new Map<string, number>();
  const writes = kernels.map((n, k) => [
    ...new Set(
      n.outputs
        .filter((o) => o && !external.has(root(o)) && !g.values.get(o)?.data)
        .map((o) => {
          const r = root(o);
          let b = bufferOf.get(r);
          if (b === undefined) {
            const v = g.values.get(r)!;
            b = buffers.length;
            bufferOf.set(r, b);
            buffers.push({ value: r, bytes: arenaBytes(v), producers: [], readers: [] });
          }
          buffers[b].producers.push(k);
          return b;
        }),
    ),
  ]);
  const aliasNode = new Map(g.nodes.filter(isAlias).map((n) => [n.outputs[0], n]));
  /** The kernels whose writes make up v: its producer, or through a ConcatView each slice's. */
  const writers = (v: string): number[] => {
    const viewed = aliasNode.get(v);
    if (viewed) return viewed.inputs.flatMap(writers);
    const p = producer.get(v);
    return p === undefined ? [] : [p];
  };
  const preds = kernels.map((n, k) => {
    const ps = new Set<number>();
    for (const i of n.inputs) {
      if (!i) continue;
      for (const p of writers(i)) if (p !== k) ps.add(p);
      const b = bufferOf.get(root(i));
      if (b !== undefined && !buffers[b].readers.includes(k)) buffers[b].readers.push(k);
    }
    return [...ps];
  });
  const succs = kernels.map(() => [] as number[]);
  preds.forEach((ps, k) => ps.forEach((p) => succs[p].push(k)));
  // A kernel writing a slice of a ConcatView writes where the slice is, never over an input; and an
  // input that is not its whole buffer (a slice, or a View of one) lies at an offset, so nothing is
  // computed over it element for element. Nor is an input of another size (a convolution in place
  // changing the channel count) whose memory the kernel also reads through another value (a View
  // its epilogue broadcasts), at other indices.
  const inPlace = kernels.map((n, k) => {
    if (writes[k].length !== 1 || n.outputs.length !== 1 || slices.has(n.outputs[0])) return [];
    const out = buffers[writes[k][0]];
    const cands = new Set<number>();
    for (const i of n.inputs) {
      const b = i ? bufferOf.get(root(i)) : undefined;
      if (b === undefined || arenaBytes(g.values.get(i)!) !== buffers[b].bytes || !overwritable(g, n, i)) continue;
      if (buffers[b].bytes !== out.bytes && n.inputs.some((j) => j && j !== i && root(j) === root(i))) continue;
      cands.add(b);
    }
    return [...cands].sort((a, b) => Math.min(buffers[b].bytes, out.bytes) - Math.min(buffers[a].bytes, out.bytes));
  });
  return { kernels, preds, succs, buffers, writes, inPlace, slices };
}

/** What running the kernels in `order` costs: live bytes during each step, and which outputs reuse a dying input. */
export interface Simulation {
  peak: number;
  /** live arena bytes while each kernel of the order runs */
  curve: number[];
  /** buffer → [first step, last step] it is live, in order positions */
  life: Map<number, [number, number]>;
  /** output buffer → the input buffer whose memory it takes over */
  reuse: Map<number, number>;
}

/**
 * The input buffer kernel k overwrites, if any: one of its in-place candidates whose other readers
 * have all run (`done`). The scheduler and the planner both decide through this one rule.
 */
export function reusedInput(m: MemoryModel, k: number, done: (k: number) => boolean): number | undefined {
  return m.inPlace[k].find((b) => m.buffers[b].readers.every((r) => r === k || done(r)));
}

/**
 * The bytes kernel k saves at its step by writing over input buffer r: the smaller of the two. A
 * convolution in place that changes the channel count holds the larger one's memory while it runs.
 */
export const savedBy = (m: MemoryModel, k: number, r: number) => Math.min(m.buffers[r].bytes, m.buffers[m.writes[k][0]].bytes);

/**
 * Where kernel k's output may lie against the input buffer r it writes over, in bytes above r's
 * offset: at r's offset; and, when their sizes differ (only a 1×1 convolution in place, of one
 * image, changes the size: see convInPlace) by whole channels, with their ends aligned instead.
 * Either way each output element lies only over input elements of its own pixel, which the kernel
 * packs before it stores there; the choice lets the planner fit the smaller one at either end.
 */
export function alignments(g: Graph, m: MemoryModel, k: number, r: number): number[] {
  const out = m.buffers[m.writes[k][0]], diff = m.buffers[r].bytes - out.bytes;
  const v = g.values.get(out.value)!;
  const channel = numel(v.shape!.slice(2)) * DTYPES[v.dtype].bytes;
  return diff !== 0 && diff % channel === 0 ? [0, diff] : [0];
}

export function simulate(m: MemoryModel, order: number[]): Simulation {
  const pos = new Map(order.map((k, t) => [k, t]));
  const life = new Map<number, [number, number]>();
  for (const [b, buf] of m.buffers.entries()) {
    const start = Math.min(...buf.producers.map((p) => pos.get(p)!));
    life.set(b, [start, Math.max(start, ...buf.readers.map((r) => pos.get(r)!))]);
  }
  const reuse = new Map<number, number>();
  const curve = order.map((k, t) => {
    const r = reusedInput(m, k, (j) => pos.get(j)! < t);
    if (r !== undefined) reuse.set(m.writes[k][0], r);
    let live = 0;
    for (const [b, [s, e]] of life) if (s <= t && t <= e) live += m.buffers[b].bytes;
    return r === undefined ? live : live - savedBy(m, k, r);
  });
  return { peak: Math.max(0, ...curve), curve, life, reuse };
}

/**
 * The order onnxruntime runs a graph in (GraphViewer's default order): a depth-first walk back from
 * the kernels nobody reads, each kernel emitted once all its inputs are, inputs taken highest
 * graph position first (Graph::ReverseDFSFrom with NodeCompare).
 */
export function onnxruntimeOrder(m: MemoryModel): number[] {
  const order: number[] = [];
  const visited = new Set<number>();
  const stack: [number, boolean][] = m.kernels.map((_, k) => k).filter((k) => !m.succs[k].length).map((k) => [k, false]);
  while (stack.length) {
    const [k, leave] = stack.pop()!;
    if (leave) {
      order.push(k);
      continue;
    }
    if (visited.has(k)) continue;
    visited.add(k);
    stack.push([k, true]);
    for (const p of [...m.preds[k]].sort((a, b) => a - b)) stack.push([p, false]);
  }
  return order;
}
