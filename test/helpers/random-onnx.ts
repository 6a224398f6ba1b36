import { fromNumbers, type Tensor } from "../../src/core/tensor.js";
import type { OnnxNs } from "../../src/frontend/onnx/proto.js";
import type { Node } from "../../src/graph/ir.js";
import { sliceRanges } from "../../src/graph/ops/movement.js";
import { attr, modelBytes, node, T, tensorProto, valueInfo } from "./onnx-builder.js";

/**
 * A seeded generator of small random ONNX graphs (opset 17) built from the ops fusion touches:
 * elementwise ops with broadcasting, Clip, Where, reductions, layout ops, Softmax, and MatMul/Conv
 * with constant weights as anchors (a Conv sometimes followed by a global pool). Graphs fan out (a value read by several nodes) and may return
 * intermediates. Used by test/graph/fuse-random.test.ts.
 */
const MAX_ELEMS = 2048;

/** mulberry32: a tiny deterministic PRNG. */
export function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  return {
    next,
    int,
    uniform: (lo: number, hi: number) => lo + next() * (hi - lo),
    chance: (p: number) => next() < p,
    pick: <X>(xs: readonly X[]): X => xs[Math.floor(next() * xs.length)],
    shuffle: <X>(xs: X[]): X[] => {
      for (let i = xs.length - 1; i > 0; i--) {
        const j = int(0, i);
        [xs[i], xs[j]] = [xs[j], xs[i]];
      }
      return xs;
    },
  };
}
export type Rng = ReturnType<typeof rng>;

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** numpy broadcasting of two shapes; null when incompatible. */
function broadcast(a: number[], b: number[]): number[] | null {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1, y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return null;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** A value of the graph being generated: its static shape and a rough bound on its magnitude. */
interface V {
  name: string;
  shape: number[];
  bound: number;
}

/** One random subgraph; names carry its prefix so several fit in one model. */
export class SubGraph {
  nodes: OnnxNs.INodeProto[] = [];
  inits: OnnxNs.ITensorProto[] = [];
  inputs: { name: string; shape: number[]; data: Float32Array }[] = [];
  pool: V[] = [];
  readers = new Map<string, number>();
  lines: string[] = [];
  private n = 0;

  constructor(
    private r: Rng,
    readonly prefix: string,
  ) {}

  fresh(tag: string) {
    return `${this.prefix}${tag}${this.n++}`;
  }

  input(shape: number[]): V {
    const name = this.fresh("in");
    const data = Float32Array.from({ length: numel(shape) }, () => this.r.uniform(-1, 1));
    this.inputs.push({ name, shape, data });
    this.lines.push(`input ${name} [${shape}]`);
    const v = { name, shape, bound: 1 };
    this.pool.push(v);
    return v;
  }

  constF(shape: number[], gen: () => number): string {
    const name = this.fresh("c");
    const vals = Array.from({ length: numel(shape) }, gen);
    this.inits.push(tensorProto(name, T.FLOAT, shape, { floatData: vals }));
    this.lines.push(`const ${name} [${shape}] = ${vals.length <= 8 ? `[${vals.map((v) => v.toFixed(3))}]` : "..."}`);
    return name;
  }

  constI(vals: number[], shape = [vals.length]): string {
    const name = this.fresh("k");
    this.inits.push(tensorProto(name, T.INT64, shape, { int64Data: vals }));
    this.lines.push(`const ${name} int64 [${vals}]`);
    return name;
  }

  emit(op: string, inputs: string[], shape: number[], bound: number, attrs: OnnxNs.IAttributeProto[] = []): V {
    const out = this.fresh(op.toLowerCase().slice(0, 4));
    this.nodes.push(node(op, inputs, [out], attrs, out));
    for (const i of inputs) if (i) this.readers.set(i, (this.readers.get(i) ?? 0) + 1);
    const a = attrs.map((x) => `${x.name}=${JSON.stringify(x.ints ?? x.i ?? x.f ?? String(x.s))}`).join(" ");
    this.lines.push(`${out} [${shape}] = ${op}(${inputs.join(", ")})${a ? " " + a : ""}`);
    const v = { name: out, shape, bound: Math.min(bound, 1e6) };
    this.pool.push(v);
    return v;
  }
}

const randShape = (r: Rng, maxElems: number): number[] => {
  for (;;) {
    const s = Array.from({ length: r.pick([1, 2, 2, 3, 3, 4, 4, 4]) }, () => r.pick([1, 2, 3, 4, 5, 6, 8]));
    if (numel(s) <= maxElems && numel(s) > 1) return s;
  }
};

/** A shape that broadcasts against `s` without changing the result: [C,1,1], [1], [W], s with 1s, a suffix. */
function broadcastShape(r: Rng, s: number[]): number[] {
  const rank = s.length;
  switch (r.int(0, 5)) {
    case 0:
      return [1];
    case 1:
      return rank ? [s[rank - 1]] : [1];
    case 2:
      return rank >= 3 ? [s[rank - 3], 1, 1] : s.map(() => 1);
    case 3:
      return s.map((d) => (r.chance(0.5) ? 1 : d));
    case 4:
      return s.slice(r.int(0, rank));
    default:
      return [...s];
  }
}

/** The node sliceRanges names in its errors; the generator only asks it for lengths that exist. */
const SLICE: Node = { name: "random slice", op: "Slice", opset: 13, inputs: [], outputs: [], attrs: {} };

/** Adds one random op (1–3 ONNX nodes) reading values of the pool; false when the pick did not fit. */
function addOp(g: SubGraph, r: Rng): boolean {
  const recent = g.pool[g.pool.length - 1];
  const x = r.chance(0.55) ? recent : r.pick(g.pool);
  const s = x.shape;
  const rank = s.length;
  // Large values only go through squashing ops, so float32 rounding stays within the tolerance.
  const kinds = x.bound > 20 ? ["squash"] : ["unary", "unary", "binary", "binary", "binary", "clip", "where", "reduce", "reduce", "layout", "layout", "layout", "layout", "softmax", "matmul", "conv"];
  const kind = r.pick(kinds);
  const operand = (): V => {
    const shape = broadcastShape(r, s);
    const others = g.pool.filter((v) => v !== x && broadcast(v.shape, s) && numel(broadcast(v.shape, s)!) <= MAX_ELEMS);
    const u = r.next();
    if (u < 0.35 && others.length) return r.pick(others);
    if (u < 0.8) return { name: g.constF(shape, () => r.uniform(-1, 1)), shape, bound: 1 };
    return g.input(shape);
  };
  switch (kind) {
    case "squash": {
      const op = r.pick(rank ? ["Tanh", "Sigmoid", "Softmax"] : ["Tanh", "Sigmoid"]);
      g.emit(op, [x.name], s, 1, op === "Softmax" ? [attr.i("axis", r.int(-rank, rank - 1))] : []);
      return true;
    }
    case "unary": {
      const op = r.pick(["Relu", "Sigmoid", "Tanh", "Exp", "Abs", "Neg", "Sqrt"]);
      if (op === "Exp") {
        const b = x.bound > 3 ? g.emit("Tanh", [x.name], s, 1) : x;
        g.emit("Exp", [b.name], s, Math.exp(b.bound));
      } else if (op === "Sqrt") {
        const a = g.emit("Abs", [x.name], s, x.bound);
        const c = g.constF([1], () => r.uniform(0.05, 0.5));
        const p = g.emit("Add", [a.name, c], s, x.bound + 0.5);
        g.emit("Sqrt", [p.name], s, Math.sqrt(p.bound));
      } else g.emit(op, [x.name], s, op === "Sigmoid" || op === "Tanh" ? 1 : x.bound);
      return true;
    }
    case "binary": {
      const op = r.pick(["Add", "Sub", "Mul", "Div", "Max", "Min"]);
      if (op === "Div") {
        const shape = broadcastShape(r, s);
        const c = g.constF(shape, () => r.pick([-1, 1]) * r.uniform(0.5, 2));
        g.emit("Div", [x.name, c], broadcast(s, shape)!, x.bound * 2);
        return true;
      }
      const y = operand();
      const out = broadcast(s, y.shape)!;
      const [a, b] = r.chance(0.3) ? [y, x] : [x, y];
      g.emit(op, [a.name, b.name], out, op === "Mul" ? x.bound * y.bound : x.bound + y.bound);
      return true;
    }
    case "clip": {
      const lo = g.constF([], () => r.uniform(-1, 0));
      const hi = g.constF([], () => r.uniform(0.1, 1));
      const form = r.int(0, 3);
      const ins = form === 0 ? [x.name, lo, hi] : form === 1 ? [x.name, lo] : form === 2 ? [x.name, "", hi] : [x.name];
      g.emit("Clip", ins, s, form === 3 ? x.bound : Math.max(1, x.bound));
      return true;
    }
    case "where": {
      const y = operand();
      const out = broadcast(s, y.shape)!;
      const c = g.emit("Greater", [x.name, y.name], out, 1);
      g.pool.pop(); // a bool value: never an operand of the float ops
      g.emit("Where", [c.name, x.name, y.name], out, Math.max(x.bound, y.bound));
      return true;
    }
    case "reduce": {
      if (!rank) return false;
      const op = r.pick(["ReduceMean", "ReduceSum", "ReduceMax"]);
      const keep = r.int(0, 1);
      const all = r.chance(0.1);
      const axes = all ? [...s.keys()] : r.shuffle([...s.keys()]).slice(0, r.int(1, Math.min(2, rank)));
      const count = numel(axes.map((a) => s[a]));
      if (op === "ReduceSum" && count > 64) return false;
      const out = keep ? s.map((d, i) => (axes.includes(i) ? 1 : d)) : s.filter((_, i) => !axes.includes(i));
      const spelled = axes.map((a) => (r.chance(0.3) ? a - rank : a));
      const attrs = [attr.i("keepdims", keep)];
      // opset 17: ReduceSum takes axes as an input, ReduceMean/ReduceMax as an attribute
      if (op === "ReduceSum") g.emit(op, all ? [x.name] : [x.name, g.constI(spelled)], out, x.bound * count, attrs);
      else g.emit(op, [x.name], out, x.bound, all ? attrs : [...attrs, attr.ints("axes", spelled)]);
      return true;
    }
    case "softmax":
      if (!rank) return false;
      g.emit("Softmax", [x.name], s, 1, [attr.i("axis", r.int(-rank, rank - 1))]);
      return true;
    case "matmul": {
      if (!rank) return false;
      const k = s[rank - 1];
      const n = r.int(1, 12);
      const out = rank === 1 ? [n] : [...s.slice(0, -1), n];
      if (numel(out) > MAX_ELEMS) return false;
      const scale = 1 / Math.sqrt(k);
      if (rank >= 2 && r.chance(0.25)) {
        // constant on the left: W[m, rows] · x
        const m = r.int(1, 8);
        const w = g.constF([m, s[rank - 2]], () => r.uniform(-1, 1) / Math.sqrt(s[rank - 2]));
        g.emit("MatMul", [w, x.name], [...s.slice(0, -2), m, k], x.bound * Math.sqrt(s[rank - 2]));
      } else g.emit("MatMul", [x.name, g.constF([k, n], () => r.uniform(-1, 1) * scale)], out, x.bound * Math.sqrt(k));
      return true;
    }
    case "conv": {
      if (rank !== 3 && rank !== 4) return false;
      const c = s[1];
      const spatial = s.slice(2);
      const depthwise = r.chance(0.25);
      const m = depthwise ? c : r.int(1, 6);
      const kernel = spatial.map((d) => r.int(1, Math.min(3, d + 1)));
      const pads = [...spatial.map(() => r.int(0, 1)), ...spatial.map(() => r.int(0, 1))];
      const strides = spatial.map(() => r.int(1, 2));
      const outSp = spatial.map((d, i) => Math.floor((d + pads[i] + pads[i + spatial.length] - kernel[i]) / strides[i]) + 1);
      if (outSp.some((d) => d < 1) || numel([s[0], m, ...outSp]) > MAX_ELEMS) return false;
      const fanIn = (depthwise ? 1 : c) * numel(kernel);
      const w = g.constF([m, depthwise ? 1 : c, ...kernel], () => r.uniform(-1, 1) / Math.sqrt(fanIn));
      const ins = [x.name, w, ...(r.chance(0.5) ? [g.constF([m], () => r.uniform(-0.5, 0.5))] : [])];
      const attrs = [attr.ints("kernel_shape", kernel), attr.ints("pads", pads), attr.ints("strides", strides), ...(depthwise ? [attr.i("group", c)] : [])];
      const y = g.emit("Conv", ins, [s[0], m, ...outSp], x.bound * Math.sqrt(fanIn) + 0.5, attrs);
      // A global pool of the map, which fusion may stitch into the Conv (through an activation), or
      // a 2-D max pool, which it may band into it (ceil mode only unpadded, so that no window
      // starts in the padding, where runtimes differ).
      if (r.chance(0.3)) {
        const a = r.chance(0.5) ? g.emit(r.pick(["Relu", "Sigmoid"]), [y.name], y.shape, y.bound) : y;
        if (rank === 4 && r.chance(0.5)) {
          const k = outSp.map((d) => r.int(1, Math.min(3, d)));
          const st = outSp.map(() => r.int(1, 2));
          const ceil = r.chance(0.5);
          const p = k.map((kk) => (ceil || kk === 1 ? 0 : r.int(0, 1)));
          const out = outSp.map((d, i) => (ceil ? Math.ceil : Math.floor)((d + 2 * p[i] - k[i]) / st[i]) + 1);
          const attrs = [attr.ints("kernel_shape", k), attr.ints("strides", st), attr.ints("pads", [...p, ...p]), attr.i("ceil_mode", ceil ? 1 : 0)];
          g.emit("MaxPool", [a.name], [s[0], m, ...out], a.bound, attrs);
        } else g.emit(r.pick(["GlobalAveragePool", "GlobalMaxPool"]), [a.name], [s[0], m, ...outSp.map(() => 1)], a.bound);
      }
      return true;
    }
    default:
      return addLayout(g, r, x);
  }
}

function addLayout(g: SubGraph, r: Rng, x: V): boolean {
  const s = x.shape;
  const rank = s.length;
  const op = r.pick(["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Transpose", "Slice", "Slice", "Concat", "Concat", "Pad", "Pad", "Expand"]);
  switch (op) {
    case "Reshape": {
      // a random factorization of the element count, with -1 or 0 spellings now and then
      let left = numel(s);
      const dims: number[] = [];
      while (left > 1 && dims.length < 3) {
        const divisors = [...Array(left).keys()].map((i) => i + 1).filter((d) => left % d === 0 && d <= 16);
        const d = r.pick(divisors);
        dims.push(d);
        left /= d;
      }
      dims.push(left);
      r.shuffle(dims);
      const spelled = dims.map((d, i) => (i < rank && s[i] === d && r.chance(0.2) ? 0 : d));
      const free = r.int(0, dims.length - 1);
      if (r.chance(0.3) && spelled[free] !== 0) spelled[free] = -1;
      g.emit("Reshape", [x.name, g.constI(spelled)], dims, x.bound);
      return true;
    }
    case "Flatten": {
      const axis = r.int(0, rank);
      g.emit("Flatten", [x.name], [numel(s.slice(0, axis)), numel(s.slice(axis))], x.bound, [attr.i("axis", r.chance(0.3) && axis < rank ? axis - rank : axis)]);
      return true;
    }
    case "Squeeze": {
      const ones = [...s.keys()].filter((i) => s[i] === 1);
      if (!ones.length) return false;
      const axes = r.chance(0.3) ? ones : r.shuffle(ones).slice(0, r.int(1, ones.length));
      const ins = r.chance(0.2) ? [x.name] : [x.name, g.constI(axes.map((a) => (r.chance(0.3) ? a - rank : a)))];
      const squeezed = ins.length === 1 ? ones : axes;
      g.emit("Squeeze", ins, s.filter((_, i) => !squeezed.includes(i)), x.bound);
      return true;
    }
    case "Unsqueeze": {
      if (rank >= 5) return false;
      const outRank = rank + r.int(1, Math.min(2, 5 - rank));
      const axes = r.shuffle([...Array(outRank).keys()]).slice(0, outRank - rank);
      const out: number[] = [];
      for (let i = 0, k = 0; i < outRank; i++) out.push(axes.includes(i) ? 1 : s[k++]);
      g.emit("Unsqueeze", [x.name, g.constI(axes.map((a) => (r.chance(0.3) ? a - outRank : a)))], out, x.bound);
      return true;
    }
    case "Transpose": {
      if (rank < 2) return false;
      if (r.chance(0.15)) {
        g.emit("Transpose", [x.name], [...s].reverse(), x.bound);
        return true;
      }
      const perm = r.shuffle([...s.keys()]);
      g.emit("Transpose", [x.name], perm.map((p) => s[p]), x.bound, [attr.ints("perm", perm)]);
      return true;
    }
    case "Slice": {
      if (!rank) return false;
      const axes = r.shuffle([...s.keys()]).slice(0, r.int(1, Math.min(2, rank)));
      const starts: number[] = [], ends: number[] = [], steps: number[] = [];
      const out = [...s];
      for (const a of axes) {
        const d = s[a];
        const step = r.pick([1, 1, 1, 2, -1, -2]);
        let start: number, end: number;
        if (step > 0) {
          start = r.int(0, d - 1);
          end = r.chance(0.2) ? 1000 : r.int(start + 1, d);
        } else {
          start = r.chance(0.2) ? 1000 : r.int(0, d - 1);
          end = r.chance(0.3) ? -1000 : r.int(-d - 1, Math.min(d - 1, start) - 1);
        }
        if (r.chance(0.3) && start < d) start -= d;
        if (r.chance(0.3) && end > 0 && end <= d) end -= d;
        out[a] = sliceRanges(SLICE, [d], [start], [end], [0], [step]).shape[0];
        starts.push(start), ends.push(end), steps.push(step);
      }
      if (out.some((d) => d < 1)) return false;
      const spelledAxes = axes.map((a) => (r.chance(0.3) ? a - rank : a));
      const ins = [x.name, g.constI(starts), g.constI(ends), g.constI(spelledAxes)];
      if (steps.some((t) => t !== 1) || r.chance(0.5)) ins.push(g.constI(steps));
      g.emit("Slice", ins, out, x.bound);
      return true;
    }
    case "Concat": {
      if (!rank) return false;
      const axis = r.int(0, rank - 1);
      const parts: V[] = [x];
      for (let k = r.int(1, 2); k > 0; k--) {
        const same = g.pool.filter((v) => v.shape.length === rank && v.shape.every((d, i) => i === axis || d === s[i]));
        const u = r.next();
        if (u < 0.4) parts.push(r.pick(same));
        else {
          const shape = s.map((d, i) => (i === axis ? r.int(1, 4) : d));
          parts.push(u < 0.8 ? { name: g.constF(shape, () => r.uniform(-1, 1)), shape, bound: 1 } : g.input(shape));
        }
      }
      r.shuffle(parts);
      const out = s.map((d, i) => (i === axis ? parts.reduce((t, p) => t + p.shape[axis], 0) : d));
      if (numel(out) > MAX_ELEMS) return false;
      g.emit("Concat", parts.map((p) => p.name), out, Math.max(...parts.map((p) => p.bound)), [attr.i("axis", r.chance(0.3) ? axis - rank : axis)]);
      return true;
    }
    case "Pad": {
      if (!rank) return false;
      const pads = [...s, ...s].map((d) => (r.chance(0.4) ? 0 : d >= 3 && r.chance(0.1) ? -1 : r.int(0, 2)));
      const out = s.map((d, i) => d + pads[i] + pads[i + rank]);
      if (out.some((d) => d < 1) || numel(out) > MAX_ELEMS) return false;
      const ins = [x.name, g.constI(pads)];
      if (r.chance(0.5)) ins.push(g.constF([], () => r.uniform(-1, 1)));
      g.emit("Pad", ins, out, Math.max(1, x.bound), [attr.s("mode", "constant")]);
      return true;
    }
    default: {
      // Expand: grow size-1 dims, keep others (spelled as 1 or as the dim), maybe add leading dims
      const lead = r.chance(0.4) ? [r.int(2, 3)] : [];
      const target = [...lead, ...s.map((d) => (d === 1 ? r.pick([1, 2, 3, 4]) : r.chance(0.3) ? 1 : d))];
      const out = broadcast(s, target)!;
      if (numel(out) > MAX_ELEMS) return false;
      g.emit("Expand", [x.name, g.constI(target)], out, x.bound);
      return true;
    }
  }
}

/** A random subgraph of 3–12 nodes; its outputs are every value nobody reads plus, sometimes, an intermediate. */
export function randomSubGraph(r: Rng, prefix: string): { g: SubGraph; outputs: string[] } {
  const g = new SubGraph(r, prefix);
  const first = randShape(r, r.chance(0.5) ? 128 : 512);
  // Conv wants [N, C, ...spatial] with few channels
  g.input(r.chance(0.35) ? [r.int(1, 2), r.int(1, 4), r.int(2, 8), r.int(2, 8)] : first);
  const target = r.int(3, 12);
  for (let tries = 0; g.nodes.length < target && tries < 200; tries++) addOp(g, r);
  const produced = new Set(g.nodes.flatMap((n) => n.output!));
  const values = g.pool.filter((v) => produced.has(v.name));
  const outputs = values.filter((v) => !g.readers.get(v.name)).map((v) => v.name);
  const inner = values.filter((v) => g.readers.get(v.name));
  if (inner.length && r.chance(0.3)) outputs.push(r.pick(inner).name);
  g.lines.push(`outputs ${outputs.join(", ")}`);
  return { g, outputs };
}

export interface Case {
  id: number;
  bytes: Uint8Array;
  inputs: Record<string, Tensor>;
  outputs: string[];
  /** printable subgraphs, for failure messages */
  text: Map<string, string>;
}

/** A model of `graphs` independent random subgraphs (one build covers them all). */
export function randomModel(r: Rng, id: number, graphs: number): Case {
  return modelOf(id, Array.from({ length: graphs }, (_, k) => randomSubGraph(r, `m${id}g${k}_`)));
}

/** The model holding the given subgraphs side by side. */
export function modelOf(id: number, subs: { g: SubGraph; outputs: string[] }[]): Case {
  const inputs: Record<string, Tensor> = {};
  const text = new Map<string, string>();
  for (const { g, outputs } of subs) {
    for (const i of g.inputs) inputs[i.name] = fromNumbers("float32", i.shape, i.data);
    for (const o of outputs) text.set(o, g.lines.join("\n"));
  }
  const outputs = subs.flatMap((s) => s.outputs);
  const bytes = modelBytes({
    opset: 17,
    nodes: subs.flatMap((s) => s.g.nodes),
    initializers: subs.flatMap((s) => s.g.inits),
    inputs: subs.flatMap((s) => s.g.inputs.map((i) => valueInfo(i.name, T.FLOAT, i.shape))),
    outputs: outputs.map((o) => valueInfo(o, T.FLOAT)),
  });
  return { id, bytes, inputs, outputs, text };
}
