import { isFloat, type DType } from "../core/dtype.js";
import { freeVars, lanesIn, THREAD_ID, touched, type BinOp, type Expr, type Stmt, type UnOp } from "../loop/ir.js";

/**
 * The C-family renderer shared by every backend: statements and expressions of the loop IR printed
 * through a dialect table (type names, literals, math functions, casts, parallel-loop marker).
 * A backend for another C-like language overrides entries of the table, not the traversal.
 */
export interface Dialect {
  type(d: DType): string;
  literal(v: number | bigint, d: DType): string;
  unary(op: UnOp, d: DType, a: string): string;
  binary(op: BinOp, d: DType, a: string, b: string): string;
  cast(from: DType, to: DType, a: string): string;
  /** line printed before a loop whose iterations are independent ("" for none) */
  parallelFor: string;
  /** the least work (see `work`) of a loop that gets parallelFor: the target's parallelMinWork */
  parallelMinWork: number;
  /**
   * Loops that would get parallelFor become functions of a range of their iterations and the
   * thread's index instead (C with threads: run by the model's thread pool on each thread for
   * its share, or called once over all of them on one thread). `buffer` declares a buffer the loop
   * reads (or, `writes`, stores to); `loop` takes the count of iterations, what the function uses
   * from the kernel (each declaration and the name the kernel knows it by), its body over
   * edgec_lo..edgec_hi, whether the body reads edgec_tid, and whether its split is fixed (Stmt
   * "for"), and returns the statement that runs it.
   */
  outline?: {
    buffer(name: string, writes: boolean): string;
    loop(n: number, params: { decl: string; name: string }[], body: string, tid: boolean, fixed: boolean): string;
  };
  /** work-groups (see Stmt "grid"): the qualifier of group memory and a barrier statement; absent, a dialect without them */
  group?: { memory: string; barrier: string };
  /** float32 vectors: the type, a load from and a store to a pointer expression, a broadcast */
  vector: {
    type(lanes: number): string;
    /** `stride` 2: every other element from ptr on */
    load(ptr: string, lanes: number, stride: 1 | 2): string;
    store(ptr: string, val: string, lanes: number): string;
    /** lanes from..to of val to buf[idx + from ..]; absent, a dialect whose lowerings make no masked stores */
    storeLanes?(buf: string, idx: string, val: string, lanes: number, from: string, to: string): string;
    /** the lanes of val set in `mask` (n of them) to ptr[0..n); absent, a dialect whose lowerings make no packed stores */
    storePacked?(ptr: string, val: string, lanes: number, mask: number, n: number): string;
    /** ptr[0..n) into the lanes set in `mask` (n of them), the others `fill`; absent, a dialect whose lowerings make no spread loads */
    loadSpread?(ptr: string, lanes: number, mask: number, n: number, fill: string): string;
    /** lane l of val to ptr[l·stride]; absent, a dialect whose lowerings make no scatters */
    storeStrided?(ptr: string, val: string, lanes: number, stride: number): string;
    splat(a: string, lanes: number): string;
    /** lanes by..by+lanes−1 of a and b end to end; absent, a dialect whose lowerings make no slides */
    slide?(a: string, b: string, by: number, lanes: number): string;
    /** lane-wise fmin/fmax */
    minmax(op: "min" | "max", a: string, b: string, lanes: number): string;
    /** the lane-wise unary ops the vectorizer makes: neg, exp and nanof */
    unary(op: UnOp, a: string, lanes: number): string;
  };
}

const groupOf = (d: Dialect) => {
  if (!d.group) throw new Error("internal: work-groups reached a dialect without them (a GPU lowering on the CPU)");
  return d.group;
};

export function renderExpr(e: Expr, d: Dialect): string {
  switch (e.k) {
    case "const": return d.literal(e.v, e.dtype);
    case "var": return e.name;
    case "load": {
      if (e.spread) {
        if (!e.lanes || !d.vector.loadSpread) throw new Error("internal: a spread load reached a dialect without them");
        return d.vector.loadSpread(`${e.buf} + ${renderExpr(e.idx, d)}`, e.lanes, e.spread.mask, lanesIn(e.spread.mask), d.literal(e.spread.fill, "float32"));
      }
      return e.lanes ? d.vector.load(`${e.buf} + ${renderExpr(e.idx, d)}`, e.lanes, e.stride ?? 1) : `${e.buf}[${renderExpr(e.idx, d)}]`;
    }
    case "splat": return d.vector.splat(renderExpr(e.a, d), e.lanes);
    case "bin":
      if (e.lanes && (e.op === "min" || e.op === "max")) return d.vector.minmax(e.op, renderExpr(e.a, d), renderExpr(e.b, d), e.lanes);
      return d.binary(e.op, e.a.dtype, renderExpr(e.a, d), renderExpr(e.b, d));
    case "un": return e.lanes ? d.vector.unary(e.op, renderExpr(e.a, d), e.lanes) : d.unary(e.op, e.a.dtype, renderExpr(e.a, d));
    case "select": return `(${renderExpr(e.c, d)} ? ${renderExpr(e.a, d)} : ${renderExpr(e.b, d)})`;
    case "cast": return d.cast(e.a.dtype, e.dtype, renderExpr(e.a, d));
    case "slide": {
      if (!d.vector.slide) throw new Error("internal: a sliding window reached a dialect without one");
      return d.vector.slide(renderExpr(e.a, d), renderExpr(e.b, d), e.by, e.lanes);
    }
  }
}

/**
 * Statements a loop body executes, roughly: what a parallel loop must amortize its thread start-up
 * over. A loop that states its `work` (a lowering that knows its statements undercount it) counts that.
 */
function work(ss: Stmt[]): number {
  return ss.reduce((sum, s) => sum + (s.k === "for" ? loopWork(s) : s.k === "block" ? work(s.body) : s.k === "if" ? Math.max(work(s.then), work(s.else ?? [])) : statementWork(s)), 0);
}

/** Floating-point operations that count as one statement: a multiply-add and an activation's few. */
const OPS_PER_STATEMENT = 4;

/**
 * A statement counts as 1, or as its value's floating-point operations per OPS_PER_STATEMENT when
 * more. The operations are counted as the expression is written: a subexpression it repeats counts
 * each time (Sigmoid's rational approximation, which writes out its clamped input at each use, counts
 * 72), one it shares counts once. EfficientNet-B0's squeeze-and-excitation products over 112×112
 * maps of 32 channels (25,088 vector statements, 0.12 ms) ran serially on two threads before, as did
 * their SiLU-ed average pools.
 */
function statementWork(s: Stmt): number {
  if (s.k !== "store" && s.k !== "let" && s.k !== "set") return 1;
  const seen = new Set<Expr>();
  let ops = 0;
  const walk = (e: Expr): void => {
    if (seen.has(e)) return;
    seen.add(e);
    switch (e.k) {
      case "bin": ops += +isFloat(e.dtype); walk(e.a); walk(e.b); break;
      case "un": ops += +isFloat(e.dtype); walk(e.a); break;
      case "select": ops += +isFloat(e.dtype); walk(e.c); walk(e.a); walk(e.b); break;
      case "splat": case "cast": walk(e.a); break;
      case "slide": walk(e.a); walk(e.b); break;
    }
  };
  walk(s.val);
  return Math.max(1, ops / OPS_PER_STATEMENT);
}

const loopWork = (s: Stmt & { k: "for" }) => s.work ?? s.n * work(s.body);

const fail = (v: string): never => {
  throw new Error(`internal: a parallel loop reads '${v}', bound where its function cannot see the type`);
};

/**
 * `scope`: the C type of each variable bound so far (names are unique in a kernel), which a loop
 * made into a function of its own (Dialect.outline) passes it as parameters.
 */
export function renderStmts(stmts: Stmt[], d: Dialect, indent = "  ", scope = new Map<string, string>()): string {
  let out = "";
  for (const s of stmts) {
    switch (s.k) {
      case "for": {
        scope.set(s.v, d.type("int32"));
        const loop = (from: string, to: string, ind: string, inner = d) => `${ind}for (${d.type("int32")} ${s.v} = ${from}; ${s.v} < ${to}; ++${s.v}) {\n${renderStmts(s.body, inner, ind + "  ", scope)}${ind}}\n`;
        if (!(s.parallel && d.parallelFor && s.n > 1 && loopWork(s) >= d.parallelMinWork)) out += loop("0", String(s.n), indent);
        else if (!d.outline) out += `${indent}${d.parallelFor}\n${loop("0", String(s.n), indent)}`;
        else {
          const { reads, writes } = touched([s]);
          const buffers = [...new Set([...reads, ...writes])];
          const scalars = [...freeVars(s.body)].filter((v) => v !== s.v && v !== THREAD_ID);
          const params = [...buffers.map((b) => ({ decl: d.outline!.buffer(b, writes.has(b)), name: b })), ...scalars.map((v) => ({ decl: `${scope.get(v) ?? fail(v)} ${v}`, name: v }))];
          // Loops inside it run on its thread (a pool's thread cannot wait for the pool). The thread's
          // index comes from the caller: run on one thread it is 0, even when the application calls
          // the model from threads of its own.
          const text = loop("edgec_lo", "edgec_hi", "  ", { ...d, parallelFor: "" }), tid = text.replace(new RegExp(`\\b${THREAD_ID}\\b`, "g"), "edgec_tid");
          out += `${indent}${d.outline.loop(s.n, params, tid, tid !== text, !!s.fixed)}\n`;
        }
        break;
      }
      case "store":
        if (s.mask) {
          if (!s.lanes || !d.vector.storeLanes) throw new Error("internal: a masked store reached a dialect without them");
          if (s.stride) throw new Error("internal: a masked store that scatters (no dialect has one)");
          out += `${indent}${d.vector.storeLanes(s.buf, renderExpr(s.idx, d), renderExpr(s.val, d), s.lanes, renderExpr(s.mask.from, d), renderExpr(s.mask.to, d))};\n`;
          break;
        }
        if (s.pack) {
          if (!s.lanes || !d.vector.storePacked || s.stride) throw new Error("internal: a packed store reached a dialect without them, or scatters");
          out += `${indent}${d.vector.storePacked(`${s.buf} + ${renderExpr(s.idx, d)}`, renderExpr(s.val, d), s.lanes, s.pack, lanesIn(s.pack))};\n`;
          break;
        }
        if (s.stride) {
          if (!s.lanes || !d.vector.storeStrided) throw new Error("internal: a strided store reached a dialect without them");
          out += `${indent}${d.vector.storeStrided(`${s.buf} + ${renderExpr(s.idx, d)}`, renderExpr(s.val, d), s.lanes, s.stride)};\n`;
          break;
        }
        out += s.lanes
          ? `${indent}${d.vector.store(`${s.buf} + ${renderExpr(s.idx, d)}`, renderExpr(s.val, d), s.lanes)};\n`
          : `${indent}${s.buf}[${renderExpr(s.idx, d)}] = ${renderExpr(s.val, d)};\n`;
        break;
      case "let": {
        const type = s.lanes ? d.vector.type(s.lanes) : d.type(s.dtype);
        scope.set(s.name, type);
        out += `${indent}${type} ${s.name} = ${renderExpr(s.val, d)};\n`;
        break;
      }
      case "set":
        out += `${indent}${s.name} = ${renderExpr(s.val, d)};\n`;
        break;
      case "local":
        out += `${indent}${s.scope === "group" ? `${groupOf(d).memory} ` : ""}${d.type(s.dtype)} ${s.name}[${s.n}];\n`;
        break;
      case "barrier":
        out += `${indent}${groupOf(d).barrier}\n`;
        break;
      case "grid":
        // The grid's indices are bound by whoever launches it (the OpenCL backend's work-item ids).
        out += renderStmts(s.body, d, indent, scope);
        break;
      case "block":
        out += `${indent}{\n${renderStmts(s.body, d, indent + "  ", scope)}${indent}}\n`;
        break;
      case "if":
        out += `${indent}if (${renderExpr(s.c, d)}) {\n${renderStmts(s.then, d, indent + "  ", scope)}${indent}}`;
        out += s.else?.length ? ` else {\n${renderStmts(s.else, d, indent + "  ", scope)}${indent}}\n` : "\n";
        break;
    }
  }
  return out;
}

/** Shortest decimal that reads back as the same float32. */
export function float32Literal(v: number): string {
  for (let p = 1; p <= 9; p++) {
    const s = v.toPrecision(p);
    if (Math.fround(Number(s)) === v) return /[.e]/.test(s) ? s : `${s}.0`;
  }
  return v.toPrecision(9);
}
