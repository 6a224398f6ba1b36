import { existsSync } from "node:fs";
import { $ } from "zx";
import { DTYPES } from "../../core/dtype.js";
import { numel, shapeStr, toNumbers, type Tensor } from "../../core/tensor.js";
import { THREAD_ID, type Buffer, type Program } from "../../loop/ir.js";
import type { Target } from "../../target/schema.js";
import type { Backend, CompileOptions, Files, SharedRender } from "../backend.js";
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

export const weightsOf = (p: Program) => [...p.buffers.values()].filter((b) => b.kind === "weight");

export function weightsBlob(p: Program): Uint8Array {
  const weights = weightsOf(p);
  const { offsets, bytes } = weightLayout(weights);
  const blob = new Uint8Array(bytes);
  for (const b of weights) blob.set(new Uint8Array(b.data!.data.buffer, b.data!.data.byteOffset, b.data!.data.byteLength), offsets.get(b.name)!);
  return blob;
}

const fieldName = (b: Buffer) => b.name.replace(/^(in|out)_/, "");

/** Byte offsets of the weights inside weights.bin, each 64-byte aligned. */
export function weightLayout(weights: Buffer[]): { offsets: Map<string, number>; bytes: number } {
  const offsets = new Map<string, number>();
  let bytes = 0;
  for (const b of weights) {
    offsets.set(b.name, bytes);
    bytes += Math.ceil(b.data!.data.byteLength / 64) * 64;
  }
  return { offsets, bytes };
}

const elementBytes = (c: string) => (c === "double" || c.endsWith("64_t") ? 8 : c.endsWith("32_t") || c === "float" ? 4 : c.endsWith("16_t") ? 2 : 1);

/** The members of a union of `bytes` bytes rounded up to whole 8-byte words (at least one). */
function unionMembers(bytes: number): string {
  const words = Math.max(1, Math.ceil(bytes / 8));
  return Object.entries(ARENA_MEMBER).map(([c, m]) => `  ${c} ${m}[${(words * 8) / elementBytes(c)}];`).join("\n");
}

/** A model's place in an artifact of several: its index, its section of weights.bin, the shared sizes. */
interface Slot {
  index: number;
  section: { offset: number; bytes: number };
  arenaBytes: number;
  zoneBytes: number;
}

/**
 * What every translation unit of an artifact of several models declares alike: the arena and the
 * weights zone model.c defines, and the loader of the zone. Identical union types in every unit
 * make the extern declarations agree with the definitions.
 */
function sharedDecls(arenaBytes: number, zoneBytes: number): string {
  return `union edgec_arena_type {\n${unionMembers(arenaBytes)}\n};
extern union edgec_arena_type edgec_arena;
union edgec_zone_type {\n${unionMembers(zoneBytes)}\n};
extern union edgec_zone_type edgec_zone;
int edgec_load_weights(int model, size_t offset, size_t bytes);
`;
}

type IoView = ReturnType<typeof ioView>;

/** A model's inputs or outputs (buffer names) as the templates lay them out. */
export function ioView(p: Program, names: string[]) {
  return names.map((n, index) => {
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
      /** how run --check compares this buffer: float width in bytes, or 0 for exact */
      checkKind: ({ float32: 4, float64: 8, float16: 2 } as Record<string, number>)[b.dtype] ?? 0,
    };
  });
}

/** The body of a function taking the inputs and outputs as arrays in field order (edgec_run_by_name's form) and calling NAME_run. */
export function adapterBody(name: string, inputs: IoView, outputs: IoView): string {
  return [
    `  ${name}_inputs in;`,
    `  ${name}_outputs out;`,
    "  (void)inputs;",
    "  (void)outputs;",
    "  memset(&in, 0, sizeof in);",
    "  memset(&out, 0, sizeof out);",
    ...inputs.map((x) => `  in.${x.field} = (const ${x.ctype} *)inputs[${x.index}];`),
    ...outputs.map((x) => `  out.${x.field} = (${x.ctype} *)outputs[${x.index}];`),
    `  return ${name}_run(&in, &out);`,
  ].join("\n");
}

/** The body of a function running NAME_run_stream over k inferences whose buffers lie back to back in each array. */
export function streamAdapterBody(name: string, inputs: IoView, outputs: IoView): string {
  return [
    `  ${name}_inputs *in = calloc((size_t)k, sizeof *in);`,
    `  ${name}_outputs *out = calloc((size_t)k, sizeof *out);`,
    "  int s, rc;",
    "  (void)inputs;",
    "  (void)outputs;",
    "  if (!in || !out) exit(3);",
    "  for (s = 0; s < k; s++) {",
    ...inputs.map((x) => `    in[s].${x.field} = (const ${x.ctype} *)inputs[${x.index}] + (size_t)s * ${x.elems};`),
    ...outputs.map((x) => `    out[s].${x.field} = (${x.ctype} *)outputs[${x.index}] + (size_t)s * ${x.elems};`),
    "  }",
    `  rc = ${name}_run_stream(in, out, k);`,
    "  free(in);",
    "  free(out);",
    "  return rc;",
  ].join("\n");
}

/**
 * One model's view: what its translation unit and its part of model.h need. With a slot, the model
 * is one of several: it uses the shared arena and reads its weights from the shared zone, which
 * its run function loads first.
 */
export function view(p: Program, cfg: CConfig, slot?: Slot) {
  const name = cfg.opts.name;
  const weights = weightsOf(p);
  const external = cfg.opts.weights === "file" && !slot;
  const profile = cfg.opts.profile && !slot;
  const layout = weightLayout(weights);
  const weightRef = (b: Buffer): string => {
    const c = DTYPES[b.dtype].c;
    if (slot) return `(edgec_zone.${ARENA_MEMBER[c]} + ${layout.offsets.get(b.name)! / DTYPES[b.dtype].bytes})`;
    return external ? `((const ${c} *)(edgec_weights + ${layout.offsets.get(b.name)}))` : b.name;
  };
  /** How the run function names a buffer when it calls a kernel. */
  const argument = (b: Buffer): string => {
    switch (b.kind) {
      case "input": return `inputs->${fieldName(b)}`;
      case "output": return `outputs->${fieldName(b)}`;
      case "weight": return weightRef(b);
      case "arena": return `(edgec_arena.${ARENA_MEMBER[DTYPES[b.dtype].c]} + ${b.offset! / DTYPES[b.dtype].bytes})`;
    }
  };
  const arenaDecl = slot
    ? sharedDecls(slot.arenaBytes, slot.zoneBytes)
    : p.arenaBytes ? `static union {\n${unionMembers(p.arenaBytes)}\n} edgec_arena EDGEC_ALIGNED;\n` : "";
  // Kernels whose code is the same up to their parameters' names (a network's repeated blocks) share
  // one function: the same speed in less code, which a WebAssembly download or a microcontroller's
  // flash pays for.
  const byCode = new Map<string, string>();
  // With threads (-pthread), each parallel loop is a function of a range of its iterations that the
  // model's pool runs (see EDGEC_PARALLEL_RUN): no parallel region on one thread, and on more a
  // wake-up of spinning threads instead of an OpenMP region (libgomp: 1.5 µs on one thread, 3.9 on
  // two; x86-64, 2 vCPUs).
  const outlined = cfg.target.cflags.includes("-pthread");
  const kernels = p.kernels.map((k) => {
    const pointer = (n: string, writes: boolean) => {
      const b = p.buffers.get(n);
      if (!b) throw new Error(`internal: '${k.name}' uses '${n}' in a parallel loop, which is not a buffer of the program`);
      return `${writes ? "" : "const "}${DTYPES[b.dtype].c} *${n}`;
    };
    const params = k.params.map((n) => pointer(n, k.writes.includes(n)));
    // The loops' functions are EDGEC_LOOPi until the kernel's own name is known (see below).
    const loops: string[] = [];
    // A loop's function takes what it uses from the kernel in a struct of the same name.
    const outline = {
      buffer: pointer,
      loop: (n: number, ps: { decl: string; name: string }[], body: string, tid: boolean, fixed: boolean) => {
        const fn = `EDGEC_LOOP${loops.length}`;
        const unpack = [ps.length ? `  const struct ${fn} *edgec_a = edgec_args;\n` : "  (void)edgec_args;\n", ...ps.map((q) => `  ${q.decl} = edgec_a->${q.name};\n`), tid ? "" : "  (void)edgec_tid;\n"];
        const struct = ps.length ? `struct ${fn} {\n${ps.map((q) => `  ${q.decl};\n`).join("")}};\n` : "";
        loops.push(`${struct}static void ${fn}(const void *edgec_args, int32_t edgec_lo, int32_t edgec_hi, int32_t edgec_tid) {\n${unpack.join("")}${body}}`);
        const run = fixed ? "EDGEC_PARALLEL_RUN_FIXED" : "EDGEC_PARALLEL_RUN";
        return ps.length
          ? `{ const struct ${fn} edgec_args = { ${ps.map((q) => q.name).join(", ")} }; ${run}(${n}, ${fn}, &edgec_args); }`
          : `${run}(${n}, ${fn}, NULL);`;
      },
    };
    const dialect = { ...C_DIALECT, parallelMinWork: cfg.target.parallelMinWork, ...(outlined && { outline }) };
    // Outside the loops' functions the kernel runs on the caller's thread, as thread 0.
    const rendered = renderStmts(k.body, dialect).trimEnd();
    const body = outlined ? rendered.replace(new RegExp(`\\b${THREAD_ID}\\b`, "g"), "0") : rendered;
    const text = [...loops, body].join("\n");
    const position = new Map(k.params.map((n, i) => [n, i]));
    const code = k.params.length ? text.replace(new RegExp(`\\b(${k.params.join("|")})\\b`, "g"), (n) => `\0${position.get(n)}`) : text;
    const key = `${params.map((q, i) => q.replace(/\S+$/, `${i}`)).join(",")}\n${code}`;
    const shared = byCode.get(key);
    if (!shared) byCode.set(key, k.name);
    const named = (t: string) => t.replace(/\bEDGEC_LOOP(\d+)\b/g, `${k.name}_loop$1`);
    return {
      comment: `${k.op} ${k.node.replace(/\*\//g, "* /")}`,
      loops: loops.map(named),
      signature: `static void ${k.name}(${params.join(", ") || "void"})`,
      body: named(body),
      call: `${shared ?? k.name}(${k.params.map((n) => argument(p.buffers.get(n)!)).join(", ")});`,
      shared: shared !== undefined,
    };
  });
  const inputs = ioView(p, p.inputs);
  const outputs = ioView(p, p.outputs);
  const weightsCheck = slot && layout.bytes ? [`if (edgec_load_weights(${slot.index}, ${slot.section.offset}, ${slot.section.bytes}) != 0) return -2;`] : external ? ["if (!edgec_weights) return -2;"] : [];
  return {
    name,
    NAME: name.toUpperCase(),
    index: slot?.index ?? 0,
    version: cfg.opts.version,
    source: cfg.opts.source,
    target: cfg.target.name,
    inputs,
    outputs,
    inputCount: inputs.length,
    outputCount: outputs.length,
    noInputs: p.inputs.length ? [] : [{}],
    noOutputs: p.outputs.length ? [] : [{}],
    arenaBytes: p.arenaBytes,
    // The pool keeps a loop's thread count in 10 bits.
    maxThreads: Math.min(1023, Math.max(1, cfg.target.cores)),
    arenaDecl,
    vectorPrelude: cVectorPrelude(Math.max(1, cfg.target.vectorBytes / 4)),
    weightBytes: weights.reduce((s, b) => s + numel(b.shape) * DTYPES[b.dtype].bytes, 0),
    externalWeights: external ? [{ name, bytes: layout.bytes }] : [],
    weightsCheck,
    /** what model.h says about the arena and about run's -2 */
    arenaOwner: slot ? " shared by every model of this artifact" : "",
    weightsFailure: slot ? "its weights could not be loaded into the weights zone" : "external weights were not set",
    runFailures: "",
    weights: (external || slot ? [] : weights).map((b) => ({
      decl: `static const ${DTYPES[b.dtype].c} ${b.name}[${Math.max(1, numel(b.shape))}] EDGEC_ALIGNED`,
      comment: `${b.dtype} ${shapeStr(b.shape)} ${b.value.replace(/\*\//g, "* /")}`,
      values: weightValues(b.data!),
    })),
    kernels,
    /** the kernel functions model.c defines: one per distinct code */
    definitions: kernels.filter((k) => !k.shared),
    /** the statements of NAME_run after the weights check: the kernel calls (a GPU backend adds launches and transfers), each timed in a profiling build */
    steps: profile ? ["edgec_prof_copies = 0;", ...kernels.flatMap((k, i) => ["edgec_prof_start();", k.call, `edgec_prof_mark(${i});`])] : kernels.map((k) => k.call),
    /** a profiling build: how many kernels NAME_profile reports */
    profile: profile ? [{ name, NAME: name.toUpperCase(), count: p.kernels.length }] : [],
    /** declarations another processor's runtime adds (OpenCL) */
    deviceDecls: "",
    adapter: adapterBody(name, inputs, outputs),
    streamAdapter: streamAdapterBody(name, inputs, outputs),
    /** a backend whose runs can fail at run time (OpenCL) sets NAME_last_error, which run.c prints, and NAME_device, the device it ran on */
    lastError: [] as { fn: string; device: string }[],
    lastErrorFn: "NULL",
    deviceFn: "NULL",
    /** NAME_run_stream: its pipeline's stage functions (OpenCL, --objective throughput), and its body: here NAME_run per inference */
    streamStages: [] as { name: string; cpu: string; enqueue: string; drain: string }[],
    streamDoc: "They run one after the other, as that many calls of the run function would.",
    streamBody: ["for (i = 0; i < n; i++) {", `  int rc = ${name}_run(&inputs[i], &outputs[i]);`, "  if (rc != 0) return rc;", "}"],
    /** a profiling build with a GPU: the copy NAME_profile_copy makes and the sizes run times it at */
    profileCopy: [] as { name: string; NAME: string; small: number; max: number }[],
  };
}

export type ModelView = ReturnType<typeof view>;

/** model.h: every model's API and, for several models, the artifact's own (`shared`). */
export function headerView(models: ModelView[], cfg: CConfig, shared: object[]) {
  return { version: cfg.opts.version, source: cfg.opts.source, target: cfg.target.name, guard: `${cfg.opts.name.toUpperCase()}_MODEL_H`, models, shared };
}

/**
 * The `run` harness: a table of the models it can run. One model is called through a local adapter
 * on its typed API; several through edgec_run_by_name, with weights.bin read through a reader.
 */
export function harnessView(models: ModelView[], cfg: CConfig, several: boolean) {
  // WebAssembly has neither getrusage's maximum resident size nor /proc: run.c reports its linear memory.
  const linear = cfg.target.arch === "wasm32";
  return {
    version: cfg.opts.version,
    api: several ? "edgec_run_by_name" : `${models[0].name}_run`,
    models,
    modelList: models.map((m) => m.name).join(", "),
    maxIo: Math.max(1, ...models.map((m) => Math.max(m.inputCount, m.outputCount))),
    runFunction: several ? "edgec_run_by_name" : "run_model",
    adapters: several ? [] : models,
    externalWeights: models.flatMap((m) => m.externalWeights),
    weightsReader: several ? [{}] : [],
    /** several models: run --stream is refused (NAME_run_stream is per model) */
    noStream: several ? [{}] : [],
    /** a profiling build of one model: per-kernel times, and copy times when a GPU runs kernels */
    profile: several ? [] : models[0].profile,
    profileCopy: several ? [] : models[0].profileCopy,
    processMemory: linear ? [] : [{}],
    linearMemory: linear ? [{}] : [],
  };
}

/** The Makefile: one object per translation unit, all in lib<name>. */
export function makefileView(cfg: CConfig, sources: string[], ldlibs = "-lm") {
  const units = sources.map((src) => ({ src, obj: src.replace(/\.c$/, ".o") }));
  return {
    name: cfg.opts.name,
    version: cfg.opts.version,
    target: cfg.target.name,
    units,
    objects: units.map((u) => u.obj).join(" "),
    cc: cfg.target.cc,
    cflags: cfg.target.cflags.join(" "),
    ldflags: cfg.target.ldflags.join(" "),
    ldlibs,
  };
}

/**
 * Several models in one artifact, CalcGraph-style: preallocated zones instead of one set of buffers
 * per model. The activations of all models share one static arena sized for the largest; weights.bin
 * holds one 64-byte aligned section per model, and a model's run reads its section into one static
 * weights zone sized for the largest section when the zone holds another model's. Memory is then
 * the largest arena plus the largest section, not the sum over models.
 */
function renderShared(models: { program: Program; config: CConfig }[], cfg: CConfig): SharedRender {
  let offset = 0;
  const sections = models.map((m) => {
    const bytes = weightLayout(weightsOf(m.program)).bytes;
    offset += bytes;
    return { offset: offset - bytes, bytes };
  });
  const arenaBytes = Math.max(...models.map((m) => m.program.arenaBytes));
  const zoneBytes = Math.max(...sections.map((s) => s.bytes));
  const views = models.map((m, index) => view(m.program, m.config, { index, section: sections[index], arenaBytes, zoneBytes }));
  const units = views.map((v) => `model_${v.name}.c`);
  const files: Files = Object.fromEntries(views.map((v, i) => [units[i], renderTemplate("c/model.c", v)]));
  const shared = {
    count: views.length,
    modelList: views.map((v) => v.name).join(", "),
    arenaBytes,
    zoneBytes,
    fileBytes: offset,
  };
  files["model.c"] = renderTemplate("c/models.c", { version: cfg.opts.version, source: cfg.opts.source, target: cfg.target.name, decls: sharedDecls(arenaBytes, zoneBytes), models: views });
  files["model.h"] = renderTemplate("c/model.h", headerView(views, cfg, [shared]));
  files["run.c"] = renderTemplate("c/run.c", harnessView(views, cfg, true));
  files.Makefile = renderTemplate("c/Makefile", makefileView(cfg, ["model.c", ...units]));
  const blob = new Uint8Array(offset);
  models.forEach((m, i) => blob.set(weightsBlob(m.program), sections[i].offset));
  files["weights.bin"] = blob;
  return { files, arenaBytes, zoneBytes, sections };
}

/** Standalone C99: model.h, model.c, a `run` harness and a Makefile; no runtime library, no malloc. */
export const cBackend: Backend<CConfig> = {
  name: "c",
  device: "cpu",
  configure: (target, opts) => ({ target, opts }),
  lower: (p) => p,
  render(p, cfg): Files {
    const v = view(p, cfg);
    const files: Files = {
      "model.h": renderTemplate("c/model.h", headerView([v], cfg, [])),
      "model.c": renderTemplate("c/model.c", v),
      "run.c": renderTemplate("c/run.c", harnessView([v], cfg, false)),
      Makefile: renderTemplate("c/Makefile", makefileView(cfg, ["model.c"])),
    };
    if (cfg.opts.weights === "file") files["weights.bin"] = weightsBlob(p);
    return files;
  },
  renderShared,
  package: (dir, cfg) => makeGoals(dir, cfg, ["run", `lib${cfg.opts.name}.a`]),
};

/**
 * Runs the artifact's Makefile for `goals` with the target's compiler (sources only when it is not
 * installed) and reports which goals exist afterwards.
 */
export async function makeGoals(dir: string, cfg: CConfig, goals: string[]): Promise<{ built: string[]; skipped?: string }> {
  const cc = cfg.target.cc;
  const found = await $({ nothrow: true, quiet: true })`command -v ${cc}`;
  if (found.exitCode !== 0) return { built: [], skipped: `compiler '${cc}' not found; sources only` };
  // Generated code is warning-free by contract, so packaging enforces it with -Werror.
  const vars = ["EDGEC_CFLAGS=-std=c99 -Wall -Wextra -Werror", `CC=${cc}`];
  if (cfg.opts.extraCflags?.length) vars.push(`CFLAGS=${[...cfg.target.cflags, ...cfg.opts.extraCflags].join(" ")}`);
  if (cfg.opts.extraCflags?.some((f) => f.startsWith("-fsanitize"))) vars.push(`LDFLAGS=${cfg.opts.extraCflags.join(" ")}`);
  const r = await $({ nothrow: true, quiet: true, cwd: dir })`make -s ${goals} ${vars}`;
  if (r.exitCode !== 0) throw new Error(`building the generated C failed:\n${r.stderr || r.stdout}`);
  return { built: goals.filter((f) => existsSync(`${dir}/${f}`)) };
}
