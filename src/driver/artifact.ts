import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Manifest } from "../core/artifact.js";
import { EdgecError } from "../core/diag.js";
import { TARGETS_DIR } from "../target/load.js";
import { compileModel, type Compiled, type PipelineOptions } from "./pipeline.js";
import { VERSION } from "./version.js";

export interface BuildResult {
  dir: string;
  manifest: Manifest;
  /** absent when the directory was already up to date (content-hash cache) */
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

/** Everything the artifact depends on: model bytes, target, options, edgec itself. */
function cacheKey(model: string, opts: PipelineOptions): string {
  const h = createHash("sha256").update(readFileSync(model));
  const bind = Object.entries(opts.bind ?? {}).map(([k, t]) => [k, t.dtype, t.shape, createHash("sha256").update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest("hex")]);
  const o = { v: VERSION, target: opts.target, shapes: opts.inputShapes, bind, name: opts.name, weights: opts.weights, fuse: opts.fuse, stop: opts.stopAfter, cflags: opts.extraCflags };
  return h.update(JSON.stringify(o)).update(compilerHash()).digest("hex");
}

const makeEscape = (p: string) => p.replace(/([ #:$])/g, "\\$1");

/**
 * A `-MD`-style rule: the dependency file (the artifact's stamp for make) depends on the model and
 * the target's JSON file, so a Makefile that includes it re-runs `edgec build` when either changes.
 */
function depfile(outDir: string, model: string, opts: PipelineOptions, key: string): string {
  const targetFile = join(TARGETS_DIR, `${opts.target.name}.json`);
  const deps = [model, ...(existsSync(targetFile) ? [targetFile] : [])].map(makeEscape);
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

/**
 * Builds an artifact directory: sources, Makefile, manifest.json and, when the target's compiler is
 * installed, the static library and the `run` harness. Everything is written to a temporary sibling
 * and renamed into place, so `outDir` is either complete or untouched.
 */
export async function buildArtifact(model: string, outDir: string, opts: PipelineOptions): Promise<BuildResult> {
  const dir = resolve(outDir);
  const key = existsSync(model) && !opts.dumpAfter?.length ? cacheKey(model, opts) : "";
  const cached = key ? upToDate(dir, key) : undefined;
  if (cached) {
    // Only the stamp moves, so make sees the model as handled and recompiles nothing.
    const now = new Date();
    utimesSync(join(dir, DEPFILE), now, now);
    return { dir, manifest: cached, cached: true };
  }
  const compiled = compileModel(model, opts);
  mkdirSync(dirname(dir), { recursive: true });
  const tmp = mkdtempSync(join(dirname(dir), `.${basename(dir)}.tmp-`));
  try {
    for (const [f, content] of Object.entries(compiled.files)) writeFileSync(join(tmp, f), content);
    let skipped: string | undefined;
    if (opts.stopAfter !== "codegen") {
      let res: { built: string[]; skipped?: string };
      try {
        res = await compiled.backend.package(tmp, compiled.config);
      } catch (e) {
        throw new EdgecError(`${basename(model)}: ${(e as Error).message}`, 3);
      }
      skipped = res.skipped;
      if (res.built.includes("run")) compiled.manifest.runProgram = "run";
    }
    writeFileSync(join(tmp, "manifest.json"), JSON.stringify(compiled.manifest, null, 2) + "\n");
    if (key) writeFileSync(join(tmp, DEPFILE), depfile(outDir, model, opts, key));
    // mkdtemp creates the directory private (0700); an artifact gets the user's usual permissions.
    chmodSync(tmp, 0o777 & ~process.umask());
    if (existsSync(dir)) {
      const old = `${tmp}.old`;
      renameSync(dir, old);
      renameSync(tmp, dir);
      rmSync(old, { recursive: true, force: true });
    } else renameSync(tmp, dir);
    return { dir, manifest: compiled.manifest, compiled, skipped };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

export function readManifest(dir: string): Manifest {
  const file = join(dir, "manifest.json");
  if (!existsSync(file)) throw new EdgecError(`${dir}: not an edgec artifact (no manifest.json)`);
  return JSON.parse(readFileSync(file, "utf8")) as Manifest;
}
