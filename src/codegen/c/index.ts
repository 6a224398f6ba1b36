import { existsSync } from "node:fs";
import { $ } from "zx";
import { DTYPES } from "../../core/dtype.js";
import { numel, shapeStr, toNumbers, type Tensor } from "../../core/tensor.js";
import type { Buffer, Program } from "../../loop/ir.js";
import type { Target } from "../../target/schema.js";
import type { Backend, CompileOptions, Files } from "../backend.js";
import { renderStmts } from "../c-like.js";
import { renderTemplate } from "../template.js";
import { C_DIALECT, cLiteral, cVectorPrelude } from "./dialect.js";

export interface CConfig {
  target: Target;
  opts: CompileOptions;
}

/** Arena members, one per C element type, so every access goes through a member of its own type. */
const ARENA_MEMBER: Record<string, string> = {
  float: "f32", double: "f64", int8_t: "i8", uint8_t: "u8", int16_t: "i16", uint16_t: "u16",
  int32_t: "i32", uint32_t: "u32", int64_t: "i64", uint64_t: "u64",
};

function weightValues(t: Tensor): string {
  const vals = t.dtype === "int64" || t.dtype === "uint64" ? Array.from(t.data as BigInt64Array) : t.dtype === "float16" ? Array.from(t.data as Uint16Array) : toNumbers(t);
  const lit = (v: number | bigint) => cLiteral(v, t.dtype === "float16" || t.dtype === "bool" ? "uint16" : t.dtype);
  const lines: string[] = [];
  for (let i = 0; i < vals.length; i += 12) lines.push("  " + vals.slice(i, i + 12).map(lit).join(", "));
  return lines.join(",\n") || "  0";
}

function weightsBlob(p: Program): Uint8Array {
  const weights = [...p.buffers.values()].filter((b) => b.kind === "weight");
  const { offsets, bytes } = weightLayout(weights);
  const blob = new Uint8Array(bytes);
  for (const b of weights) blob.set(new Uint8Array(b.data!.data.buffer, b.data!.data.byteOffset, b.data!.data.byteLength), offsets.get(b.name)!);
  return blob;
}

const fieldName = (b: Buffer) => b.name.replace(/^(in|out)_/, "");

/** Byte offsets of the weights inside weights.bin, each 64-byte aligned. */
function weightLayout(weights: Buffer[]): { offsets: Map<string, number>; bytes: number } {
  const offsets = new Map<string, number>();
  let bytes = 0;
  for (const b of weights) {
    offsets.set(b.name, bytes);
    bytes += Math.ceil(b.data!.data.byteLength / 64) * 64;
  }
  return { offsets, bytes };
}

/** How the run function names a buffer when it calls a kernel. */
function argument(b: Buffer, fileOffsets?: Map<string, number>): string {
  const c = DTYPES[b.dtype].c;
  switch (b.kind) {
    case "input": return `inputs->${fieldName(b)}`;
    case "output": return `outputs->${fieldName(b)}`;
    case "weight": return fileOffsets ? `((const ${c} *)(edgec_weights + ${fileOffsets.get(b.name)}))` : b.name;
    case "arena": return `(edgec_arena.${ARENA_MEMBER[c]} + ${b.offset! / DTYPES[b.dtype].bytes})`;
  }
}

function view(p: Program, cfg: CConfig) {
  const name = cfg.opts.name;
  const io = (names: string[]) =>
    names.map((n, index) => {
      const b = p.buffers.get(n)!;
      const elems = numel(b.shape);
      return {
        index,
        field: fieldName(b),
        ctype: DTYPES[b.dtype].c,
        dtype: b.dtype,
        dims: shapeStr(b.shape),
        onnxName: b.value.replace(/\*\//g, "* /"),
        elems,
        bytes: elems * DTYPES[b.dtype].bytes,
        allocBytes: Math.max(1, elems * DTYPES[b.dtype].bytes),
        /** how run --check compares this buffer: float width in bytes, or 0 for exact */
        checkKind: ({ float32: 4, float64: 8, float16: 2 } as Record<string, number>)[b.dtype] ?? 0,
      };
    });
  const weights = [...p.buffers.values()].filter((b) => b.kind === "weight");
  const external = cfg.opts.weights === "file";
  const layout = weightLayout(weights);
  const arenaWords = Math.ceil(p.arenaBytes / 8);
  const arenaDecl = p.arenaBytes
    ? `static union {\n${Object.entries(ARENA_MEMBER).map(([c, m]) => `  ${c} ${m}[${(arenaWords * 8) / (c === "double" || c.endsWith("64_t") ? 8 : c.endsWith("32_t") || c === "float" ? 4 : c.endsWith("16_t") ? 2 : 1)}];`).join("\n")}\n} edgec_arena EDGEC_ALIGNED;\n`
    : "";
  const kernels = p.kernels.map((k) => {
    const params = k.params.map((n) => {
      const b = p.buffers.get(n)!;
      return `${k.writes.includes(n) ? "" : "const "}${DTYPES[b.dtype].c} *${n}`;
    });
    return {
      comment: `${k.op} ${k.node.replace(/\*\//g, "* /")}`,
      signature: `static void ${k.name}(${params.join(", ") || "void"})`,
      body: renderStmts(k.body, C_DIALECT).trimEnd(),
      call: `${k.name}(${k.params.map((n) => argument(p.buffers.get(n)!, external ? layout.offsets : undefined)).join(", ")});`,
    };
  });
  return {
    name,
    NAME: name.toUpperCase(),
    version: cfg.opts.version,
    source: cfg.opts.source,
    target: cfg.target.name,
    inputs: io(p.inputs),
    outputs: io(p.outputs),
    noInputs: p.inputs.length ? [] : [{}],
    noOutputs: p.outputs.length ? [] : [{}],
    arenaBytes: p.arenaBytes,
    maxThreads: Math.max(1, cfg.target.cores),
    arenaDecl,
    vectorPrelude: cVectorPrelude(Math.max(4, cfg.target.vectorBytes / 4)),
    weightBytes: weights.reduce((s, b) => s + numel(b.shape) * DTYPES[b.dtype].bytes, 0),
    externalWeights: external ? [{ bytes: layout.bytes }] : [],
    weights: (external ? [] : weights).map((b) => ({
      decl: `static const ${DTYPES[b.dtype].c} ${b.name}[${Math.max(1, numel(b.shape))}] EDGEC_ALIGNED`,
      comment: `${b.dtype} ${shapeStr(b.shape)} ${b.value.replace(/\*\//g, "* /")}`,
      values: weightValues(b.data!),
    })),
    kernels,
    cc: cfg.target.cc,
    cflags: cfg.target.cflags.join(" "),
    ldflags: cfg.target.ldflags.join(" "),
  };
}

/** Standalone C99: model.h, model.c, a `run` harness and a Makefile; no runtime library, no malloc. */
export const cBackend: Backend<CConfig> = {
  name: "c",
  configure: (target, opts) => ({ target, opts }),
  lower: (p) => p,
  render(p, cfg): Files {
    const v = view(p, cfg);
    const files: Files = {
      "model.h": renderTemplate("c/model.h", v),
      "model.c": renderTemplate("c/model.c", v),
      "run.c": renderTemplate("c/run.c", v),
      Makefile: renderTemplate("c/Makefile", v),
    };
    if (cfg.opts.weights === "file") files["weights.bin"] = weightsBlob(p);
    return files;
  },
  async package(dir, cfg) {
    const cc = cfg.target.cc;
    const found = await $({ nothrow: true, quiet: true })`command -v ${cc}`;
    if (found.exitCode !== 0) return { built: [], skipped: `compiler '${cc}' not found; sources only` };
    // Generated code is warning-free by contract, so packaging enforces it with -Werror.
    const vars = ["EDGEC_CFLAGS=-std=c99 -Wall -Wextra -Werror", `CC=${cc}`];
    if (cfg.opts.extraCflags?.length) vars.push(`CFLAGS=${[...cfg.target.cflags, ...cfg.opts.extraCflags].join(" ")}`);
    if (cfg.opts.extraCflags?.some((f) => f.startsWith("-fsanitize"))) vars.push(`LDFLAGS=${cfg.opts.extraCflags.join(" ")}`);
    const r = await $({ nothrow: true, quiet: true, cwd: dir })`make -s run lib${cfg.opts.name}.a ${vars}`;
    if (r.exitCode !== 0) throw new Error(`building the generated C failed:\n${r.stderr || r.stdout}`);
    return { built: ["run", `lib${cfg.opts.name}.a`].filter((f) => existsSync(`${dir}/${f}`)) };
  },
};
