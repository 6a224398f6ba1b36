import { let_, vr } from "../build.js";
import { lanesOf, THREAD_ID, type Expr, type Kernel, type Program, type Stmt } from "../ir.js";

/**
 * Moves costly scalar computations that do not change inside a loop out of it: an
 * expression with an exp, log, sqrt, division and so on that reads no variable bound or set in
 * the loop, and no buffer the loop stores to, is computed once into a local before the loop. A
 * squeeze-and-excitation's scale, sigmoid(s[c]), would otherwise be recomputed for every element of
 * its channel: C compilers keep expf in the loop (it may set errno).
 *
 * Nothing moves from where the loop may skip it (under an `if`, in a select's arms, right of && or
 * ||, which may guard an index or a divisor), so a hoisted read is one the loop made anyway. A
 * buffer a kernel updates in place is read at the index it writes, which no loop writing it leaves
 * unchanged, so such reads never qualify. Parallel loops and work-group grids are not crossed: their
 * iterations run on other threads or work-items.
 */
export function hoistInvariants(p: Program): Program {
  return { ...p, kernels: p.kernels.map((k): Kernel => ({ ...k, body: stmts(k.body) })) };
}

type For = Extract<Stmt, { k: "for" }>;

const CHEAP_UNARY = new Set(["neg", "not", "abs", "floor", "ceil", "nanof"]);

/** Whether computing `e` costs a libm call or a division: worth a local of its own. */
function costly(e: Expr): boolean {
  switch (e.k) {
    case "un": return !CHEAP_UNARY.has(e.op) || costly(e.a);
    case "bin": return ((e.op === "/" || e.op === "pow" || e.op === "fmod") && e.dtype !== "int32") || costly(e.a) || costly(e.b);
    case "cast": case "splat": return costly(e.a);
    case "select": return costly(e.c) || costly(e.a) || costly(e.b);
    case "slide": return costly(e.a) || costly(e.b);
    case "load": return costly(e.idx);
    default: return false;
  }
}

/** What changes from one iteration of a loop body to the next: the variables it binds or sets, and the buffers it stores to. */
function variant(body: Stmt[], loopVar: string): { vars: Set<string>; bufs: Set<string> } {
  const vars = new Set([loopVar, THREAD_ID]), bufs = new Set<string>();
  const walk = (ss: Stmt[]): void => {
    for (const s of ss) {
      if (s.k === "for") (vars.add(s.v), walk(s.body));
      else if (s.k === "let" || s.k === "set") vars.add(s.name);
      else if (s.k === "local") bufs.add(s.name);
      else if (s.k === "store") bufs.add(s.buf);
      else if (s.k === "block" || s.k === "grid") walk(s.body);
      else if (s.k === "if") (walk(s.then), walk(s.else ?? []));
    }
  };
  walk(body);
  return { vars, bufs };
}

function invariant(e: Expr, v: { vars: Set<string>; bufs: Set<string> }): boolean {
  switch (e.k) {
    case "const": return true;
    case "var": return !v.vars.has(e.name);
    case "load": return !v.bufs.has(e.buf) && invariant(e.idx, v);
    case "bin": case "slide": return invariant(e.a, v) && invariant(e.b, v);
    case "un": case "cast": case "splat": return invariant(e.a, v);
    case "select": return invariant(e.c, v) && invariant(e.a, v) && invariant(e.b, v);
  }
}

/** Outer loops first: what does not change in a loop leaves it, and what does not change in an inner loop only, that one. */
function stmts(ss: Stmt[]): Stmt[] {
  return ss.flatMap((s): Stmt[] => {
    switch (s.k) {
      case "for": {
        if (s.parallel) return [{ ...s, body: stmts(s.body) }];
        const { lets, loop } = hoist(s);
        return [...lets, { ...loop, body: stmts(loop.body) }];
      }
      case "block": return [{ ...s, body: stmts(s.body) }];
      case "if": return [{ ...s, then: stmts(s.then), else: s.else && stmts(s.else) }];
      default: return [s];
    }
  });
}

/** The locals hoisted out of `loop`, and the loop reading them. */
function hoist(loop: For): { lets: Stmt[]; loop: For } {
  const v = variant(loop.body, loop.v);
  const lets: Stmt[] = [];
  let count = 0;
  const take = (e: Expr, guarded: boolean): Expr | undefined => {
    if (guarded || lanesOf(e) > 1 || e.k === "const" || e.k === "var" || !costly(e) || !invariant(e, v)) return undefined;
    const name = `${loop.v}_h${count++}`;
    lets.push(let_(name, e.dtype, e));
    return vr(name, e.dtype);
  };
  const ex = (e: Expr, guarded: boolean): Expr => {
    const hoisted = take(e, guarded);
    if (hoisted) return hoisted;
    switch (e.k) {
      case "load": return { ...e, idx: ex(e.idx, guarded) };
      case "bin": return { ...e, a: ex(e.a, guarded), b: ex(e.b, guarded || e.op === "&&" || e.op === "||") };
      case "un": case "cast": case "splat": return { ...e, a: ex(e.a, guarded) };
      case "select": return { ...e, c: ex(e.c, guarded), a: ex(e.a, true), b: ex(e.b, true) };
      case "slide": return { ...e, a: ex(e.a, guarded), b: ex(e.b, guarded) };
      default: return e;
    }
  };
  const st = (ss: Stmt[], guarded: boolean): Stmt[] => ss.map((s): Stmt => {
    switch (s.k) {
      case "for": return { ...s, body: st(s.body, guarded) };
      case "block": return { ...s, body: st(s.body, guarded) };
      case "if": return { ...s, c: ex(s.c, guarded), then: st(s.then, true), else: s.else && st(s.else, true) };
      case "store": return { ...s, idx: ex(s.idx, guarded), val: ex(s.val, guarded), ...(s.mask && { mask: { from: ex(s.mask.from, guarded), to: ex(s.mask.to, guarded) } }) };
      case "let": case "set": return { ...s, val: ex(s.val, guarded) };
      default: return s;
    }
  });
  const body = st(loop.body, false);
  return { lets, loop: { ...loop, body } };
}
