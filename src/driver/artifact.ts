import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Manifest, ModelEntry } from "../core/artifact.js";
import { EdgecError } from "../core/diag.js";
import type { Tensor } from "../core/tensor.js";
import type { Files } from "../codegen/backend.js";
import { modelInputs } from "../frontend/onnx/import.js";
import { TARGETS_DIR, targetFile } from "../target/load.js";
import { compileModel, sanitizeName, type Compiled, type PipelineOptions } from "./pipeline.js";
import { VERSION } from "./version.js";

export interface BuildResult {
  dir: string;
  manifest: Manifest;
  /** a one-model build's compilation; absent when the directory was already up to date (content-hash cache) */
  compiled?: Compiled;
  skipped?: string;
  cached?: boolean;
}

/** The make-style dependency file every artifact gets; its first line holds the cache key. */
export const DEPFILE = "edgec.d";

const hashFiles = (h: ReturnType<typeof createHash>, dir: string): void => {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) hashFiles(h, p);
    else if (/\.(js|hbs|json)$/.test(f)) h.update(f).update(readFileSync(p));
  }
};

let codeHash: string | undefined;
/** edgec's own compiled code and templates: a changed compiler must not reuse old artifacts. */
function compilerHash(): string {
  if (!codeHash) {
    const h = createHash("sha256");
    const dist = join(dirname(fileURLToPath(import.meta.url)), "..");
    hashFiles(h, dist);
    hashFiles(h, join(TARGETS_DIR, "..", "templates"));
    codeHash = h.digest("hex");
  }
  return codeHash;
}

const bindKey = (bind: Record<string, Tensor> = {}) =>
  Object.entries(bind).map(([k, t]) => [k, t.dtype, t.shape, createHash("sha256").update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest("hex")]);

/** Everything the artifact depends on: the models' bytes, target, options, edgec itself. */
function cacheKey(models: string[], opts: PipelineOptions, perModel?: unknown): string {
  const h = createHash("sha256");
  for (const m of models) h.update(readFileSync(m));
  const o = { v: VERSION, target: opts.target, shapes: opts.inputShapes, bind: bindKey(opts.bind), name: opts.name, weights: opts.weights, fuse: opts.fuse, cpuFusions: opts.cpuFusions, stop: opts.stopAfter, cflags: opts.extraCflags, budget: opts.memoryBudget, scheduleMs: opts.scheduleTimeLimitMs, placement: opts.placement, costs: opts.costs, objective: opts.objective, optimize: opts.optimize, profile: opts.profile, perModel };
  return h.update(JSON.stringify(o)).update(compilerHash()).digest("hex");
}

const makeEscape = (p: string) => p.replace(/([ #:$])/g, "\\$1");

/**
 * A `-MD`-style rule: the dependency file (the artifact's stamp for make) depends on the models and
 * the target's JSON file, so a Makefile that includes it re-runs `edgec build` when one changes.
 */
function depfile(outDir: string, models: string[], opts: PipelineOptions, key: string): string {
  const target = targetFile(opts.target);
  const deps = [...models, ...(target ? [target] : [])].map(makeEscape);
  return `# edgec-cache-key: ${key}\n${makeEscape(join(outDir, DEPFILE))}: ${deps.join(" ")}\n${deps.map((d) => `${d}:\n`).join("")}`;
}

/** The artifact in `dir` was built from exactly these inputs and is complete. */
function upToDate(dir: string, key: string): Manifest | undefined {
  try {
    if (!readFileSync(join(dir, DEPFILE), "utf8").startsWith(`# edgec-cache-key: ${key}\n`)) return undefined;
    const m = readManifest(dir);
    return m.files.every((f) => existsSync(join(dir, f))) && (!m.runProgram || existsSync(join(dir, m.runProgram))) ? m : undefined;
  } catch {
    return undefined;
  }
}

/** A cached artifact: only the stamp moves, so make sees the models as handled and recompiles nothing. */
function reuse(dir: string, key: string): BuildResult | undefined {
  const cached = key ? upToDate(dir, key) : undefined;
  if (!cached) return undefined;
  const now = new Date();
  utimesSync(join(dir, DEPFILE), now, now);
  return { dir, manifest: cached, cached: true };
}

type Package = (dir: string) => Promise<{ built: string[]; skipped?: string }>;

/**
 * Writes the files to a temporary sibling of `dir`, packages them unless only sources were asked
 * for, adds manifest.json and the dependency file and renames the whole into place, so `dir` is
 * either complete or untouched. Returns why nothing was compiled, if so.
 */
async function writeArtifact(dir: string, what: string, files: Files, manifest: Manifest, pack: Package | undefined, dep: string | undefined): Promise<string | undefined> {
  mkdirSync(dirname(dir), { recursive: true });
  const tmp = mkdtempSync(join(dirname(dir), `.${basename(dir)}.tmp-`));
  try {
    for (const [f, content] of Object.entries(files)) writeFileSync(join(tmp, f), content);
    let skipped: string | undefined;
    if (pack) {
      let res: { built: string[]; skipped?: string };
      try {
        res = await pack(tmp);
      } catch (e) {
        throw new EdgecError(`${what}: ${(e as Error).message}`, 3);
      }
      skipped = res.skipped;
      if (res.built.includes("run")) manifest.runProgram = "run";
    }
    writeFileSync(join(tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    if (dep) writeFileSync(join(tmp, DEPFILE), dep);
    // mkdtemp creates the directory private (0700); an artifact gets the user's usual permissions.
    chmodSync(tmp, 0o777 & ~process.umask());
    if (existsSync(dir)) {
      const old = `${tmp}.old`;
      renameSync(dir, old);
      renameSync(tmp, dir);
      rmSync(old, { recursive: true, force: true });
    } else renameSync(tmp, dir);
    return skipped;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Builds an artifact directory: sources, Makefile, manifest.json and, when the target's compiler is
 * installed, the static library and the `run` harness.
 */
export async function buildArtifact(model: string, outDir: string, opts: PipelineOptions): Promise<BuildResult> {
  const dir = resolve(outDir);
  const key = existsSync(model) && !opts.dumpAfter?.length ? cacheKey([model], opts) : "";
  const cached = reuse(dir, key);
  if (cached) return cached;
  const compiled = compileModel(model, opts);
  const pack = opts.stopAfter === "codegen" ? undefined : (tmp: string) => compiled.backend.package(tmp, compiled.config);
  const skipped = await writeArtifact(dir, basename(model), compiled.files, compiled.manifest, pack, key ? depfile(outDir, [model], opts, key) : undefined);
  return { dir, manifest: compiled.manifest, compiled, skipped };
}

/** The library of an artifact of several models: libmodels.a, libmodels.so. */
export const SHARED_LIBRARY = "models";

/** One model of an artifact of several: its file, its C prefix (see modelNames), and optionally its pinned shapes and bound inputs. */
export interface ModelSpec {
  file: string;
  name: string;
  inputShapes?: Record<string, number[]>;
  bind?: Record<string, Tensor>;
}

/**
 * The C prefixes of several models: the given names, else each file's base name, made into C
 * identifiers. No two may be equal, nor differ only in case (the API's macros are upper case).
 */
export function modelNames(files: string[], given?: string[]): string[] {
  if (given && given.length !== files.length) throw new EdgecError(`--names gives ${given.length} name${given.length === 1 ? "" : "s"} for ${files.length} models`);
  const names = files.map((f, i) => sanitizeName(given?.[i] ?? basename(f).replace(/\.onnx$/i, "")));
  names.forEach((n, i) => {
    const j = names.findIndex((m) => m.toUpperCase() === n.toUpperCase());
    if (j !== i) throw new EdgecError(`${files[j]} and ${files[i]} would both be named '${names[j]}' in the generated C; name the models with --names a,b`);
  });
  return names;
}

/** The pinned shapes that name one of the model's inputs; a name no model has is an error. */
function shapesFor(models: string[], shapes: Record<string, number[]> = {}): Record<string, number[]>[] {
  const declared = models.map((m) => new Set(modelInputs(m).map((i) => i.name)));
  const unknown = Object.keys(shapes).filter((k) => !declared.some((d) => d.has(k)));
  if (unknown.length) throw new EdgecError(`--input-shape names ${unknown.map((k) => `'${k}'`).join(", ")}, an input of none of the models`);
  return declared.map((d) => Object.fromEntries(Object.entries(shapes).filter(([k]) => d.has(k))));
}

/**
 * Builds one artifact of several models sharing one activation arena and one weights zone (see the
 * C backend's renderShared). Each model compiles through the usual pipeline under its own C prefix;
 * the artifact's library is lib${SHARED_LIBRARY} and its manifest lists every model.
 */
export async function buildSharedArtifact(models: ModelSpec[], outDir: string, opts: PipelineOptions): Promise<BuildResult> {
  if (opts.weights === "embed") throw new EdgecError("an artifact of several models keeps their weights in weights.bin and loads each model's when it runs: --weights embed is for one model");
  if (opts.name) throw new EdgecError("--name names the model of a one-model artifact; name several with --names a,b");
  const files = models.map((m) => m.file);
  const names = modelNames(files, models.map((m) => m.name));
  const dir = resolve(outDir);
  const perModel = models.map((m, i) => ({ name: names[i], shapes: m.inputShapes, bind: bindKey(m.bind) }));
  const key = files.every((f) => existsSync(f)) && !opts.dumpAfter?.length ? cacheKey(files, opts, perModel) : "";
  const cached = reuse(dir, key);
  if (cached) return cached;
  const shapes = shapesFor(files, opts.inputShapes);
  // renderShared puts every model's weights in weights.bin; compiling with weights "file" keeps
  // compileModel's own one-model render, unused here, from spelling them out as C arrays.
  const parts = models.map((m, i) => compileModel(m.file, { ...opts, name: names[i], inputShapes: m.inputShapes ?? shapes[i], bind: m.bind ?? opts.bind, weights: "file" }));
  const backend = parts[0].backend;
  const source = parts.map((c) => `${c.manifest.name}: ${c.manifest.model.file} (sha256 ${c.manifest.model.sha256.slice(0, 16)})`).join(", ");
  const config = backend.configure(opts.target, { name: SHARED_LIBRARY, version: VERSION, source, extraCflags: opts.extraCflags, weights: "file" });
  const r = backend.renderShared(parts.map((c) => ({ program: c.program, config: c.config })), config);
  const entries: ModelEntry[] = parts.map(({ manifest: m }, i) => ({
    name: m.name, model: m.model, inputs: m.inputs, outputs: m.outputs, arenaBytes: m.arenaBytes, weightBytes: m.weightBytes, kernels: m.kernels, optimize: m.optimize, weights: r.sections[i],
  }));
  const first = parts[0].manifest;
  const manifest: Manifest = {
    ...first,
    name: SHARED_LIBRARY,
    arenaBytes: r.arenaBytes,
    weightBytes: entries.reduce((s, e) => s + e.weightBytes, 0),
    weightsFile: "weights.bin",
    weightsZoneBytes: r.zoneBytes,
    kernels: entries.reduce((s, e) => s + e.kernels, 0),
    files: Object.keys(r.files).sort(),
    models: entries,
  };
  const pack = opts.stopAfter === "codegen" ? undefined : (tmp: string) => backend.package(tmp, config);
  const skipped = await writeArtifact(dir, names.join(", "), r.files, manifest, pack, key ? depfile(outDir, files, opts, key) : undefined);
  return { dir, manifest, skipped };
}

export function readManifest(dir: string): Manifest {
  const file = join(dir, "manifest.json");
  if (!existsSync(file)) throw new EdgecError(`${dir}: not an edgec artifact (no manifest.json)`);
  return JSON.parse(readFileSync(file, "utf8")) as Manifest;
}
