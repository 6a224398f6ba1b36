import type { OnnxNs } from "../../src/frontend/onnx/proto.js";
import { attr, modelBytes, node, T, tensorProto, valueInfo } from "./onnx-builder.js";
import { rng, type Rng } from "./random-onnx.js";

/**
 * Seeded generators of irregularly wired networks, the workload of memory-aware scheduling (issue 5):
 * many tensors can be live at once and branches differ in size, so the execution order decides the
 * peak activation memory. Three families, all opset 13 with one input `x` [1, 3, H, W], a 3×3 conv
 * stem and a GlobalAveragePool head, and seeded random He-scaled float32 weights (finite outputs):
 *
 *  - RandWire (Xie et al. 2019): per stage, a Watts–Strogatz or Erdős–Rényi random graph made a
 *    DAG by node index; each node sums its inputs (weighted by scalar Muls or plain Adds), then
 *    ReLU → depthwise 3×3 → pointwise 1×1 → BatchNormalization. Source nodes read the stage input
 *    (stride 2 and the channel change after the first stage), the stage output averages the sinks.
 *  - DARTS (Liu et al. 2019): normal and reduction cells over the two previous cells' outputs, each
 *    preprocessed by ReLU → 1×1 Conv → BN; 4 intermediate nodes each sum two random ops (sep_conv,
 *    dil_conv, max/avg pool, skip) of earlier states; the cell output concatenates them (Concat axis 1).
 *  - SwiftNet-like (Zhang et al. 2019): cells of 6–12 nodes with random DAG wiring; a node joins its
 *    inputs by Concat or Add, then a 1×1 conv or depthwise 3×3 + 1×1 and ReLU; the cell output
 *    concatenates the loose ends, and a MaxPool halves the map before every second cell.
 *
 * Weights are initializers, so the model holds no Constant nodes and `onnxNodes` is the node count.
 */
export type IrregularFamily = "randwire-ws" | "randwire-er" | "darts" | "swiftnet";

export interface IrregularNet {
  name: string;
  family: IrregularFamily;
  bytes: Uint8Array;
  inputShape: number[];
  onnxNodes: number;
}

/** A feature map [1, c, h, w] of the network being built. */
interface Fm {
  name: string;
  c: number;
  h: number;
  w: number;
}

interface ConvOpts {
  k?: number;
  stride?: number;
  group?: number;
  dilation?: number;
  /** variance of the weights is gain/fanIn: 2 after a ReLU (He), 1 before a linear op */
  gain?: number;
}

class NetBuilder {
  readonly nodes: OnnxNs.INodeProto[] = [];
  readonly inits: OnnxNs.ITensorProto[] = [];
  private n = 0;

  constructor(readonly r: Rng) {}

  private fresh(tag: string): string {
    return `${tag}${this.n++}`;
  }

  private init(shape: number[], gen: () => number): string {
    const name = this.fresh("w");
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, gen);
    this.inits.push(tensorProto(name, T.FLOAT, shape, { rawData: new Uint8Array(data.buffer) }));
    return name;
  }

  /** `out` gives the result's dims only (it is often the input itself); the name is always fresh. */
  private op(type: string, inputs: string[], out: Omit<Fm, "name">, attrs: OnnxNs.IAttributeProto[] = []): Fm {
    const name = this.fresh(type.toLowerCase());
    this.nodes.push(node(type, inputs, [name], attrs, name));
    return { c: out.c, h: out.h, w: out.w, name };
  }

  /** No bias: a BatchNormalization or nothing follows, as in the papers' conv blocks. */
  conv(x: Fm, cout: number, o: ConvOpts = {}): Fm {
    const k = o.k ?? 1, stride = o.stride ?? 1, group = o.group ?? 1, dil = o.dilation ?? 1;
    const pad = (dil * (k - 1)) / 2;
    const fanIn = (x.c / group) * k * k;
    const a = Math.sqrt((3 * (o.gain ?? 2)) / fanIn);
    const w = this.init([cout, x.c / group, k, k], () => this.r.uniform(-a, a));
    const size = (d: number) => Math.floor((d + 2 * pad - dil * (k - 1) - 1) / stride) + 1;
    const attrs = [attr.ints("kernel_shape", [k, k]), attr.ints("strides", [stride, stride]), attr.ints("pads", [pad, pad, pad, pad])];
    if (dil > 1) attrs.push(attr.ints("dilations", [dil, dil]));
    if (group > 1) attrs.push(attr.i("group", group));
    return this.op("Conv", [x.name, w], { c: cout, h: size(x.h), w: size(x.w) }, attrs);
  }

  /** Inference-mode BN with stats near identity, so magnitudes neither vanish nor explode. */
  bn(x: Fm): Fm {
    const p = (lo: number, hi: number) => this.init([x.c], () => this.r.uniform(lo, hi));
    return this.op("BatchNormalization", [x.name, p(0.7, 1.3), p(-0.1, 0.1), p(-0.1, 0.1), p(0.7, 1.3)], x);
  }

  relu = (x: Fm): Fm => this.op("Relu", [x.name], x);
  identity = (x: Fm): Fm => this.op("Identity", [x.name], x);
  gap = (x: Fm): Fm => this.op("GlobalAveragePool", [x.name], { c: x.c, h: 1, w: 1 });

  scale(x: Fm, s: number): Fm {
    return this.op("Mul", [x.name, this.init([], () => s)], x);
  }

  /** A left-leaning Add chain, the way exporters write an n-ary sum. */
  sum(xs: Fm[]): Fm {
    return xs.slice(1).reduce((acc, x) => this.op("Add", [acc.name, x.name], acc), xs[0]);
  }

  concat(xs: Fm[]): Fm {
    if (xs.length === 1) return xs[0];
    return this.op("Concat", xs.map((x) => x.name), { c: xs.reduce((a, x) => a + x.c, 0), h: xs[0].h, w: xs[0].w }, [attr.i("axis", 1)]);
  }

  pool(kind: "MaxPool" | "AveragePool", x: Fm, k: number, stride: number): Fm {
    const pad = k === 3 ? 1 : 0;
    const size = (d: number) => Math.floor((d + 2 * pad - k) / stride) + 1;
    const attrs = [attr.ints("kernel_shape", [k, k]), attr.ints("strides", [stride, stride]), attr.ints("pads", [pad, pad, pad, pad])];
    // DARTS averages over the window's in-bounds pixels only.
    if (kind === "AveragePool") attrs.push(attr.i("count_include_pad", 0));
    return this.op(kind, [x.name], { c: x.c, h: size(x.h), w: size(x.w) }, attrs);
  }

  /**
   * ReLU → depthwise 3×3 → pointwise 1×1 → BN; the depthwise conv carries stride, dilation and
   * `gain` (1 keeps the variance through the pair, lower values undo a sum's growth).
   */
  reluSepBn(x: Fm, cout: number, stride = 1, dilation = 1, gain = 1): Fm {
    const dw = this.conv(this.relu(x), x.c, { k: 3, stride, group: x.c, dilation, gain });
    return this.bn(this.conv(dw, cout));
  }

  stem(inputShape: number[], c: number): Fm {
    const x = { name: "x", c: inputShape[1], h: inputShape[2], w: inputShape[3] };
    return this.bn(this.conv(x, c, { k: 3, gain: 1 }));
  }

  finish(name: string, family: IrregularFamily, inputShape: number[], last: Fm): IrregularNet {
    const y = this.gap(last);
    this.nodes[this.nodes.length - 1].output = ["y"];
    const bytes = modelBytes({
      nodes: this.nodes,
      inputs: [valueInfo("x", T.FLOAT, inputShape)],
      outputs: [valueInfo("y", T.FLOAT, [1, y.c, 1, 1])],
      initializers: this.inits,
      opset: 13,
    });
    return { name, family, bytes, inputShape, onnxNodes: this.nodes.length };
  }
}

// ---------------------------------------------------------------- RandWire

/** Undirected random graphs as edge lists [i, j] with i < j: the DAG orientation is by index. */
function wattsStrogatz(r: Rng, n: number, k: number, p: number): [number, number][] {
  const adj = Array.from({ length: n }, () => new Set<number>());
  const link = (a: number, b: number) => (adj[a].add(b), adj[b].add(a));
  for (let i = 0; i < n; i++) for (let j = 1; j <= k / 2; j++) link(i, (i + j) % n);
  // Rewire each ring edge (i, i+j) with probability p to a random node i is not yet linked to.
  for (let j = 1; j <= k / 2; j++) {
    for (let i = 0; i < n; i++) {
      const old = (i + j) % n;
      if (!r.chance(p) || !adj[i].has(old)) continue;
      const free = Array.from({ length: n }, (_, u) => u).filter((u) => u !== i && !adj[i].has(u));
      if (!free.length) continue;
      adj[i].delete(old), adj[old].delete(i);
      link(i, r.pick(free));
    }
  }
  return adj.flatMap((s, i) => [...s].filter((j) => j > i).map((j): [number, number] => [i, j]));
}

function erdosRenyi(r: Rng, n: number, p: number): [number, number][] {
  const edges: [number, number][] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (r.chance(p)) edges.push([i, j]);
  return edges;
}

export interface RandWireParams {
  graph: "WS" | "ER";
  /** nodes per stage, one entry per stage */
  nodes: number[];
  /** WS: each node's ring neighbours (even) */
  k?: number;
  /** WS: rewiring probability; ER: edge probability */
  p: number;
  /** channels of the first stage; each later stage doubles them and halves the map */
  channels: number;
  hw: number;
  /** scalar-weighted sums (Mul then Add) instead of plain Add chains */
  weighted: boolean;
}

function randWireStage(b: NetBuilder, input: Fm, n: number, edges: [number, number][], cout: number, stride: number, weighted: boolean): Fm {
  const preds = Array.from({ length: n }, () => [] as number[]);
  const hasSucc = new Array<boolean>(n).fill(false);
  for (const [i, j] of edges) preds[j].push(i), (hasSucc[i] = true);
  const outs: Fm[] = [];
  for (let v = 0; v < n; v++) {
    if (!preds[v].length) {
      outs.push(b.reluSepBn(input, cout, stride));
      continue;
    }
    const ins = preds[v].map((u) => outs[u]);
    const d = ins.length;
    // Sums of d inputs are scaled by about 1/√d (in the Muls or in the depthwise weights) to keep unit variance.
    const agg = weighted && d > 1 ? b.sum(ins.map((x) => b.scale(x, b.r.uniform(0.6, 1.4) / Math.sqrt(d)))) : b.sum(ins);
    outs.push(b.reluSepBn(agg, cout, 1, 1, weighted ? 1 : 1 / d));
  }
  const sinks = outs.filter((_, v) => !hasSucc[v]);
  return sinks.length > 1 ? b.scale(b.sum(sinks), 1 / sinks.length) : sinks[0];
}

export function randWire(seed: number, p: RandWireParams): IrregularNet {
  const b = new NetBuilder(rng(seed));
  const inputShape = [1, 3, p.hw, p.hw];
  let x = b.stem(inputShape, p.channels);
  p.nodes.forEach((n, s) => {
    const edges = p.graph === "WS" ? wattsStrogatz(b.r, n, p.k ?? 4, p.p) : erdosRenyi(b.r, n, p.p);
    x = randWireStage(b, x, n, edges, p.channels << s, s ? 2 : 1, p.weighted);
  });
  const name = `${p.graph.toLowerCase()}-${p.nodes.join("x")}${p.graph === "WS" ? `-k${p.k ?? 4}` : ""}-p${p.p}-c${p.channels}-${p.hw}px-s${seed}`;
  return b.finish(name, p.graph === "WS" ? "randwire-ws" : "randwire-er", inputShape, x);
}

// ---------------------------------------------------------------- DARTS

const DARTS_OPS = ["sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3", "avg_pool_3x3", "skip_connect"] as const;
type DartsOp = (typeof DARTS_OPS)[number];
/** Per intermediate node: two (op, input state) pairs; states 0 and 1 are the preprocessed inputs. */
type Genotype = [DartsOp, number, DartsOp, number][];

function randomGenotype(r: Rng, steps: number): Genotype {
  return Array.from({ length: steps }, (_, i) => {
    const [a, c] = r.shuffle(Array.from({ length: i + 2 }, (_, j) => j));
    return [r.pick(DARTS_OPS), a, r.pick(DARTS_OPS), c];
  });
}

function dartsOp(b: NetBuilder, op: DartsOp, x: Fm, stride: number): Fm {
  switch (op) {
    case "sep_conv_3x3":
      return b.reluSepBn(b.reluSepBn(x, x.c, stride), x.c);
    case "dil_conv_3x3":
      return b.reluSepBn(x, x.c, stride, 2);
    case "max_pool_3x3":
      return b.pool("MaxPool", x, 3, stride);
    case "avg_pool_3x3":
      return b.pool("AveragePool", x, 3, stride);
    case "skip_connect":
      // DARTS's FactorizedReduce, simplified to one strided 1×1 conv.
      return stride === 1 ? b.identity(x) : b.bn(b.conv(b.relu(x), x.c, { stride }));
  }
}

export interface DartsParams {
  /** "N" normal or "R" reduction, in order */
  cells: string;
  channels: number;
  hw: number;
  steps?: number;
}

export function darts(seed: number, p: DartsParams): IrregularNet {
  const b = new NetBuilder(rng(seed));
  const steps = p.steps ?? 4;
  const genotype = { N: randomGenotype(b.r, steps), R: randomGenotype(b.r, steps) };
  const inputShape = [1, 3, p.hw, p.hw];
  const stem = b.stem(inputShape, 3 * p.channels);
  let [s0, s1] = [stem, stem];
  let c = p.channels;
  for (const kind of p.cells) {
    if (kind !== "N" && kind !== "R") throw new Error(`darts: cell kind '${kind}' is not N or R`);
    const reduce = kind === "R";
    if (reduce) c *= 2;
    // The previous cell may have halved the map: s0 then needs a strided preprocessing conv.
    const pre = (x: Fm) => b.bn(b.conv(b.relu(x), c, { stride: x.h / s1.h }));
    const states = [pre(s0), pre(s1)];
    for (const [op1, in1, op2, in2] of genotype[kind]) {
      const stride = (i: number) => (reduce && i < 2 ? 2 : 1);
      states.push(b.sum([dartsOp(b, op1, states[in1], stride(in1)), dartsOp(b, op2, states[in2], stride(in2))]));
    }
    [s0, s1] = [s1, b.concat(states.slice(2))];
  }
  return b.finish(`darts-${p.cells}-c${p.channels}-${p.hw}px-s${seed}`, "darts", inputShape, s1);
}

// ---------------------------------------------------------------- SwiftNet

export interface SwiftNetParams {
  cells: number;
  /** node count range of a cell */
  minNodes: number;
  maxNodes: number;
  channels: number;
  hw: number;
}

/** One cell: node i reads 1–3 earlier values (the cell input is value 0), recent ones more likely. */
function swiftCell(b: NetBuilder, input: Fm, m: number, c: number): Fm {
  const r = b.r;
  const vals = [input];
  const used = [false];
  for (let i = 0; i < m; i++) {
    const want = Math.min(vals.length, r.pick([1, 2, 2, 3]));
    const picked = new Set<number>();
    while (picked.size < want) picked.add(r.chance(0.5) ? vals.length - 1 - Math.min(r.int(0, 2), vals.length - 1) : r.int(0, vals.length - 1));
    const ins = [...picked].sort((x, y) => x - y).map((j) => ((used[j] = true), vals[j]));
    const add = ins.length > 1 && ins.every((x) => x.c === ins[0].c) && r.chance(0.6);
    const joined = add ? b.sum(ins) : b.concat(ins);
    const cout = r.pick([c / 2, c, c, 2 * c]);
    // A sum of d inputs has about d times their variance; the conv weights take it back.
    const gain = add ? 2 / ins.length : 2;
    const conv = r.chance(0.5) ? b.conv(joined, cout, { gain }) : b.conv(b.conv(joined, joined.c, { k: 3, group: joined.c, gain: gain / 2 }), cout);
    vals.push(b.relu(conv));
    used.push(false);
  }
  return b.concat(vals.filter((_, j) => j > 0 && !used[j]));
}

export function swiftNet(seed: number, p: SwiftNetParams): IrregularNet {
  const b = new NetBuilder(rng(seed));
  const inputShape = [1, 3, p.hw, p.hw];
  let x = b.relu(b.stem(inputShape, p.channels));
  let c = p.channels;
  for (let i = 0; i < p.cells; i++) {
    // Every second cell works on a halved map with doubled channels (up to 4× the first cell's).
    if (i > 0 && i % 2 === 0) {
      x = b.pool("MaxPool", x, 2, 2);
      c = Math.min(2 * c, 4 * p.channels);
    }
    x = swiftCell(b, x, b.r.int(p.minNodes, p.maxNodes), c);
  }
  return b.finish(`swiftnet-${p.cells}x${p.minNodes}-${p.maxNodes}-c${p.channels}-${p.hw}px-s${seed}`, "swiftnet", inputShape, x);
}

// ---------------------------------------------------------------- the suite

const ws = (seed: number, nodes: number[], k: number, p: number, channels: number, hw: number, weighted = true) =>
  randWire(seed, { graph: "WS", nodes, k, p, channels, hw, weighted });
const er = (seed: number, nodes: number[], p: number, channels: number, hw: number, weighted = true) =>
  randWire(seed, { graph: "ER", nodes, p, channels, hw, weighted });
const cells = (seed: number, kinds: string, channels: number, hw: number) => darts(seed, { cells: kinds, channels, hw });
const swift = (seed: number, n: number, minNodes: number, maxNodes: number, channels: number, hw: number) =>
  swiftNet(seed, { cells: n, minNodes, maxNodes, channels, hw });

/**
 * The fixed benchmark set of issue 5: every family, from 16 to about 300 ONNX nodes. The
 * factories are listed rather than built so that a test can rebuild any entry and compare bytes.
 */
export const IRREGULAR_FACTORIES: (() => IrregularNet)[] = [
  () => er(101, [3], 1, 8, 16, false),
  () => er(102, [4], 0.4, 8, 16),
  () => er(103, [6], 0.3, 16, 16, false),
  () => er(104, [10], 0.25, 8, 32),
  () => er(105, [8, 8], 0.3, 8, 32, false),
  () => er(106, [16, 16], 0.2, 8, 32),
  () => er(107, [32], 0.15, 16, 16, false),
  () => er(108, [12, 12, 12], 0.2, 8, 32),
  () => er(109, [16, 16, 16], 0.2, 8, 32, false),
  () => ws(201, [4], 2, 0.75, 8, 16),
  () => ws(202, [6], 2, 0.5, 8, 16, false),
  () => ws(203, [8], 4, 0.75, 16, 16),
  () => ws(204, [12], 4, 0.75, 8, 32, false),
  () => ws(205, [8, 8], 4, 0.75, 8, 32),
  () => ws(206, [16, 16], 4, 0.75, 8, 32, false),
  () => ws(207, [32], 4, 0.75, 16, 16),
  () => ws(208, [12, 12, 12], 4, 0.75, 8, 32, false),
  () => ws(209, [14, 14, 14], 4, 0.75, 8, 32),
  () => ws(210, [20, 20, 20], 4, 0.5, 8, 32, false),
  () => cells(301, "N", 8, 16),
  () => cells(302, "R", 8, 16),
  () => cells(303, "NR", 8, 16),
  () => cells(304, "NRN", 8, 32),
  () => cells(305, "NNRN", 8, 32),
  () => cells(306, "NRNRN", 8, 32),
  () => cells(307, "NNRNNR", 8, 32),
  () => cells(308, "NNRNNRN", 8, 32),
  () => swift(401, 1, 6, 6, 8, 16),
  () => swift(402, 1, 9, 10, 8, 16),
  () => swift(403, 1, 12, 12, 16, 16),
  () => swift(404, 2, 6, 8, 8, 32),
  () => swift(405, 2, 10, 12, 8, 32),
  () => swift(406, 3, 8, 12, 8, 32),
  () => swift(407, 4, 8, 12, 8, 32),
  () => swift(408, 6, 8, 12, 8, 32),
  () => swift(409, 8, 10, 12, 8, 32),
];

export const IRREGULAR_SUITE: IrregularNet[] = IRREGULAR_FACTORIES.map((make) => make());
