import { EdgecError } from "../core/diag.js";
import type { Graph } from "../graph/ir.js";
import type { MemoryPlan } from "../graph/passes/plan-memory.js";
import { Names, nest, load, store, type Ref } from "./build.js";
import { touched, type Buffer, type BufferKind, type Kernel, type Program } from "./ir.js";
import { LOWERINGS } from "./lower/index.js";

/** Ops of the graph that the loop layer cannot lower, one entry per node. */
export function unloweredOps(g: Graph): string[] {
  return g.nodes.filter((n) => !LOWERINGS[n.op]).map((n) => `${n.op} (opset ${n.opset}) at node '${n.name}'`);
}

const ident = (s: string) => s.replace(/[^A-Za-z0-9_]/g, "_").replace(/^(?=\d)/, "_").slice(0, 40);

/**
 * Graph (with its memory plan) → loop program: one buffer per value (caller's input and output
 * buffers, constant weights, arena slices), one kernel per node, in node order. Outputs that are
 * not written by a node (an input or constant returned as is, or one value returned twice) get a
 * copy kernel.
 */
export function lowerGraph(g: Graph & { memory: MemoryPlan }): Program {
  const missing = unloweredOps(g);
  if (missing.length) throw new EdgecError(`${g.source ?? g.name}: ${missing.length} unsupported op${missing.length > 1 ? "s" : ""}: ${missing.join("; ")}`, 2, missing);
  const buffers = new Map<string, Buffer>();
  const byValue = new Map<string, string>();
  const taken = new Set<string>();
  const addBuffer = (value: string, kind: BufferKind, prefix: string) => {
    const v = g.values.get(value)!;
    let name = `${prefix}${ident(value)}`;
    for (let k = 1; taken.has(name); k++) name = `${prefix}${ident(value)}_${k}`;
    taken.add(name);
    buffers.set(name, { name, value, dtype: v.dtype, shape: v.shape!, kind, offset: g.memory.offsets[value], data: v.data });
    return name;
  };
  const inputs = g.inputs.map((i) => {
    const b = addBuffer(i, "input", "in_");
    byValue.set(i, b);
    return b;
  });
  const kernels: Kernel[] = [];
  const copies: [string, string][] = [];
  const outputs = g.outputs.map((o) => {
    const producedHere = g.nodes.some((n) => n.outputs.includes(o)) && !byValue.has(o);
    const b = addBuffer(o, "output", "out_");
    if (producedHere) byValue.set(o, b);
    else copies.push([o, b]);
    return b;
  });
  const refOf = (value: string): Ref & { data?: Buffer["data"] } => {
    let b = byValue.get(value);
    if (!b) {
      const v = g.values.get(value)!;
      b = addBuffer(value, v.data ? "weight" : "arena", v.data ? "w_" : "t_");
      byValue.set(value, b);
    }
    const buf = buffers.get(b)!;
    return { buf: b, dtype: buf.dtype, shape: buf.shape, data: buf.data };
  };

  g.nodes.forEach((n, k) => {
    const ins = n.inputs.map((i) => (i ? refOf(i) : undefined));
    const outs = n.outputs.map((o) => (o ? refOf(o) : { buf: "", dtype: "float32" as const, shape: [] }));
    const body = LOWERINGS[n.op]({ node: n, ins, outs, names: new Names() });
    const { reads, writes } = touched(body);
    kernels.push({ name: `k${k}_${ident(n.op)}`, node: n.name, op: n.op, params: [...new Set([...reads, ...writes])], writes: [...writes], body });
  });
  for (const [value, outBuf] of copies) {
    const src = refOf(value);
    const dst = buffers.get(outBuf)!;
    const dstRef: Ref = { buf: outBuf, dtype: dst.dtype, shape: dst.shape };
    kernels.push({
      name: `k${kernels.length}_copy`,
      node: `output ${value}`,
      op: "Copy",
      params: [src.buf, outBuf],
      writes: [outBuf],
      body: nest(new Names(), dst.shape, (idx) => [store(dstRef, idx, load(src, idx))]),
    });
  }
  // Constants that lowerings read at compile time only (Reshape's shape, Pad's pads, ...) are not
  // loaded by any kernel: drop their buffers, or the C would hold unused weight arrays.
  const used = new Set(kernels.flatMap((k) => k.params));
  for (const [name, b] of buffers) if (b.kind === "weight" && !used.has(name)) buffers.delete(name);
  return { name: g.name, buffers, kernels, inputs, outputs, arenaBytes: g.memory.arenaBytes };
}
