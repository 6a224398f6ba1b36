import type { DType } from "../core/dtype.js";
import type { Tensor } from "../core/tensor.js";

/**
 * Graph IR: a static-shape dataflow graph. Values are named; a value with `data` is a constant
 * (weights, folded results). Nodes carry canonical ops: the ONNX frontend has already turned each
 * opset's variant into one form (attribute axes become constant inputs, Upsample becomes Resize, ...),
 * so passes and lowerings never look at opsets. Passes return new graphs and never mutate their input.
 */
export type AttrValue = number | string | number[] | string[] | Tensor;

export interface Value {
  name: string;
  dtype: DType;
  /** undefined until shape inference has run */
  shape?: number[];
  data?: Tensor;
}

/** A fused kernel's content (see passes/fuse.ts). */
export interface Fusion {
  /** the member nodes, in execution order */
  body: Node[];
  /** the member whose kernel runs; the other members are computed inside it */
  anchor: string;
  /** members applied to the anchor's result on its way to memory, in order */
  epilogue: string[];
  /** why these nodes were fused, for dumps and inspect */
  reason: string;
}

export interface Node {
  name: string;
  op: string;
  /** The ONNX opset the node came from; for messages only. */
  opset: number;
  /** Value names; "" marks an absent optional input. */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
  /** set on op "Fused" nodes */
  fused?: Fusion;
}

export interface Graph {
  name: string;
  values: Map<string, Value>;
  nodes: Node[];
  inputs: string[];
  outputs: string[];
  /** Where the graph came from, for error messages. */
  source?: string;
}

/**
 * Nodes that fusion turns into aliases of memory, not kernels: a "View" is its input's memory seen
 * with another shape; a "ConcatView" is a Concat whose inputs were written straight into their
 * slices of its output.
 */
export const isAlias = (n: Node) => n.op === "View" || n.op === "ConcatView";

/** The node whose lowering a kernel runs: itself, or a fused kernel's anchor. */
export const anchorOf = (n: Node): Node => (n.fused ? n.fused.body.find((m) => m.name === n.fused!.anchor)! : n);

export function withNodes(g: Graph, nodes: Node[], values = g.values): Graph {
  return { ...g, nodes, values };
}

export function value(g: Graph, name: string): Value {
  const v = g.values.get(name);
  if (!v) throw new Error(`internal: unknown value '${name}'`);
  return v;
}

export function attrNum(n: Node, key: string, dflt: number): number {
  const a = n.attrs[key];
  return typeof a === "number" ? a : dflt;
}

export function attrInts(n: Node, key: string, dflt: number[] = []): number[] {
  const a = n.attrs[key];
  return Array.isArray(a) ? (a as number[]) : dflt;
}

export function attrStr(n: Node, key: string, dflt: string): string {
  const a = n.attrs[key];
  return typeof a === "string" ? a : dflt;
}

/** Uses of each value: the nodes reading it, in order. */
export function consumers(g: Graph): Map<string, Node[]> {
  const m = new Map<string, Node[]>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) (m.get(i) ?? m.set(i, []).get(i)!).push(n);
  return m;
}
