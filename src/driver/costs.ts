import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { EdgecError } from "../core/diag.js";
import type { Costs } from "../graph/cost.js";
import type { Target } from "../target/schema.js";

export const fileSha256 = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

/** Reads a costs file that edgec profile wrote. */
export function readCosts(file: string): Costs {
  let text: string;
  let c: Costs;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new EdgecError(`--costs ${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  try {
    c = JSON.parse(text);
  } catch (e) {
    throw new EdgecError(`--costs ${file}: not JSON (${(e as Error).message})`);
  }
  const copyOk = c?.copy && Number.isFinite(c.copy.latencyUs) && c.copy.GBs > 0;
  if (!c || typeof c.kernels !== "object" || !c.model?.sha256 || !copyOk) throw new EdgecError(`--costs ${file}: not a costs file from edgec profile (it needs kernels, model.sha256 and copy)`);
  const time = (x: unknown) => x === undefined || (typeof x === "number" && x >= 0);
  const bad = Object.entries(c.kernels).find(([, k]) => !time(k?.cpuMs) || !time(k?.gpuMs));
  if (bad) throw new EdgecError(`--costs ${file}: kernel '${bad[0]}' has no valid times (cpuMs and gpuMs are milliseconds >= 0)`);
  return c;
}

/** A costs file measured on another model or for another target would place kernels by someone else's times. */
export function checkCosts(c: Costs, model: string, sha256: string, t: Target): void {
  if (c.model.sha256 !== sha256) throw new EdgecError(`--costs: measured on ${c.model.file} (sha256 ${c.model.sha256.slice(0, 16)}), not on ${basename(model)} (sha256 ${sha256.slice(0, 16)}); run edgec profile on this model`);
  if (c.target !== t.name) throw new EdgecError(`--costs: measured for target '${c.target}', not '${t.name}'`);
}
