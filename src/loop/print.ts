import { shapeStr } from "../core/tensor.js";
import type { Expr, Program, Stmt } from "./ir.js";

function expr(e: Expr): string {
  switch (e.k) {
    case "const": return `${e.v}${e.dtype === "int32" ? "" : `:${e.dtype}`}`;
    case "var": return e.name;
    case "load": return e.lanes ? `${e.buf}[${expr(e.idx)} +: ${e.lanes}${e.stride ? ` step ${e.stride}` : ""}${e.spread ? ` spread 0x${e.spread.mask.toString(16)} fill ${e.spread.fill}` : ""}]` : `${e.buf}[${expr(e.idx)}]`;
    case "splat": return `splat${e.lanes}(${expr(e.a)})`;
    case "bin": return /^[a-z]/.test(e.op) ? `${e.op}(${expr(e.a)}, ${expr(e.b)})` : `(${expr(e.a)} ${e.op} ${expr(e.b)})`;
    case "un": return `${e.op}(${expr(e.a)})`;
    case "select": return `select(${expr(e.c)}, ${expr(e.a)}, ${expr(e.b)})`;
    case "cast": return `${e.dtype}(${expr(e.a)})`;
    case "slide": return `slide${e.lanes}(${expr(e.a)}, ${expr(e.b)}, ${e.by})`;
  }
}

function stmts(ss: Stmt[], ind: string): string {
  return ss
    .map((s) => {
      switch (s.k) {
        case "for": return `${ind}${s.parallel ? "parallel " : ""}for ${s.v} in 0..${s.n} {\n${stmts(s.body, ind + "  ")}${ind}}\n`;
        case "store": return `${ind}${s.buf}[${expr(s.idx)}${s.lanes ? ` +: ${s.lanes}` : ""}]${s.mask ? ` lanes ${expr(s.mask.from)}..${expr(s.mask.to)}` : ""}${s.stride ? ` step ${s.stride}` : ""}${s.pack ? ` pack 0x${s.pack.toString(16)}` : ""} = ${expr(s.val)}\n`;
        case "let": return `${ind}${s.dtype}${s.lanes ? `x${s.lanes}` : ""} ${s.name} = ${expr(s.val)}\n`;
        case "set": return `${ind}${s.name} = ${expr(s.val)}\n`;
        case "local": return `${ind}${s.scope === "group" ? "group " : ""}local ${s.dtype} ${s.name}[${s.n}]\n`;
        case "grid": return `${ind}grid ${s.dims.map((d) => `${d.group} in 0..${d.groups} x ${d.item} in 0..${d.items}`).join(", ")} {\n${stmts(s.body, ind + "  ")}${ind}}\n`;
        case "barrier": return `${ind}barrier\n`;
        case "block": return `${ind}{\n${stmts(s.body, ind + "  ")}${ind}}\n`;
        case "if": return `${ind}if ${expr(s.c)} {\n${stmts(s.then, ind + "  ")}${ind}}${s.else?.length ? ` else {\n${stmts(s.else, ind + "  ")}${ind}}` : ""}\n`;
      }
    })
    .join("");
}

/** Text form of a loop program; what --dump-ir prints for loop passes. */
export function printLoop(p: Program): string {
  const bufs = [...p.buffers.values()].map(
    (b) => `  ${b.kind} ${b.name}: ${b.dtype}${shapeStr(b.shape)}${b.offset !== undefined ? ` @${b.offset}` : ""}`,
  );
  const ks = p.kernels.map((k) => `kernel ${k.name}(${k.params.join(", ")})  // ${k.op} ${k.node}\n${stmts(k.body, "  ")}`);
  return `program ${p.name} arena=${p.arenaBytes}\n${bufs.join("\n")}\n${ks.join("\n")}`;
}
