import type { DType } from "../core/dtype.js";
import { strides } from "../core/tensor.js";
import { lanesOf, THREAD_ID, type BinOp, type Expr, type Stmt, type UnOp } from "./ir.js";

/**
 * Smart constructors for loop IR. Integer index arithmetic on constants folds as it is built, so
 * lowerings can write plain `add(mul(i, stride), j)` and the C stays readable.
 */
export const cst = (v: number, dtype: DType = "float32"): Expr => ({ k: "const", dtype, v });
export const int = (v: number): Expr => cst(v, "int32");
export const vr = (name: string, dtype: DType = "int32"): Expr => ({ k: "var", name, dtype });

const isC = (e: Expr, v?: number): e is Extract<Expr, { k: "const" }> =>
  e.k === "const" && (v === undefined || e.v === v);

const COMPARE = new Set<BinOp>(["<", "<=", ">", ">=", "==", "!=", "&&", "||"]);

const same = (a: Expr, b: Expr) => JSON.stringify(a) === JSON.stringify(b);

/** x when `a + b` is (x / c) · c + x % c, which C's truncating division makes equal to x for every x. */
function divMod(a: Expr, b: Expr): Expr | undefined {
  if (b.k !== "bin" || b.op !== "%" || !isC(b.b) || a.k !== "bin" || a.op !== "*" || !isC(a.b, Number(b.b.v))) return undefined;
  const q = a.a;
  return q.k === "bin" && q.op === "/" && isC(q.b, Number(b.b.v)) && same(q.a, b.a) ? b.a : undefined;
}

export function bin(op: BinOp, a: Expr, b: Expr): Expr {
  const dtype: DType = COMPARE.has(op) ? "bool" : a.dtype;
  if (a.dtype === "int32" && b.dtype === "int32") {
    if (isC(a) && isC(b)) {
      const x = Number(a.v), y = Number(b.v);
      const r: Record<string, number | undefined> = {
        "+": x + y, "-": x - y, "*": x * y, "/": y ? Math.trunc(x / y) : undefined, "%": y ? x % y : undefined,
        min: Math.min(x, y), max: Math.max(x, y),
      };
      if (r[op] !== undefined) return int(r[op]!);
    }
    if (op === "+" && isC(b, 0)) return a;
    if (op === "+" && isC(a, 0)) return b;
    if (op === "-" && isC(b, 0)) return a;
    if (op === "*" && (isC(b, 1))) return a;
    if (op === "*" && (isC(a, 1))) return b;
    if (op === "*" && (isC(a, 0) || isC(b, 0))) return int(0);
    if (op === "/" && isC(b, 1)) return a;
    if (op === "+") {
      const whole = divMod(a, b);
      if (whole) return whole;
      if (a.k === "bin" && a.op === "+") {
        const inner = divMod(a.b, b);
        if (inner) return add(a.a, inner);
      }
    }
  }
  const lanes = Math.max(lanesOf(a), lanesOf(b));
  return lanes > 1 ? { k: "bin", op, a, b, dtype, lanes } : { k: "bin", op, a, b, dtype };
}

export const add = (a: Expr, b: Expr) => bin("+", a, b);
export const sub = (a: Expr, b: Expr) => bin("-", a, b);
export const mul = (a: Expr, b: Expr) => bin("*", a, b);
export const div = (a: Expr, b: Expr) => bin("/", a, b);
export const mod = (a: Expr, b: Expr) => bin("%", a, b);
export const min = (a: Expr, b: Expr) => bin("min", a, b);
export const max = (a: Expr, b: Expr) => bin("max", a, b);
export const lt = (a: Expr, b: Expr) => bin("<", a, b);
export const le = (a: Expr, b: Expr) => bin("<=", a, b);
export const gt = (a: Expr, b: Expr) => bin(">", a, b);
export const ge = (a: Expr, b: Expr) => bin(">=", a, b);
export const eq = (a: Expr, b: Expr) => bin("==", a, b);
export const and = (a: Expr, b: Expr) => bin("&&", a, b);
export const or = (a: Expr, b: Expr) => bin("||", a, b);
export const un = (op: UnOp, a: Expr): Expr =>
  lanesOf(a) > 1 ? { k: "un", op, a, dtype: a.dtype, lanes: lanesOf(a) } : { k: "un", op, a, dtype: op === "not" ? "bool" : a.dtype };
export const select = (c: Expr, a: Expr, b: Expr): Expr => ({ k: "select", c, a, b, dtype: a.dtype });
export const cast = (a: Expr, dtype: DType): Expr => (a.dtype === dtype ? a : isC(a) && typeof a.v === "number" && dtype !== "bool" && dtype !== "float16" ? cst(a.v, dtype) : { k: "cast", a, dtype });

/**
 * A tensor as a lowering sees it: a buffer name with dtype and logical shape. Fusion gives a Ref
 * hooks instead of memory: `at` computes the value at an index (an inlined producer), `put` says
 * what storing a value becomes (an epilogue applied on the way out). Lowerings that read and write
 * through load/store fuse without knowing it.
 */
export interface Ref {
  buf: string;
  dtype: DType;
  shape: number[];
  at?: (idx: Expr[]) => Expr;
  put?: (idx: Expr[], val: Expr) => Stmt;
}

/** Row-major flat index of `idx` in `shape`. */
export function flat(shape: readonly number[], idx: Expr[]): Expr {
  const st = strides(shape);
  return idx.reduce<Expr>((acc, e, d) => add(acc, mul(e, int(st[d]))), int(0));
}

/** The multi-dimensional index of flat position `i` in `shape` (for hooks behind flat accesses). */
export function unflat(shape: readonly number[], i: Expr): Expr[] {
  const st = strides(shape);
  // i lies inside the shape, so the first axis longer than 1 needs no remainder.
  const first = shape.findIndex((d) => d !== 1);
  return shape.map((d, k) => (d === 1 ? int(0) : k === first ? div(i, int(st[k])) : mod(div(i, int(st[k])), int(d))));
}

export const load = (r: Ref, idx: Expr[]): Expr =>
  r.at ? cast(r.at(idx), r.dtype) : { k: "load", buf: r.buf, idx: flat(r.shape, idx), dtype: r.dtype };
export const loadFlat = (r: Ref, i: Expr): Expr => (r.at ? load(r, unflat(r.shape, i)) : { k: "load", buf: r.buf, idx: i, dtype: r.dtype });
export const store = (r: Ref, idx: Expr[], val: Expr): Stmt =>
  r.put ? r.put(idx, cast(val, r.dtype)) : { k: "store", buf: r.buf, idx: flat(r.shape, idx), val: cast(val, r.dtype) };
export const storeFlat = (r: Ref, i: Expr, val: Expr): Stmt =>
  r.put ? store(r, unflat(r.shape, i), val) : { k: "store", buf: r.buf, idx: i, val: cast(val, r.dtype) };

/** Reads `r` at an output index under numpy broadcasting (size-1 and missing leading dims read index 0). */
export function loadBroadcast(r: Ref, outIdx: Expr[]): Expr {
  const pad = outIdx.length - r.shape.length;
  return load(r, r.shape.map((d, i) => (d === 1 ? int(0) : outIdx[i + pad])));
}

export const let_ = (name: string, dtype: DType, val: Expr): Stmt => ({ k: "let", name, dtype, val: cast(val, dtype) });
export const set = (name: string, val: Expr): Stmt => ({ k: "set", name, val });
export const if_ = (c: Expr, then: Stmt[], els?: Stmt[]): Stmt => ({ k: "if", c, then, else: els });

/** Fresh names for one kernel's loop variables and locals. */
export class Names {
  private n = 0;
  next(prefix = "i"): string {
    return `${prefix}${this.n++}`;
  }
}

/**
 * A perfect loop nest over `extents`; `body` receives the index variables. The outermost loop is
 * marked parallel when `parallel` is set (iterations write disjoint outputs).
 */
export function nest(names: Names, extents: number[], body: (idx: Expr[]) => Stmt[], parallel = true): Stmt[] {
  const vars = extents.map(() => names.next("i"));
  let inner = body(vars.map((v) => vr(v)));
  for (let d = extents.length - 1; d >= 0; d--) {
    inner = [{ k: "for", v: vars[d], n: extents[d], body: inner, parallel: parallel && d === 0 }];
  }
  return inner;
}

/** float32 vectors of `lanes` elements (see the loop IR's header): loads, stores and locals. */
export const vload = (buf: string, idx: Expr, lanes: number, stride: 1 | 2 = 1): Expr =>
  stride === 2 ? { k: "load", buf, idx, dtype: "float32", lanes, stride } : { k: "load", buf, idx, dtype: "float32", lanes };
export const vstore = (buf: string, idx: Expr, val: Expr, lanes: number): Stmt => ({ k: "store", buf, idx, val, lanes });
export const splat = (a: Expr, lanes: number): Expr => ({ k: "splat", a: cast(a, "float32"), dtype: "float32", lanes });
export const vlet = (name: string, val: Expr, lanes: number): Stmt => ({ k: "let", name, dtype: "float32", val, lanes });
export const vvar = (name: string, lanes: number): Expr => ({ k: "var", name, dtype: "float32", lanes });
export const threadId = vr(THREAD_ID);
