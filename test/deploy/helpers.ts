import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { modelBytes, node, T, tensorProto, valueInfo } from "../helpers/onnx-builder.js";
import type { Device } from "./devices.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the built CLI (dist/) without blocking the event loop; killed after `timeoutMs`. */
export function edgec(args: string[], opts: { timeoutMs?: number; onSpawn?: (kill: () => void) => void; cwd?: string } = {}): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, "bin", "edgec.js"), ...args], { cwd: opts.cwd ?? ROOT, env: { ...process.env, EDGEC_DEBUG: "1" } });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    opts.onSpawn?.(() => p.kill("SIGKILL"));
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** y = x + c: a model whose version shows in its constant. */
export function addModel(c: number): Uint8Array {
  return modelBytes({
    nodes: [node("Add", ["x", "c"], ["y"])],
    inputs: [valueInfo("x", T.FLOAT, [1, 16])],
    outputs: [valueInfo("y", T.FLOAT, [1, 16])],
    initializers: [tensorProto("c", T.FLOAT, [1, 16], { floatData: Array.from({ length: 16 }, (_, i) => c + i) })],
  });
}

/**
 * The release a device runs, after checking that it is complete: every file of its SHA256SUMS present
 * with the right hash. Undefined when nothing was ever installed; throws on a half-installed device.
 */
export function runningRelease(d: Device, dir = "edgec"): string | undefined {
  const base = join(d.home, dir);
  if (!existsSync(join(base, "current"))) {
    if (existsSync(join(base, "releases")) && !existsSync(join(base, "current")) && (() => { try { readlinkSync(join(base, "current")); return true; } catch { return false; } })()) {
      throw new Error(`${d.name}: current points nowhere`);
    }
    return undefined;
  }
  const link = readlinkSync(join(base, "current"));
  const rel = join(base, link);
  for (const line of readFileSync(join(rel, "SHA256SUMS"), "utf8").trim().split("\n")) {
    const [hash, file] = line.split(/\s+/);
    const got = createHash("sha256").update(readFileSync(join(rel, file))).digest("hex");
    if (got !== hash) throw new Error(`${d.name}: ${link}/${file} does not match its checksum`);
  }
  return link.replace(/^releases\//, "");
}
