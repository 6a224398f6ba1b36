import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { EdgecError } from "../core/diag.js";
import { modelOpTypes } from "../frontend/onnx/import.js";
import type { PipelineOptions } from "./pipeline.js";
import { verifyModel } from "./verify.js";

export interface ConformanceResult {
  test: string;
  ops: string[];
  status: "pass" | "fail" | "unsupported" | "error";
  reason?: string;
  seconds: number;
}

/** Folders holding model.onnx: each given folder itself, or its children. */
export function testFolders(dirs: string[]): string[] {
  return dirs.flatMap((d) => {
    if (existsSync(join(d, "model.onnx"))) return [d];
    if (!existsSync(d)) throw new EdgecError(`${d}: no such folder`);
    return readdirSync(d).sort().map((x) => join(d, x)).filter((x) => existsSync(join(x, "model.onnx")));
  });
}

function opsOf(model: string): string[] {
  try {
    const ops = modelOpTypes(model);
    // Constant nodes only feed the op under test, unless they are the test.
    return ops.length > 1 ? ops.filter((op) => op !== "Constant") : ops;
  } catch {
    return [];
  }
}

export async function conformanceOne(dir: string, opts: PipelineOptions & { sanitize?: boolean }): Promise<ConformanceResult> {
  const model = join(dir, "model.onnx");
  const t0 = Date.now();
  const ops = opsOf(model);
  const extraCflags = opts.sanitize ? ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"] : undefined;
  try {
    const res = await verifyModel(model, dir, { ...opts, extraCflags }, { rtol: 1e-3, atol: 1e-5 });
    const bad = res.flatMap((r) => r.outputs.filter((o) => !o.pass).map((o) => `${r.dataSet}/${o.name}: ${o.why ?? `max abs ${o.maxAbs.toExponential(2)}, max rel ${o.maxRel.toExponential(2)}`}`));
    return { test: basename(dir), ops, status: bad.length ? "fail" : "pass", reason: bad.join("; ") || undefined, seconds: (Date.now() - t0) / 1000 };
  } catch (e) {
    const msg = (e as Error).message.split("\n").slice(0, 3).join(" ");
    const status = e instanceof EdgecError && /unsupported op/.test(msg) ? "unsupported" : "error";
    return { test: basename(dir), ops, status, reason: msg, seconds: (Date.now() - t0) / 1000 };
  }
}

/** Runs every test, prints one table row per op and the totals; returns the number not passing. */
export async function runConformance(dirs: string[], opts: PipelineOptions & { jobs: number; sanitize: boolean; json?: string }): Promise<number> {
  const tests = testFolders(dirs);
  const results: ConformanceResult[] = new Array(tests.length);
  let next = 0;
  const worker = async () => {
    while (next < tests.length) {
      const i = next++;
      results[i] = await conformanceOne(tests[i], opts);
      if (results[i].status !== "pass") process.stderr.write(`${results[i].status.toUpperCase()} ${results[i].test}: ${results[i].reason}\n`);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.jobs) }, worker));
  const byOp = new Map<string, { pass: number; fail: number; unsupported: number; error: number }>();
  for (const r of results) {
    const key = r.ops.length === 1 ? r.ops[0] : r.ops.length ? "(multi-op)" : "(unreadable)";
    const row = byOp.get(key) ?? { pass: 0, fail: 0, unsupported: 0, error: 0 };
    row[r.status]++;
    byOp.set(key, row);
  }
  console.log(`${"op".padEnd(28)} pass  fail  unsup  error`);
  for (const [op, r] of [...byOp].sort()) {
    console.log(`${op.padEnd(28)} ${String(r.pass).padStart(4)}  ${String(r.fail).padStart(4)}  ${String(r.unsupported).padStart(5)}  ${String(r.error).padStart(5)}`);
  }
  const passed = results.filter((r) => r.status === "pass").length;
  const bad = results.filter((r) => r.status !== "pass");
  for (const r of bad) console.log(`  ${r.status.padEnd(11)} ${r.test}: ${r.reason}`);
  console.log(`target ${opts.target.name}: ${passed} of ${results.length} tests pass (${((100 * passed) / Math.max(1, results.length)).toFixed(1)}%)`);
  if (opts.json) writeFileSync(opts.json, JSON.stringify({ target: opts.target.name, results }, null, 2));
  return bad.length;
}
