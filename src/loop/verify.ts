import { THREAD_ID, type Expr, type Program, type Stmt } from "./ir.js";

/**
 * Checks a loop program: every buffer a kernel touches is declared and in its params, it only
 * stores to buffers it declares as written, and variables are bound before use.
 */
export function verifyLoop(p: Program): void {
  for (const k of p.kernels) {
    const fail = (msg: string): never => {
      throw new Error(`internal: loop verify: kernel ${k.name} (${k.op} ${k.node}): ${msg}`);
    };
    const scope = new Set<string>([THREAD_ID]);
    const locals = new Set<string>();
    const ex = (e: Expr): void => {
      if (e.k === "var" && !scope.has(e.name)) fail(`variable ${e.name} is unbound`);
      if (e.k === "load") {
        if (!locals.has(e.buf) && (!p.buffers.has(e.buf) || !k.params.includes(e.buf))) fail(`loads undeclared buffer ${e.buf}`);
        ex(e.idx);
      }
      if (e.k === "bin") (ex(e.a), ex(e.b));
      if (e.k === "un" || e.k === "cast" || e.k === "splat") ex(e.a);
      if (e.k === "select") (ex(e.c), ex(e.a), ex(e.b));
    };
    const st = (ss: Stmt[]) => {
      for (const s of ss) {
        if (s.k === "for") {
          scope.add(s.v);
          st(s.body);
          scope.delete(s.v);
        } else if (s.k === "store") {
          if (!locals.has(s.buf) && !k.writes.includes(s.buf)) fail(`stores to ${s.buf}, which it does not declare as written`);
          ex(s.idx);
          ex(s.val);
        } else if (s.k === "let") {
          ex(s.val);
          scope.add(s.name);
        } else if (s.k === "block") {
          const before = new Set(scope);
          st(s.body);
          for (const v of [...scope]) if (!before.has(v)) scope.delete(v);
        } else if (s.k === "local") {
          locals.add(s.name);
        } else if (s.k === "set") {
          if (!scope.has(s.name)) fail(`assigns unbound ${s.name}`);
          ex(s.val);
        } else {
          ex(s.c);
          st(s.then);
          st(s.else ?? []);
        }
      }
    };
    st(k.body);
  }
}
