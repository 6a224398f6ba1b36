import { bin, splat, un, vload, vstore, vvar } from "./build.js";
import { lanesOf, type Expr, type Stmt } from "./ir.js";

/**
 * Vectorizes the body of a loop over `lane` = 0..lanes−1: loads and stores whose index moves by
 * one element per lane (loads also by two) become vector loads and stores at lane 0 (the index with `lane` := `base`),
 * values the lane does not change are broadcast, and float32 arithmetic (+ − · / min max neg exp nanof) works
 * lane-wise; branches on lane-invariant conditions stay branches. With `scatter`, stores whose index
 * moves by more than one element per lane become strided vector stores. Returns undefined when the
 * body does anything else (other types, gathers, math functions, comparisons); the caller then keeps
 * the scalar loop.
 */
export function vectorizeLanes(body: Stmt[], lane: string, base: Expr, lanes: number, scatter = false): Stmt[] | undefined {
  // Lanes run together: every lane's loads before any lane's stores. That is the loop's order only
  // when no lane reads what another lane writes: a buffer the body stores to may only be read at
  // the very index it is stored at.
  const stored = new Map<string, string>();
  const collect = (ss: Stmt[]): boolean =>
    ss.every((s) => {
      if (s.k === "store") {
        const key = JSON.stringify(s.idx);
        if ((stored.get(s.buf) ?? key) !== key) return false;
        stored.set(s.buf, key);
      }
      return s.k === "if" ? collect(s.then) && collect(s.else ?? []) : s.k === "block" || s.k === "for" ? collect(s.body) : true;
    });
  if (!collect(body)) return undefined;
  const locals = new Set<string>();
  const at = (e: Expr): Expr => subst(e, lane, base);
  const vec = (e: Expr): Expr | undefined => {
    if (e.dtype !== "float32" || lanesOf(e) > 1) return undefined;
    if (stride(e, lane) === 0 && !mentions(e, locals)) return splat(e, lanes);
    switch (e.k) {
      case "var": return locals.has(e.name) ? vvar(e.name, lanes) : undefined;
      case "load": {
        if (stored.has(e.buf) && stored.get(e.buf) !== JSON.stringify(e.idx)) return undefined;
        const s = stride(e.idx, lane);
        return s === 1 || s === 2 ? vload(e.buf, at(e.idx), lanes, s) : undefined;
      }
      case "cast": return e.a.dtype === "float32" ? vec(e.a) : undefined;
      case "un": {
        const a = e.op === "neg" || e.op === "exp" || e.op === "nanof" ? vec(e.a) : undefined;
        return a && un(e.op, a);
      }
      case "bin": {
        if (!["+", "-", "*", "/", "min", "max"].includes(e.op)) return undefined;
        const a = vec(e.a), b = vec(e.b);
        return a && b ? bin(e.op, a, b) : undefined;
      }
      default: return undefined;
    }
  };
  const stmts = (ss: Stmt[]): Stmt[] | undefined => {
    const out: Stmt[] = [];
    for (const s of ss) {
      if (s.k === "let" && s.dtype === "float32") {
        const v = vec(s.val);
        if (!v) return undefined;
        locals.add(s.name);
        out.push({ ...s, val: v, lanes });
      } else if (s.k === "let" && s.dtype === "int32" && stride(s.val, lane) === 0 && !mentions(s.val, locals)) {
        // An index every lane shares (an unrolled loop's variable) stays a scalar.
        out.push(s);
      } else if (s.k === "store" && !s.lanes && (stride(s.idx, lane) === 1 || (scatter && (stride(s.idx, lane) ?? 0) > 1))) {
        const v = vec(s.val), by = stride(s.idx, lane)!;
        if (!v) return undefined;
        out.push(by === 1 ? vstore(s.buf, at(s.idx), v, lanes) : { k: "store", buf: s.buf, idx: at(s.idx), val: v, lanes, stride: by });
      } else if (s.k === "set" && locals.has(s.name)) {
        const v = vec(s.val);
        if (!v) return undefined;
        out.push({ ...s, val: v });
      } else if (s.k === "if" && stride(s.c, lane) === 0 && !mentions(s.c, locals)) {
        const then = stmts(s.then), els = stmts(s.else ?? []);
        if (!then || !els) return undefined;
        out.push({ ...s, then, else: els.length ? els : undefined });
      } else if (s.k === "block") {
        const inner = stmts(s.body);
        if (!inner) return undefined;
        out.push({ k: "block", body: inner });
      } else return undefined;
    }
    return out;
  };
  return stmts(body);
}

/** How much an integer expression grows per unit of `v`: 0 when it does not mention v, undefined when not affine. */
function stride(e: Expr, v: string): number | undefined {
  switch (e.k) {
    case "const": return 0;
    case "var": return e.name === v ? 1 : 0;
    case "bin": {
      const a = stride(e.a, v), b = stride(e.b, v);
      if (a === undefined || b === undefined) return undefined;
      if (a === 0 && b === 0) return 0;
      if (e.op === "+") return a + b;
      if (e.op === "-") return a - b;
      if (e.op === "*" && e.b.k === "const" && b === 0) return a * Number(e.b.v);
      if (e.op === "*" && e.a.k === "const" && a === 0) return b * Number(e.a.v);
      return undefined;
    }
    case "load": return stride(e.idx, v) === 0 ? 0 : undefined;
    case "un": case "cast": case "splat": return stride(e.a, v) === 0 ? 0 : undefined;
    case "select": return [e.c, e.a, e.b].every((x) => stride(x, v) === 0) ? 0 : undefined;
    case "slide": return undefined;
  }
}

function mentions(e: Expr, names: Set<string>): boolean {
  switch (e.k) {
    case "const": return false;
    case "var": return names.has(e.name);
    case "load": return mentions(e.idx, names);
    case "bin": case "slide": return mentions(e.a, names) || mentions(e.b, names);
    case "un": case "cast": case "splat": return mentions(e.a, names);
    case "select": return mentions(e.c, names) || mentions(e.a, names) || mentions(e.b, names);
  }
}

function subst(e: Expr, v: string, by: Expr): Expr {
  switch (e.k) {
    case "const": return e;
    case "var": return e.name === v ? by : e;
    case "load": return { ...e, idx: subst(e.idx, v, by) };
    case "bin": return bin(e.op, subst(e.a, v, by), subst(e.b, v, by));
    case "un": case "cast": case "splat": return { ...e, a: subst(e.a, v, by) } as Expr;
    case "select": return { ...e, c: subst(e.c, v, by), a: subst(e.a, v, by), b: subst(e.b, v, by) };
    case "slide": return { ...e, a: subst(e.a, v, by), b: subst(e.b, v, by) };
  }
}
