import type { DType } from "../core/dtype.js";
import type { BinOp, Expr, Stmt, UnOp } from "../loop/ir.js";

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
}

export function renderExpr(e: Expr, d: Dialect): string {
  switch (e.k) {
    case "const": return d.literal(e.v, e.dtype);
    case "var": return e.name;
    case "load": return `${e.buf}[${renderExpr(e.idx, d)}]`;
    case "bin": return d.binary(e.op, e.a.dtype, renderExpr(e.a, d), renderExpr(e.b, d));
    case "un": return d.unary(e.op, e.a.dtype, renderExpr(e.a, d));
    case "select": return `(${renderExpr(e.c, d)} ? ${renderExpr(e.a, d)} : ${renderExpr(e.b, d)})`;
    case "cast": return d.cast(e.a.dtype, e.dtype, renderExpr(e.a, d));
  }
}

export function renderStmts(stmts: Stmt[], d: Dialect, indent = "  "): string {
  let out = "";
  for (const s of stmts) {
    switch (s.k) {
      case "for":
        if (s.parallel && d.parallelFor) out += `${indent}${d.parallelFor}\n`;
        out += `${indent}for (int32_t ${s.v} = 0; ${s.v} < ${s.n}; ++${s.v}) {\n${renderStmts(s.body, d, indent + "  ")}${indent}}\n`;
        break;
      case "store":
        out += `${indent}${s.buf}[${renderExpr(s.idx, d)}] = ${renderExpr(s.val, d)};\n`;
        break;
      case "let":
        out += `${indent}${d.type(s.dtype)} ${s.name} = ${renderExpr(s.val, d)};\n`;
        break;
      case "set":
        out += `${indent}${s.name} = ${renderExpr(s.val, d)};\n`;
        break;
      case "block":
        out += `${indent}{\n${renderStmts(s.body, d, indent + "  ")}${indent}}\n`;
        break;
      case "if":
        out += `${indent}if (${renderExpr(s.c, d)}) {\n${renderStmts(s.then, d, indent + "  ")}${indent}}`;
        out += s.else?.length ? ` else {\n${renderStmts(s.else, d, indent + "  ")}${indent}}\n` : "\n";
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
