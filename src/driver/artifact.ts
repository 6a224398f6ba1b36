import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { Manifest } from "../core/artifact.js";
import { EdgecError } from "../core/diag.js";
import { compileModel, type Compiled, type PipelineOptions } from "./pipeline.js";

export interface BuildResult {
  dir: string;
  manifest: Manifest;
  compiled: Compiled;
  skipped?: string;
}

/**
 * Builds an artifact directory: sources, Makefile, manifest.json and, when the target's compiler is
 * installed, the static library and the `run` harness. Everything is written to a temporary sibling
 * and renamed into place, so `outDir` is either complete or untouched.
 */
export async function buildArtifact(model: string, outDir: string, opts: PipelineOptions): Promise<BuildResult> {
  const compiled = compileModel(model, opts);
  const dir = resolve(outDir);
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
