import type { DType } from "../core/dtype.js";
import type { Tensor } from "../core/tensor.js";

/**
 * Loop IR: kernels made of loop nests over flat buffers, with scalar expressions. Shapes are static,
 * so every loop has a constant trip count. A loop marked `parallel` has independent iterations:
 * the C backend may spread it over threads (when its `work`, or else its statements counted, pays
 * for waking them), a GPU backend over work-items.
 *
 * Vectors: a `load`, `store`, `var`, `let` or `bin` with `lanes` works on that many consecutive
 * float32 elements at once (a SIMD register; only + - * apply to vectors); a load with `stride: 2`
 * takes every other element instead (a stride-2 convolution's taps), and one that `spread`s takes
 * as many consecutive elements as its mask has lanes, lane by lane into the lanes of the mask, the
 * others `fill`; `neg`, `exp` and `nanof` apply lane-wise
 * too; `slide` takes a vector's worth of lanes from two vectors end to end; `splat` fills a vector
 * with a scalar. A vector store with a `mask` stores only lanes from ≤ l < to, lane l at idx + l, and
 * forms no address for the others (idx itself may lie outside the buffer); one with a `stride` s
 * scatters, lane l to idx + l·s; one that `pack`s stores the lanes of its mask one after another from
 * idx on (lanes a row's dropped columns leave out). Lowerings emit vectors only for the width the target declares. A
 * `local` is a small array on the stack, private to one iteration (a tile of results on its way out).
 *
 * Work-groups (GPU lowerings only): a `grid` runs its body once per work-item of a grid of
 * work-groups, each dimension's group and item index bound; a `local` of scope "group" at the top
 * of its body is one array per work-group that its work-items share (OpenCL's __local memory), and
 * a `barrier` holds every work-item of a group until all have reached it and its writes to group
 * memory are visible. Every work-item of a group must reach the same barriers.
 */
export type BinOp =
  | "+" | "-" | "*" | "/" | "%" | "min" | "max" | "pow" | "fmod"
  | "<" | "<=" | ">" | ">=" | "==" | "!=" | "&&" | "||";
export type UnOp =
  | "neg" | "not" | "abs" | "exp" | "log" | "sqrt" | "tanh" | "erf" | "floor" | "ceil"
  | "round" | "sin" | "cos"
  /** NaN where a is NaN, else +0: added to a result computed from a clamped a, it passes a NaN through */
  | "nanof";

export type Expr =
  | { k: "const"; dtype: DType; v: number | bigint }
  | { k: "var"; name: string; dtype: DType; lanes?: number }
  | { k: "load"; buf: string; idx: Expr; dtype: DType; lanes?: number; stride?: 2; spread?: { mask: number; fill: number } }
  | { k: "bin"; op: BinOp; a: Expr; b: Expr; dtype: DType; lanes?: number }
  | { k: "splat"; a: Expr; dtype: DType; lanes: number }
  | { k: "un"; op: UnOp; a: Expr; dtype: DType; lanes?: number }
  | { k: "select"; c: Expr; a: Expr; b: Expr; dtype: DType }
  | { k: "cast"; a: Expr; dtype: DType }
  /** lanes by ≤ l < by + lanes of the vectors a and b end to end: a window sliding along memory, from two loads */
  | { k: "slide"; a: Expr; b: Expr; by: number; dtype: DType; lanes: number };

export type Stmt =
  /**
   * `fixed`: a parallel loop whose iterations go to threads as OpenMP's schedule(static) gives
   * them, none taken by a thread done early (it folds into per-thread partial results, whose
   * combined sum must not depend on which thread ran what)
   */
  | { k: "for"; v: string; n: number; body: Stmt[]; parallel?: boolean; work?: number; fixed?: boolean }
  | { k: "store"; buf: string; idx: Expr; val: Expr; lanes?: number; mask?: LaneRange; stride?: number; pack?: number }
  | { k: "let"; name: string; dtype: DType; val: Expr; lanes?: number }
  | { k: "set"; name: string; val: Expr }
  | { k: "if"; c: Expr; then: Stmt[]; else?: Stmt[] }
  /** a nested scope: its locals are invisible after it (fused epilogues use one per store) */
  | { k: "block"; body: Stmt[] }
  | { k: "local"; name: string; dtype: DType; n: number; scope?: "group" }
  | { k: "grid"; dims: GridDim[]; body: Stmt[] }
  | { k: "barrier" };

/** `ss` with each vector store, under loops, blocks and branches too, replaced by f(store). */
export function mapVectorStores(ss: Stmt[], f: (s: Extract<Stmt, { k: "store" }>) => Stmt): Stmt[] {
  return ss.map((s): Stmt => {
    switch (s.k) {
      case "store": return s.lanes ? f(s) : s;
      case "for": case "block": return { ...s, body: mapVectorStores(s.body, f) };
      case "if": return { ...s, then: mapVectorStores(s.then, f), else: s.else && mapVectorStores(s.else, f) };
      default: return s;
    }
  });
}

/** `ss` with its vector stores keeping only `lanes`. */
export const withMask = (ss: Stmt[], lanes: LaneRange): Stmt[] => mapVectorStores(ss, (s) => ({ ...s, mask: lanes }));

/** How many lanes a lane mask (of a spread load or a packed store) has set. */
export const lanesIn = (mask: number): number => mask.toString(2).replace(/0/g, "").length;

/** Lanes from ≤ l < to of a vector (none when to ≤ from). */
export interface LaneRange {
  from: Expr;
  to: Expr;
}

/** One dimension of a grid: `groups` work-groups of `items` work-items, indexed by `group` and `item`. */
export interface GridDim {
  group: string;
  groups: number;
  item: string;
  items: number;
}

/** Whether IR `x` (expressions or statements) names variable `v`: reads it, or binds or sets it. */
export const mentionsVar = (x: Expr | Stmt | Stmt[], v: string): boolean => JSON.stringify(x).includes(`"name":"${v}"`);

/** Lanes of a vector expression, 1 for a scalar. */
export const lanesOf = (e: Expr): number => ("lanes" in e && e.lanes) || 1;

/** The index of the running thread (0 when single-threaded), for per-thread scratch memory. */
export const THREAD_ID = "EDGEC_TID";

export type BufferKind = "input" | "output" | "weight" | "arena";

export interface Buffer {
  /** a C identifier, unique in the program */
  name: string;
  /** the graph value it holds */
  value: string;
  dtype: DType;
  shape: number[];
  kind: BufferKind;
  /** byte offset in the arena (arena buffers) */
  offset?: number;
  /** contents (weights) */
  data?: Tensor;
}

export interface Kernel {
  name: string;
  /** the graph node and op it computes, for comments and errors */
  node: string;
  op: string;
  /** buffers it touches, in signature order; `writes` are the ones it stores to */
  params: string[];
  writes: string[];
  body: Stmt[];
  /** the processor that runs it in a program split between several (absent: the backend's own) */
  device?: "cpu" | "gpu";
  /** a GPU kernel with a grid: the same computation without work-groups, for devices whose local memory is not on chip */
  untiled?: Stmt[];
}

export interface Program {
  name: string;
  buffers: Map<string, Buffer>;
  kernels: Kernel[];
  inputs: string[];
  outputs: string[];
  arenaBytes: number;
}

/** e and every expression inside it. */
function eachExpr(e: Expr, f: (e: Expr) => void): void {
  f(e);
  if (e.k === "load") eachExpr(e.idx, f);
  else if (e.k === "bin" || e.k === "slide") (eachExpr(e.a, f), eachExpr(e.b, f));
  else if (e.k === "un" || e.k === "cast" || e.k === "splat") eachExpr(e.a, f);
  else if (e.k === "select") (eachExpr(e.c, f), eachExpr(e.a, f), eachExpr(e.b, f));
}

/** Every expression `ss` evaluates, and every statement it holds (nested ones included). */
function eachIn(ss: Stmt[], f: (e: Expr) => void, g: (s: Stmt) => void = () => {}): void {
  for (const s of ss) {
    g(s);
    if (s.k === "for" || s.k === "grid" || s.k === "block") eachIn(s.body, f, g);
    else if (s.k === "store") [s.idx, s.val, ...(s.mask ? [s.mask.from, s.mask.to] : [])].forEach((e) => eachExpr(e, f));
    else if (s.k === "let" || s.k === "set") eachExpr(s.val, f);
    else if (s.k === "if") (eachExpr(s.c, f), eachIn(s.then, f, g), eachIn(s.else ?? [], f, g));
  }
}

/** Buffers a kernel body loads from and stores to, in first-use order (stack locals excluded). */
export function touched(body: Stmt[]): { reads: Set<string>; writes: Set<string> } {
  const reads = new Set<string>();
  const writes = new Set<string>();
  const locals = new Set<string>();
  eachIn(body, (e) => e.k === "load" && reads.add(e.buf), (s) => (s.k === "store" ? writes.add(s.buf) : s.k === "local" && locals.add(s.name)));
  for (const l of locals) (reads.delete(l), writes.delete(l));
  return { reads, writes };
}

/** Variables `ss` reads that it does not bind itself; it may assign only variables it binds. */
export function freeVars(ss: Stmt[]): Set<string> {
  const used = new Set<string>(), bound = new Set<string>(), assigned = new Set<string>();
  eachIn(ss, (e) => e.k === "var" && used.add(e.name), (s) => (s.k === "for" ? bound.add(s.v) : s.k === "let" ? bound.add(s.name) : s.k === "set" && assigned.add(s.name)));
  for (const a of assigned) if (!bound.has(a)) throw new Error(`internal: a parallel loop assigns '${a}', bound outside it`);
  for (const b of bound) used.delete(b);
  return used;
}
