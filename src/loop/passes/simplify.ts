import { bin, cast, int } from "../build.js";
import { touched, type Expr, type Kernel, type Program, type Stmt } from "../ir.js";

/**
 * Removes loops of one iteration (substituting 0 for their variable) and loops that do nothing, then
 * re-folds the integer index arithmetic this exposes, e.g. `i0 * 12288 + i1` → `i1` for a batch of 1.
 * Kernels left with nothing to do (zero-sized tensors) go too.
 */
export function simplify(p: Program): Program {
  return {
    ...p,
    kernels: p.kernels.map((k): Kernel => {
      const body = stmts(k.body, new Map());
      // A dropped loop may have held the only access to a buffer; the signature follows the body.
      const { reads, writes } = touched(body);
      return { ...k, body, params: k.params.filter((b) => reads.has(b) || writes.has(b)), writes: k.writes.filter((b) => writes.has(b)) };
    }).filter((k) => k.body.length),
  };
}

function expr(e: Expr, env: Map<string, Expr>): Expr {
  switch (e.k) {
    case "const": return e;
    case "var": return env.get(e.name) ?? e;
    case "load": return { ...e, idx: expr(e.idx, env) };
    case "bin": return bin(e.op, expr(e.a, env), expr(e.b, env));
    case "un": case "splat": return { ...e, a: expr(e.a, env) };
    case "slide": return { ...e, a: expr(e.a, env), b: expr(e.b, env) };
    case "cast": return cast(expr(e.a, env), e.dtype);
    case "select": {
      const c = expr(e.c, env);
      if (c.k === "const") return expr(c.v ? e.a : e.b, env);
      return { ...e, c, a: expr(e.a, env), b: expr(e.b, env) };
    }
  }
}

function stmts(ss: Stmt[], env: Map<string, Expr>): Stmt[] {
  const out: Stmt[] = [];
  for (const s of ss) {
    switch (s.k) {
      case "for":
        if (s.n === 0) break;
        if (s.n === 1) {
          const inner = stmts(s.body, new Map(env).set(s.v, int(0)));
          // The parallel axis, and the work it states, move inward rather than disappearing with its loop.
          if (s.parallel && inner.length === 1 && inner[0].k === "for") inner[0] = { ...inner[0], parallel: true, ...(s.work !== undefined && { work: s.work }), ...(s.fixed && { fixed: true }) };
          out.push(...inner);
          break;
        }
        {
          const body = stmts(s.body, env);
          if (body.length) out.push({ ...s, body });
        }
        break;
      case "store":
        out.push({ ...s, idx: expr(s.idx, env), val: expr(s.val, env), ...(s.mask && { mask: { from: expr(s.mask.from, env), to: expr(s.mask.to, env) } }) });
        break;
      case "local":
      case "barrier":
        out.push(s);
        break;
      case "grid":
        out.push({ ...s, body: stmts(s.body, env) });
        break;
      case "let":
      case "set":
        out.push({ ...s, val: expr(s.val, env) });
        break;
      case "block": {
        const body = stmts(s.body, env);
        if (body.length) out.push({ ...s, body });
        break;
      }
      case "if": {
        const c = expr(s.c, env);
        if (c.k === "const") out.push(...stmts(c.v ? s.then : s.else ?? [], env));
        else out.push({ ...s, c, then: stmts(s.then, env), else: s.else && stmts(s.else, env) });
        break;
      }
    }
  }
  return out;
}
