import { DTYPES } from "../../core/dtype.js";
import { numel } from "../../core/tensor.js";
import { THREAD_ID, type Buffer, type Expr, type GridDim, type Kernel, type Program, type Stmt } from "../../loop/ir.js";
import { renderExpr, renderStmts } from "../c-like.js";
import { weightLayout, weightsOf } from "../c/index.js";
import { CL_DIALECT } from "./dialect.js";

/**
 * One enqueue of an OpenCL kernel: its NDRange (`global`, dimension 0 the fastest-varying, so
 * neighbouring work-items touch neighbouring elements) and its work-group size.
 */
export interface Launch {
  name: string;
  global: number[];
  local: number[];
  /** the work-group size is the kernel's own (a grid sharing group memory), not a choice */
  fixed: boolean;
  /** which devices run it: all, those with local memory on chip (a tiled kernel), or the others (its untiled form) */
  variant: "any" | "tiled" | "untiled";
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

/** Every store (buffer, index as rendered, index, lanes) and load (buffer, index as rendered) under `ss`. */
function accesses(ss: Stmt[]): { stores: [string, string, Expr, number][]; loads: [string, string][] } {
  const stores: [string, string, Expr, number][] = [], loads: [string, string][] = [];
  const ex = (e: Expr): void => {
    if (e.k === "load") (loads.push([e.buf, renderExpr(e.idx, CL_DIALECT)]), ex(e.idx));
    else if (e.k === "bin" || e.k === "slide") (ex(e.a), ex(e.b));
    else if (e.k === "un" || e.k === "cast" || e.k === "splat") ex(e.a);
    else if (e.k === "select") (ex(e.c), ex(e.a), ex(e.b));
  };
  const st = (s: Stmt): void => {
    if (s.k === "for" || s.k === "block" || s.k === "grid") s.body.forEach(st);
    else if (s.k === "if") (ex(s.c), s.then.forEach(st), (s.else ?? []).forEach(st));
    else if (s.k === "store") (stores.push([s.buf, renderExpr(s.idx, CL_DIALECT), s.idx, s.lanes ?? 1]), ex(s.idx), ex(s.val));
    else if (s.k === "let" || s.k === "set") ex(s.val);
  };
  ss.forEach(st);
  return { stores, loads };
}

/**
 * `e` as a sum of integer coefficients times variables plus a constant (key ""), or undefined when
 * it is not affine; variables bound once by a `let` in `defs` stand for their definitions.
 */
function affine(e: Expr, defs: Map<string, Expr>): Map<string, number> | undefined {
  if (e.k === "const") return new Map([["", Number(e.v)]]);
  if (e.k === "var") return defs.has(e.name) ? affine(defs.get(e.name)!, defs) : new Map([[e.name, 1]]);
  if (e.k !== "bin") return undefined;
  const a = affine(e.a, defs), b = affine(e.b, defs);
  if (!a || !b) return undefined;
  const constant = (m: Map<string, number>) => [...m.keys()].every((k) => k === "") ? (m.get("") ?? 0) : undefined;
  const scaled = (m: Map<string, number>, c: number) => new Map([...m].map(([k, v]) => [k, v * c]));
  if (e.op === "+" || e.op === "-") {
    const sum = new Map(a);
    for (const [k, v] of b) sum.set(k, (sum.get(k) ?? 0) + (e.op === "+" ? v : -v));
    return sum;
  }
  if (e.op === "*") {
    const ca = constant(a), cb = constant(b);
    return ca !== undefined ? scaled(b, ca) : cb !== undefined ? scaled(a, cb) : undefined;
  }
  return undefined;
}

/** Trip counts of the loops under `ss` by variable, and the integer lets never `set` again (their definitions). */
function scopeOf(ss: Stmt[]): { extents: Map<string, number>; defs: Map<string, Expr> } {
  const extents = new Map<string, number>(), defs = new Map<string, Expr>(), sets = new Set<string>();
  const walk = (ss: Stmt[]): void => {
    for (const s of ss) {
      if (s.k === "for") (extents.set(s.v, s.n), walk(s.body));
      else if (s.k === "grid") walk(s.body);
      else if (s.k === "block") walk(s.body);
      else if (s.k === "if") (walk(s.then), walk(s.else ?? []));
      else if (s.k === "let" && !s.lanes && (s.dtype === "int32" || s.dtype === "int64")) defs.set(s.name, s.val);
      else if (s.k === "set") sets.add(s.name);
    }
  };
  walk(ss);
  for (const n of sets) defs.delete(n);
  return { extents, defs };
}

/**
 * Whether `loops` (nested directly inside a parallel loop `outer`, each alone in the one before) can
 * all become NDRange dimensions: no two of their iterations touch the same element they store.
 * Sufficient, not necessary: every store index is affine, with a nonzero coefficient on each of
 * `loops`, and its terms over these loops and the loops inside them form a mixed radix (each
 * coefficient larger than the span of all smaller ones), so distinct iterations store to distinct
 * elements; a buffer stored to is read only at an index it is stored at (an in-place update).
 * The outer loop's variable is left out: the lowering declared its iterations independent.
 */
function independent(outer: string, loops: (Stmt & { k: "for" })[]): boolean {
  const body = loops[loops.length - 1].body;
  const { stores, loads } = accesses(body);
  const scope = scopeOf(body);
  const extents = new Map([...loops.map((l): [string, number] => [l.v, l.n]), ...scope.extents]);
  const injective = (idx: Expr, lanes: number): boolean => {
    const terms = affine(idx, scope.defs);
    if (!terms || loops.some((l) => !terms.get(l.v))) return false;
    // A vector store covers `lanes` consecutive elements: one more term, of coefficient 1.
    const radix: [number, number][] = lanes > 1 ? [[1, lanes]] : [];
    for (const [v, c] of terms) {
      if (v === "" || v === outer || c === 0) continue;
      const n = extents.get(v);
      if (n === undefined) return false;
      radix.push([Math.abs(c), n]);
    }
    radix.sort((x, y) => x[0] - y[0]);
    let span = 0;
    for (const [c, n] of radix) {
      if (c <= span) return false;
      span += c * (n - 1);
    }
    return true;
  };
  if (!stores.length || !stores.every(([, , idx, lanes]) => injective(idx, lanes))) return false;
  const stored = new Map<string, Set<string>>();
  for (const [buf, idx] of stores) stored.set(buf, (stored.get(buf) ?? new Set()).add(idx));
  return loads.every(([buf, idx]) => !stored.has(buf) || stored.get(buf)!.has(idx));
}

/** Up to three perfectly nested loops from a parallel `for`, outermost first, and the body inside them. */
function ndrange(s: Stmt & { k: "for" }): { loops: (Stmt & { k: "for" })[]; body: Stmt[] } {
  const loops = [s];
  let body = s.body;
  while (loops.length < 3 && body.length === 1 && body[0].k === "for" && independent(s.v, [...loops.slice(1), body[0]])) {
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

/** How one part of a kernel maps to the NDRange: loops the backend lays out, or a grid the lowering laid out. */
type Part = { loops: (Stmt & { k: "for" })[]; body: Stmt[]; grid?: GridDim[] };

/**
 * A kernel of loop IR as OpenCL launches. A body of top-level loops and grids becomes one launch per
 * statement (the in-order queue keeps them in sequence): a grid is its own NDRange, its groups and
 * items as work-groups and work-items; a parallel loop and up to two independent loops directly
 * inside it map to the NDRange, any other loop runs as a single work-item. A body with anything else
 * at the top (an accumulator shared by its loops) is one single work-item launch. A tiled kernel's
 * untiled form follows as launches of its own (named NAME_untiled), for the runtime to choose from.
 */
export function kernelLaunches(k: Kernel, p: Program, layout: DeviceLayout, workGroup: number): Launch[] {
  if (!k.untiled) return launchesOf(k, k.name, k.body, "any", p, layout, workGroup);
  return [...launchesOf(k, k.name, k.body, "tiled", p, layout, workGroup), ...launchesOf(k, `${k.name}_untiled`, k.untiled, "untiled", p, layout, workGroup)];
}

function launchesOf(k: Kernel, kname: string, kbody: Stmt[], variant: Launch["variant"], p: Program, layout: DeviceLayout, workGroup: number): Launch[] {
  const parts: Part[] = kbody.every((s) => s.k === "for" || s.k === "grid")
    ? kbody.map((s) => (s.k === "grid" ? { loops: [], body: s.body, grid: s.dims } : s.k === "for" && s.parallel && s.n > 1 ? ndrange(s) : { loops: [], body: [s] }))
    : [{ loops: [], body: kbody }];
  return parts.map(({ loops, body, grid }, i) => {
    const name = parts.length === 1 ? kname : `${kname}_${i}`;
    const inner = [...loops].reverse();
    const dims = grid ? [...grid].reverse() : [];
    const global = grid ? dims.map((d) => d.groups * d.items) : inner.length ? inner.map((l) => l.n) : [1];
    // Work-groups fill up from the fastest-varying dimension: as large as the target's GPU allows, tiling the range exactly.
    let room = workGroup;
    const local = grid ? dims.map((d) => d.items) : global.map((g) => {
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
    const text = renderStmts(body, CL_DIALECT);
    // A grid's index the body never reads (a batch of one item per group) is not declared, for -Wextra.
    const id = (v: string, fn: string, d: number) => (new RegExp(`\\b${v}\\b`).test(text) ? `  const int ${v} = (int)${fn}(${d});\n` : "");
    const ids = grid
      ? dims.map((g, d) => id(g.group, "get_group_id", d) + id(g.item, "get_local_id", d))
      : inner.map((l, d) => `  const int ${l.v} = (int)get_global_id(${d});\n`);
    if (text.includes(THREAD_ID)) throw new Error(`kernel ${k.name} uses per-thread scratch, which the OpenCL backend does not lower`);
    const source = `/* ${k.op} ${k.node.replace(/\*\//g, "* /")} */\n__kernel void ${name}(__global uchar *edgec_arena, __global const uchar *edgec_weights, __global uchar *edgec_io) {\n${unused.join("")}${pointers.join("")}${ids.join("")}${text}}\n`;
    return { name, global, local, fixed: !!grid, variant, source };
  });
}
