import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { EdgecError } from "../core/diag.js";
import { resolveNative } from "./native.js";
import { TARGET_DEFAULTS, type Target } from "./schema.js";

/** The targets/ folder shipped with edgec (next to src/ or dist/). */
export const TARGETS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "targets");

const REQUIRED = ["name", "description", "triple", "arch"] as const;

/** The JSON file each loaded target was read from, kept beside the target rather than in it (targets are hashed and compared as data). */
const sources = new WeakMap<Target, string>();

/** The file `t` was loaded from (the path as given, or the one under targets/); undefined for a target built in code. */
export const targetFile = (t: Target): string | undefined => sources.get(t);

export function parseTarget(json: unknown, file: string): Target {
  if (!json || typeof json !== "object") throw new EdgecError(`${file}: a target must be a JSON object`);
  const t = { ...TARGET_DEFAULTS, ...(json as object) } as Target;
  for (const k of REQUIRED) if (typeof t[k] !== "string") throw new EdgecError(`${file}: target field '${k}' is missing or not a string`);
  // The generated C has its own thread pool: a target written for OpenMP would silently run on one thread.
  if (t.cflags.includes("-fopenmp")) throw new EdgecError(`${file}: -fopenmp in cflags: edgec's generated C brings its own thread pool; use -pthread for threads`);
  const resolved = resolveNative(t);
  sources.set(resolved, file);
  return resolved;
}

export function listTargets(dir = TARGETS_DIR): Target[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => {
      const file = join(dir, f);
      let json: unknown;
      try {
        json = JSON.parse(readFileSync(file, "utf8"));
      } catch (e) {
        throw new EdgecError(`${file}: invalid JSON (${(e as Error).message})`);
      }
      return parseTarget(json, file);
    });
}

/** Resolves a target by name or alias, or a path to a target JSON file. */
export function loadTarget(nameOrPath: string, dir = TARGETS_DIR): Target {
  if (nameOrPath.endsWith(".json")) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(nameOrPath, "utf8"));
    } catch (e) {
      throw new EdgecError(`${nameOrPath}: cannot read target file (${(e as Error).message})`);
    }
    return parseTarget(json, nameOrPath);
  }
  const all = listTargets(dir);
  const t = all.find((x) => x.name === nameOrPath) ?? all.find((x) => x.aliases.includes(nameOrPath));
  if (!t) throw new EdgecError(`unknown target '${nameOrPath}'; known targets: ${all.map((x) => x.name).join(", ")}`);
  return t;
}
