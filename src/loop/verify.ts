import { THREAD_ID, type Expr, type Program, type Stmt } from "./ir.js";

/**
 * Checks a loop program: every buffer a kernel touches is declared and in its params, it only
 * stores to buffers it declares as written, and variables are bound before use. A grid is at a
 * kernel's top level beside loops only (each is one launch), group memory is declared at the top of
 * its body (OpenCL's kernel scope), and barriers are in grids only.
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
      if (e.k === "bin" || e.k === "slide") (ex(e.a), ex(e.b));
      if (e.k === "un" || e.k === "cast" || e.k === "splat") ex(e.a);
      if (e.k === "select") (ex(e.c), ex(e.a), ex(e.b));
    };
    let inGrid = false;
    const st = (ss: Stmt[]) => {
      for (const s of ss) {
        if (s.k === "grid") {
          if (ss !== k.body || inGrid) fail("a grid is not at the kernel's top level");
          if (k.body.some((x) => x.k !== "for" && x.k !== "grid")) fail("a grid beside statements other than loops");
          const vars = s.dims.flatMap((d) => [d.group, d.item]);
          if (s.dims.length < 1 || s.dims.length > 3) fail(`a grid of ${s.dims.length} dimensions`);
          const top = s.body.findIndex((x) => x.k !== "local" || x.scope !== "group");
          if (s.body.slice(top < 0 ? s.body.length : top).some((x) => x.k === "local" && x.scope === "group")) fail("group memory declared below the top of a grid");
          vars.forEach((v) => scope.add(v));
          inGrid = true;
          st(s.body);
          inGrid = false;
          vars.forEach((v) => scope.delete(v));
        } else if (s.k === "barrier") {
          if (!inGrid) fail("a barrier outside a grid");
        } else if (s.k === "for") {
          scope.add(s.v);
          st(s.body);
          scope.delete(s.v);
        } else if (s.k === "store") {
          if (!locals.has(s.buf) && !k.writes.includes(s.buf)) fail(`stores to ${s.buf}, which it does not declare as written`);
          ex(s.idx);
          ex(s.val);
          if (s.mask) (ex(s.mask.from), ex(s.mask.to));
        } else if (s.k === "let") {
          ex(s.val);
          scope.add(s.name);
        } else if (s.k === "block") {
          const before = new Set(scope);
          st(s.body);
          for (const v of [...scope]) if (!before.has(v)) scope.delete(v);
        } else if (s.k === "local") {
          if (s.scope === "group" && !inGrid) fail(`group memory ${s.name} outside a grid`);
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
