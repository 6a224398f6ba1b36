import { EdgecError } from "../core/diag.js";
import { isAlias, type Graph, type Node } from "../graph/ir.js";
import { planMemory, type MemoryPlan } from "../graph/passes/plan-memory.js";
import { ARENA_ALIGN } from "../graph/memory.js";
import type { DType } from "../core/dtype.js";
import { Names, add, cst, flat, int, let_, load, mul, nest, set, store, threadId, vr, type Ref } from "./build.js";
import { numel } from "../core/tensor.js";
import { STITCH } from "./lower/stitch.js";
import { BANDED_POOLS } from "../graph/passes/select-fusion.js";
import { mentionsVar, touched, type Buffer, type BufferKind, type Expr, type Kernel, type Program, type Stmt } from "./ir.js";
import { AT, LOWERINGS } from "./lower/index.js";
import { sliceElems, type CpuShape, type GpuShape, type LowerCtx } from "./lower/types.js";
import type { Tensor } from "../core/tensor.js";

/** Ops of the graph that the loop layer cannot lower, one entry per node. */
export function unloweredOps(g: Graph): string[] {
  const ok = (n: Node): boolean => (n.fused ? n.fused.body.every(ok) : isAlias(n) || !!LOWERINGS[n.op]);
  return g.nodes.filter((n) => !ok(n)).map((n) => `${n.op} (opset ${n.opset}) at node '${n.name}'`);
}

type Resolve = (value: string) => Ref & { data?: Buffer["data"] };

/**
 * One fused group as one kernel: the anchor's own lowering runs with hooked Refs. Inputs produced
 * by inlined members are computed where the anchor reads them (their `at` form); the anchor's
 * result, when the group has an epilogue, goes through the epilogue members (each bound to a local)
 * and only the last one's value is stored; or, when the last is a stitched reduction (see
 * lower/stitch.ts), folded into this thread's partial result: the partials start at the
 * reduction's identity before the anchor's loops and are combined into its output after them; or,
 * when the last is a banded pool, stored into the band of rows the anchor's lowering pools (see
 * LowerCtx.pooled).
 */
function lowerFused(n: Node, refOf: Resolve, names: Names, extra: Extra, partials: Partials): Stmt[] {
  const f = n.fused!;
  const producer = new Map<string, Node>();
  for (const m of f.body) for (const o of m.outputs) if (o) producer.set(o, m);
  const anchor = f.body.find((m) => m.name === f.anchor)!;
  const epilogue = f.epilogue.map((e) => f.body.find((m) => m.name === e)!);
  const shell = (v: string) => ({ buf: "", dtype: refOf(v).dtype, shape: refOf(v).shape });
  const refIn = (v: string, env: Map<string, Ref>): Ref | undefined => {
    if (!v) return undefined;
    const bound = env.get(v);
    if (bound) return bound;
    const p = producer.get(v);
    if (!p || p === anchor || epilogue.includes(p)) return refOf(v);
    const at = (idx: Expr[]) => AT[p.op]({ node: p, ins: p.inputs.map((i) => refIn(i, env)), outs: [shell(v)], names })(idx);
    return { ...shell(v), at };
  };
  const local = (v: string, name: string): Ref => ({ ...shell(v), at: () => vr(name, refOf(v).dtype) });
  // A banded pool ends the epilogue: the anchor's lowering pools the chain's results itself.
  const last = epilogue[epilogue.length - 1];
  const pool = last && BANDED_POOLS.has(last.op) ? last : undefined;
  const chain = pool ? epilogue.slice(0, -1) : epilogue;
  /** The anchor's result o through the chain, the last member's value stored into `target`. */
  const viaEpilogue = (o: string, target: Ref): Ref => ({
    ...shell(o),
    put: (idx, val) => {
      const body: Stmt[] = [];
      const env = new Map<string, Ref>();
      const bind = (v: string, e: Expr) => {
        const name = names.next("e");
        body.push(let_(name, refOf(v).dtype, e));
        env.set(v, local(v, name));
      };
      bind(o, val);
      chain.forEach((e, k) => {
        if (stitch && e === last) {
          const at = add(vr(base), flat(refOf(e.outputs[0]).shape, stitch.into(idx, refOf(e.outputs[0]).shape.length)));
          body.push({ k: "store", buf: part!.buf, idx: at, val: stitch.combine({ k: "load", buf: part!.buf, idx: at, dtype: "float32" }, load(refIn(e.inputs[0], env)!, idx)) });
          return;
        }
        const value = AT[e.op]({ node: e, ins: e.inputs.map((i) => refIn(i, env)), outs: [shell(e.outputs[0])], names })(idx);
        if (k === chain.length - 1) body.push(store(target, idx, value));
        else bind(e.outputs[0], value);
      });
      return { k: "block", body };
    },
  });
  // A stitched reduction ends the epilogue: partial results per thread, combined after the anchor's loops.
  const stitch = last && STITCH[last.op];
  const reduced = stitch ? numel(refOf(last.outputs[0]).shape) : 0;
  const part = stitch ? partials.region(reduced) : undefined;
  const base = stitch ? names.next("part") : "";
  const ins = anchor.inputs.map((i) => refIn(i, new Map()));
  const result = (o: string): Ref => (pool ? shell(o) : chain.length ? viaEpilogue(o, refOf(last.outputs[0])) : refOf(o));
  const outs = anchor.outputs.map((o) => (!o ? { buf: "", dtype: "float32" as const, shape: [] } : result(o)));
  const pooled = pool && { node: pool, y: refOf(pool.outputs[0]), through: (band: Ref) => (chain.length ? viaEpilogue(anchor.outputs[0], band) : band) };
  const body = LOWERINGS[anchor.op]({ node: anchor, ins, outs, names, ...extra, ...(pooled ? { pooled } : {}), ...(stitch ? { stitched: true } : {}) });
  if (!stitch) return body;
  const y = refOf(last.outputs[0]);
  const count = numel(refOf(last.inputs[0]).shape) / reduced;
  const init = nest(names, [partials.threads * sliceElems(reduced)], ([i]) => [{ k: "store", buf: part!.buf, idx: i, val: cst(stitch.init) }], false);
  const finish = nest(names, y.shape, (idx) => {
    const acc = names.next("acc"), t = names.next("t");
    const partial = (thread: Expr): Expr => ({ k: "load", buf: part!.buf, idx: add(mul(thread, int(sliceElems(reduced))), flat(y.shape, idx)), dtype: "float32" });
    return [
      let_(acc, "float32", partial(int(0))),
      ...(partials.threads > 1 ? [{ k: "for", v: t, n: partials.threads - 1, body: [set(acc, stitch.combine(vr(acc, "float32"), partial(add(vr(t), int(1)))))] } as Stmt] : []),
      store(y, idx, stitch.finish(vr(acc, "float32"), count)),
    ];
  }, false);
  // This thread's partials start at `base`: bound once in each parallel loop, and at the top for
  // stores outside them.
  const bind = let_(base, "int32", mul(threadId, int(sliceElems(reduced))));
  const hoisted = inParallelLoops(body, bind, base);
  return [...init, ...(readsOutsideParallelLoops(body, base) ? [bind] : []), ...hoisted, ...finish];
}

/** Whether `ss` reads variable `v` outside its parallel loops. */
function readsOutsideParallelLoops(ss: Stmt[], v: string): boolean {
  return ss.some((x) => {
    if (x.k === "for") return !x.parallel && readsOutsideParallelLoops(x.body, v);
    if (x.k === "block") return readsOutsideParallelLoops(x.body, v);
    if (x.k === "if") return mentionsVar(x.c, v) || readsOutsideParallelLoops([...x.then, ...(x.else ?? [])], v);
    return mentionsVar(x, v);
  });
}

/**
 * `ss` with `s`, the binding of `v`, first in the body of each outermost parallel loop that reads v.
 * A parallel loop of one iteration around a single loop hands its parallel axis, and the work it
 * states, to that loop first, as simplify would when it drops the outer one (the binding would
 * otherwise stop it).
 */
function inParallelLoops(ss: Stmt[], s: Stmt, v: string): Stmt[] {
  return ss.map((x): Stmt => {
    if (x.k === "for" && x.parallel && x.n === 1 && x.body.length === 1 && x.body[0].k === "for")
      return { ...x, parallel: false, body: inParallelLoops([{ ...x.body[0], parallel: true, ...(x.work !== undefined && { work: x.work }) }], s, v) };
    if (x.k === "for") return x.parallel ? (mentionsVar(x.body, v) ? { ...x, body: [s, ...x.body], fixed: true } : x) : { ...x, body: inParallelLoops(x.body, s, v) };
    if (x.k === "block") return { ...x, body: inParallelLoops(x.body, s, v) };
    if (x.k === "if") return { ...x, then: inParallelLoops(x.then, s, v), else: x.else && inParallelLoops(x.else, s, v) };
    return x;
  });
}

/** Per-thread partial results of stitched reductions: `region(elems)` gives each of `threads` threads `elems` float32, at a stride of sliceElems(elems). */
interface Partials {
  threads: number;
  region: (elems: number) => Ref;
}

type Extra = Pick<LowerCtx, "cpu" | "gpu" | "constant" | "scratch" | "shared">;

export interface LowerOptions {
  /** vector shape and threads of the target CPU; absent: no vectorized lowerings */
  cpu?: CpuShape & { threads: number };
  /** lowering for a GPU: its work-group tile; absent: a CPU's lowering */
  gpu?: GpuShape;
  /**
   * where kernels' scratch goes: "planned" (the default) among the tensors, the graph planned again
   * with each kernel's scratch live while it runs; "after": one region after the graph's arena that
   * every kernel reuses, so the tensors keep the graph's offsets (a CPU/GPU split lowers the graph
   * for both devices and needs them alike)
   */
  scratch?: "planned" | "after";
}

const SCALAR_LITERAL = new Set<DType>(["float32", "float64", "int32", "int8", "uint8", "int16", "uint16", "bool"]);

const ident = (s: string) => s.replace(/[^A-Za-z0-9_]/g, "_").replace(/^(?=\d)/, "_").slice(0, 40);

/**
 * Graph (with its memory plan) → loop program: one buffer per value (caller's input and output
 * buffers, constant weights, arena slices), one kernel per node, in node order. Outputs that are
 * not written by a node (an input or constant returned as is, or one value returned twice) get a
 * copy kernel.
 */
export function lowerGraph(g: Graph & { memory: MemoryPlan }, opts: LowerOptions = {}): Program {
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
  // A View's value is its input's memory read with another shape.
  const views = new Map<string, string>();
  const refOf: Resolve = (value) => {
    const base = views.get(value);
    if (base !== undefined) return { ...refOf(base), shape: g.values.get(value)!.shape! };
    let b = byValue.get(value);
    if (!b) {
      const v = g.values.get(value)!;
      b = addBuffer(value, v.data ? "weight" : "arena", v.data ? "w_" : "t_");
      byValue.set(value, b);
    }
    const buf = buffers.get(b)!;
    const ref = { buf: b, dtype: buf.dtype, shape: buf.shape, data: buf.data };
    // A one-element constant (Clip bounds, a scale) reads as a literal; its weight array then goes unused.
    return buf.data && buf.data.data.length === 1 && SCALAR_LITERAL.has(buf.dtype) ? { ...ref, at: () => cst(Number(buf.data!.data[0]), buf.dtype) } : ref;
  };

  // Packed weights are new constants.
  const constant = (hint: string, t: Tensor): Ref => {
    // p_, a prefix no graph value gets, so the names of graph values do not depend on which lowering packed what.
    let name = `p_${ident(hint)}`;
    for (let k = 1; taken.has(name); k++) name = `p_${ident(hint)}_${k}`;
    taken.add(name);
    buffers.set(name, { name, value: hint, dtype: t.dtype, shape: t.shape, kind: "weight", data: t });
    return { buf: name, dtype: t.dtype, shape: t.shape };
  };
  // Each kernel's scratch is named after the kernel: one per-thread region (a slice per thread at
  // THREAD_ID·sliceElems(elems), as large as its largest request), the regions its threads share
  // (one per request: a padded copy of an input, the packed columns of a rows-outer product, a map
  // being pooled), and per-thread partial results of stitched reductions. They lie back to back in
  // one block per kernel, which memory planning places (see the end).
  const threads = Math.max(1, opts.cpu?.threads ?? 1);
  const scratchOf = new Map<Node, { name: string; elems: number }[]>();
  let mine: { name: string; elems: number }[] = [];
  let tag = "";
  let sharedInKernel = 0;
  const region = (base: string, elems: number, value: string): Ref => {
    const name = `${base}_${tag}`;
    let r = mine.find((x) => x.name === name);
    if (!r) {
      r = { name, elems: 0 };
      mine.push(r);
      buffers.set(name, { name, value, dtype: "float32", shape: [0], kind: "arena", offset: 0 });
    }
    r.elems = Math.max(r.elems, elems);
    return { buf: name, dtype: "float32", shape: [elems] };
  };
  const scratch = (elems: number) => region("scratch", threads * sliceElems(elems), "per-thread scratch");
  const shared = (elems: number) => region(`scratch_shared${sharedInKernel++ || ""}`, elems, "shared scratch");
  const partials: Partials = { threads, region: (elems) => region("scratch_partial", threads * sliceElems(elems), "partial results per thread") };
  const extra: Extra = { cpu: opts.cpu, gpu: opts.gpu, constant, scratch, shared };

  g.nodes.forEach((n, k) => {
    if (n.op === "View") {
      views.set(n.outputs[0], n.inputs[0]);
      return;
    }
    // A ConcatView's inputs were planned inside its output: their kernels already wrote it.
    if (n.op === "ConcatView") return;
    const names = new Names();
    sharedInKernel = 0;
    tag = `k${k}`;
    mine = [];
    scratchOf.set(n, mine);
    let body: Stmt[];
    if (n.fused) body = lowerFused(n, refOf, names, extra, partials);
    else {
      const ins = n.inputs.map((i) => (i ? refOf(i) : undefined));
      const outs = n.outputs.map((o) => (o ? refOf(o) : { buf: "", dtype: "float32" as const, shape: [] }));
      body = LOWERINGS[n.op]({ node: n, ins, outs, names, ...extra });
    }
    const { reads, writes } = touched(body);
    const op = n.fused ? `fused_${n.fused.body.find((m) => m.name === n.fused!.anchor)!.op}` : n.op;
    kernels.push({ name: `k${k}_${ident(op)}`, node: n.name, op: n.fused ? `Fused(${n.fused.body.map((m) => m.op).join(",")})` : n.op, params: [...new Set([...reads, ...writes])], writes: [...writes], body });
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
  // Each kernel's block of scratch: its regions at 64-byte boundaries.
  const blockBytes = new Map<Node, number>();
  const within = new Map<string, number>();
  for (const [node, regions] of scratchOf) {
    let end = 0;
    for (const r of regions) {
      within.set(r.name, end);
      buffers.get(r.name)!.shape = [r.elems];
      end = Math.ceil((end + r.elems * 4) / ARENA_ALIGN) * ARENA_ALIGN;
    }
    if (end) blockBytes.set(node, end);
  }
  // "after": every kernel's block at the same offset past the graph's arena.
  const past = Math.ceil(g.memory.arenaBytes / ARENA_ALIGN) * ARENA_ALIGN;
  let scratchAt = (_node: Node) => past;
  let arenaBytes = Math.max(g.memory.arenaBytes, ...[...blockBytes.values()].map((b) => past + b));
  if (opts.scratch !== "after" && blockBytes.size) {
    // Planned again with each kernel's block live while it runs: the tensors move, which of them
    // share memory in place does not (the kernel order is the same).
    const memory = planMemory(g, blockBytes).memory;
    // A kernel whose scratch came to no bytes has no block: its empty regions may lie anywhere.
    scratchAt = (node) => memory.scratch.get(node) ?? 0;
    arenaBytes = memory.arenaBytes;
    for (const b of buffers.values()) if (b.kind === "arena" && !within.has(b.name)) b.offset = memory.offsets[b.value];
  }
  for (const [node, regions] of scratchOf) for (const r of regions) buffers.get(r.name)!.offset = scratchAt(node) + within.get(r.name)!;
  return { name: g.name, buffers, kernels, inputs, outputs, arenaBytes };
}
