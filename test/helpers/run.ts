import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Child processes for tests, run without blocking the event loop. A vitest worker answers the main
 * process's RPC (onTaskUpdate) from its event loop, and gives up after 60 s: one spawnSync or
 * execFileSync of the CLI, make, a compiler or qemu that runs longer (a verify on the loaded 2-core
 * CI machine can) fails the whole run with "Timeout calling onTaskUpdate" though every test passed
 * (vitest issues #6479, #8164). So tests spawn through these, never through the *Sync calls.
 */
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface Ran {
  /** the exit code; null when a signal killed the process, as spawnSync's `status` */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** written to the child's stdin; without it stdin is empty (closed at once), as with spawnSync */
  input?: string;
}

/** Runs `cmd args` to its end, collecting stdout and stderr as UTF-8; rejects only when it cannot start. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: "pipe" });
    let stdout = "";
    let stderr = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    p.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    // A child that exits without reading its input closes the pipe: EPIPE here is not a failure.
    p.stdin.on("error", () => undefined);
    p.stdin.end(opts.input);
    p.on("error", reject);
    p.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Like execFileSync: stdout, or an error with the command, its exit status and stderr when it fails. */
export async function runOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`Command failed (${r.code === null ? `signal ${r.signal}` : `exit ${r.code}`}): ${[cmd, ...args].join(" ")}\n${r.stderr}`);
  return r.stdout;
}

/** The built CLI (dist/ must be built: `make test` does), run by this Node. */
export const edgecCli = (args: string[], opts: RunOptions = {}): Promise<Ran> => run(process.execPath, [join(ROOT, "bin", "edgec.js"), ...args], opts);
