import { DTYPES } from "../../core/dtype.js";
import { numel } from "../../core/tensor.js";
import { THREAD_ID, type Buffer, type Expr, type Kernel, type Program, type Stmt } from "../../loop/ir.js";
import { renderExpr, renderStmts } from "../c-like.js";
import { weightLayout, weightsOf } from "../c/index.js";
import { CL_DIALECT } from "./dialect.js";

/**
 * One enqueue of an OpenCL kernel: its NDRange (`global`, dimension 0 the fastest-varying, so
 * neighbouring work-items touch neighbouring elements) and its work-group size.
 */
export interface Launch {
  name: string;
  /** the loop IR kernel it comes from, for errors */
  kernel: string;
  global: number[];
  local: number[];
  source: string;
}

/** Where each buffer lives on the device: the arena, the weights blob or the io block, at a byte offset. */
export interface DeviceLayout {
  region: Map<string, { base: "edgec_arena" | "edgec_weights" | "edgec_io"; offset: number }>;
  ioBytes: number;
  weightBytes: number;
}

const ALIGN = 64;
const up = (b: number) => Math.ceil(b / ALIGN) * ALIGN;
const bytesOf = (b: Buffer) => numel(b.shape) * DTYPES[b.dtype].bytes;

/** Inputs then outputs in one io block, weights as in weights.bin (each 64-byte aligned), arena buffers at their planned offsets. */
export function deviceLayout(p: Program): DeviceLayout {
  const region: DeviceLayout["region"] = new Map();
  let io = 0;
  for (const n of [...p.inputs, ...p.outputs]) {
    region.set(n, { base: "edgec_io", offset: io });
    io += up(bytesOf(p.buffers.get(n)!));
  }
  const weights = weightLayout(weightsOf(p));
  for (const [name, offset] of weights.offsets) region.set(name, { base: "edgec_weights", offset });
  for (const b of p.buffers.values()) if (b.kind === "arena") region.set(b.name, { base: "edgec_arena", offset: b.offset! });
  return { region, ioBytes: io, weightBytes: weights.bytes };
}

const vars = (e: Expr, out: Set<string>): Set<string> => {
  if (e.k === "var") out.add(e.name);
  else if (e.k === "load") vars(e.idx, out);
  else if (e.k === "bin") (vars(e.a, out), vars(e.b, out));
  else if (e.k === "un" || e.k === "cast" || e.k === "splat") vars(e.a, out);
  else if (e.k === "select") (vars(e.c, out), vars(e.a, out), vars(e.b, out));
  return out;
};

/** Every store and load under `ss`, with the index as rendered. */
function accesses(ss: Stmt[]): { stores: [string, string, Expr][]; loads: [string, string][] } {
  const stores: [string, string, Expr][] = [], loads: [string, string][] = [];
  const ex = (e: Expr): void => {
    if (e.k === "load") (loads.push([e.buf, renderExpr(e.idx, CL_DIALECT)]), ex(e.idx));
    else if (e.k === "bin") (ex(e.a), ex(e.b));
    else if (e.k === "un" || e.k === "cast" || e.k === "splat") ex(e.a);
    else if (e.k === "select") (ex(e.c), ex(e.a), ex(e.b));
  };
  const st = (s: Stmt): void => {
    if (s.k === "for" || s.k === "block") s.body.forEach(st);
    else if (s.k === "if") (ex(s.c), s.then.forEach(st), (s.else ?? []).forEach(st));
    else if (s.k === "store") (stores.push([s.buf, renderExpr(s.idx, CL_DIALECT), s.idx]), ex(s.idx), ex(s.val));
    else if (s.k === "let" || s.k === "set") ex(s.val);
  };
  ss.forEach(st);
  return { stores, loads };
}

/**
 * Whether the iterations of `loop` (found directly inside a parallel loop, alone) are independent
 * too, so it can become another NDRange dimension: every store's index depends on its variable, and a
 * buffer it stores to is read only at an index it stores to (an in-place update of one element).
 */
function independent(loop: Stmt & { k: "for" }): boolean {
  const { stores, loads } = accesses(loop.body);
  if (!stores.length || !stores.every(([, , idx]) => vars(idx, new Set()).has(loop.v))) return false;
  const stored = new Map<string, Set<string>>();
  for (const [buf, idx] of stores) stored.set(buf, (stored.get(buf) ?? new Set()).add(idx));
  return loads.every(([buf, idx]) => !stored.has(buf) || stored.get(buf)!.has(idx));
}

/** Up to three perfectly nested loops from a parallel `for`, outermost first, and the body inside them. */
function ndrange(s: Stmt & { k: "for" }): { loops: (Stmt & { k: "for" })[]; body: Stmt[] } {
  const loops = [s];
  let body = s.body;
  while (loops.length < 3 && body.length === 1 && body[0].k === "for" && (body[0].parallel || independent(body[0]))) {
    loops.push(body[0]);
    body = body[0].body;
  }
  return { loops, body };
}

/** The largest divisor of n that is at most max: a work-group size that tiles the range exactly. */
function divisorAtMost(n: number, max: number): number {
  for (let d = Math.min(n, max); d > 1; d--) if (n % d === 0) return d;
  return 1;
}

/**
 * A kernel of loop IR as OpenCL launches. A body of top-level loops becomes one launch per loop (the
 * in-order queue keeps them in sequence): a parallel loop and up to two independent loops directly
 * inside it map to the NDRange, any other loop runs as a single work-item. A body with anything else
 * at the top (an accumulator shared by its loops) is one single work-item launch.
 */
export function kernelLaunches(k: Kernel, p: Program, layout: DeviceLayout, workGroup: number): Launch[] {
  const parts: { loops: (Stmt & { k: "for" })[]; body: Stmt[] }[] = k.body.every((s) => s.k === "for")
    ? k.body.map((s) => (s.k === "for" && s.parallel && s.n > 1 ? ndrange(s) : { loops: [], body: [s] }))
    : [{ loops: [], body: k.body }];
  return parts.map(({ loops, body }, i) => {
    const name = parts.length === 1 ? k.name : `${k.name}_${i}`;
    const inner = [...loops].reverse();
    const global = inner.length ? inner.map((l) => l.n) : [1];
    // Work-groups fill up from the fastest-varying dimension: as large as the target's GPU allows, tiling the range exactly.
    let room = workGroup;
    const local = global.map((g) => {
      const l = divisorAtMost(g, room);
      room = Math.floor(room / l);
      return l;
    });
    const { stores, loads } = accesses(body);
    const used = new Set([...stores, ...loads].map(([b]) => b));
    const params = k.params.filter((n) => used.has(n));
    const pointers = params.map((n) => {
      const b = p.buffers.get(n)!;
      const r = layout.region.get(n)!;
      const q = k.writes.includes(n) ? "" : "const ";
      return `  __global ${q}${CL_DIALECT.type(b.dtype)} *${n} = (__global ${q}${CL_DIALECT.type(b.dtype)} *)(${r.base} + ${r.offset});\n`;
    });
    // Every kernel takes all three buffers; the ones it does not touch are marked used for -Wextra.
    const unused = (["edgec_arena", "edgec_weights", "edgec_io"] as const).filter((base) => !params.some((n) => layout.region.get(n)!.base === base)).map((base) => `  (void)${base};\n`);
    const ids = inner.map((l, d) => `  const int ${l.v} = (int)get_global_id(${d});\n`);
    const text = renderStmts(body, CL_DIALECT);
    if (text.includes(THREAD_ID)) throw new Error(`kernel ${k.name} uses per-thread scratch, which the OpenCL backend does not lower`);
    const source = `/* ${k.op} ${k.node.replace(/\*\//g, "* /")} */\n__kernel void ${name}(__global uchar *edgec_arena, __global const uchar *edgec_weights, __global uchar *edgec_io) {\n${unused.join("")}${pointers.join("")}${ids.join("")}${text}}\n`;
    return { name, kernel: k.name, global, local, source };
  });
}

/** Whether kernel source computes in double precision (the program then enables cl_khr_fp64). */
export const usesDouble = (source: string): boolean => /\bdouble\b/.test(source);
