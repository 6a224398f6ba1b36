import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { hostname, tmpdir, userInfo } from "node:os";
import { join, relative } from "node:path";
import type { Manifest } from "../core/artifact.js";
import { EdgecError } from "../core/diag.js";
import type { Host } from "./inventory.js";
import { Progress } from "./progress.js";
import { DEPLOY, LOCKED, LOCKED_ROLLBACK, STATUS } from "./remote.js";
import { RemoteError, Ssh, type SshOptions } from "./ssh.js";

/** `uname -m` values that run each target architecture's binaries. */
export const UNAME: Record<string, string[]> = {
  x86_64: ["x86_64", "amd64"],
  aarch64: ["aarch64", "arm64"],
  armv7: ["armv7l", "armv8l"],
};

/**
 * What goes to a device: what runs or is loaded there, plus the self-test. Sources, objects and the
 * static library stay on the build machine (applications link it there, when they are cross-compiled).
 */
export function deployFiles(dir: string, m: Manifest): string[] {
  const want = ["manifest.json", "model.h", m.runProgram ?? "", `lib${m.name}.so`, m.weightsFile ?? ""].filter((f) => f && existsSync(join(dir, f)));
  const walk = (d: string): string[] => readdirSync(d).sort().flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [relative(dir, join(d, f))]));
  const tests = m.selfTest && existsSync(join(dir, m.selfTest.dir)) ? walk(join(dir, m.selfTest.dir)) : [];
  const files = [...want, ...tests];
  for (const f of files) {
    if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(f) || f.split("/").some((c) => c === ".." || c === "." || c.startsWith("-"))) {
      throw new EdgecError(`${dir}: refusing to deploy '${f}': artifact file names must be plain relative names`);
    }
  }
  return files;
}

export interface Release {
  dir: string;
  manifest: Manifest;
  files: string[];
  /** sha256sum -c format, uploaded as SHA256SUMS */
  sums: string;
  /** the release's name on the device: the first 16 hex digits of sha256(SHA256SUMS) */
  id: string;
}

export function prepareRelease(dir: string, m: Manifest): Release {
  const files = deployFiles(dir, m);
  const sums = files.map((f) => `${createHash("sha256").update(readFileSync(join(dir, f))).digest("hex")}  ${f}\n`).join("");
  return { dir, manifest: m, files, sums, id: createHash("sha256").update(sums).digest("hex").slice(0, 16) };
}

export interface FleetOptions {
  ssh: Omit<SshOptions, "controlDir">;
  parallel: number;
  /** per host, for all of its steps */
  timeoutS: number;
  /** further attempts of a step after a connection error */
  retries: number;
  /** remove each device's lock before taking it, even one a running deploy holds */
  breakLock?: boolean;
  progress?: Progress;
}

export type HostStatus = "ok" | "unchanged" | "failed";

export interface HostResult {
  host: string;
  address: string;
  status: HostStatus;
  /** the release the device runs after this command (when known) */
  current?: string;
  previous?: string;
  step?: string;
  error?: string;
  attempts: number;
  ms: number;
  /** fleet status: manifest fields of the running release */
  info?: Record<string, unknown>;
}

export interface FleetReport {
  action: "deploy" | "rollback" | "status";
  release?: string;
  artifact?: string;
  ms: number;
  ok: number;
  failed: number;
  hosts: HostResult[];
}

/** A host's work: steps with retries on connection errors; returns the fields it learned. */
type HostJob = (step: (name: string, f: () => Promise<string>) => Promise<string>, ssh: Ssh) => Promise<Partial<HostResult>>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runHost(host: Host, job: HostJob, o: FleetOptions, controlDir: string, closing: Promise<void>[]): Promise<HostResult> {
  const t0 = Date.now();
  const ssh = new Ssh(host, { ...o.ssh, controlDir });
  const res: HostResult = { host: host.name, address: host.port ? `${host.address}:${host.port}` : host.address, status: "failed", attempts: 0, ms: 0 };
  const step = async (name: string, f: () => Promise<string>) => {
    res.step = name;
    o.progress?.set(host.name, name);
    for (let attempt = 0; ; attempt++) {
      res.attempts++;
      try {
        return await f();
      } catch (e) {
        if (!(e instanceof RemoteError && e.connection) || attempt >= o.retries) throw e;
        o.progress?.set(host.name, `${name} (retry ${attempt + 1}: ${e.message.slice(0, 60)})`);
        await sleep(500 * 2 ** attempt);
      }
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${o.timeoutS}s`)), o.timeoutS * 1000);
  });
  try {
    Object.assign(res, await Promise.race([job(step, ssh), timeout]));
    res.step = undefined;
  } catch (e) {
    res.status = "failed";
    res.error = (e as Error).message;
    if ((e as { phase?: string }).phase) res.step = (e as { phase: string }).phase;
  } finally {
    clearTimeout(timer);
    // Closing the shared connection is off the critical path: the next host starts meanwhile.
    closing.push(ssh.close());
  }
  res.ms = Date.now() - t0;
  o.progress?.done(host.name, res.status === "failed" ? `FAILED ${res.step ? `at ${res.step}: ` : ""}${res.error}` : `${res.status} ${res.current ?? ""}`);
  return res;
}

/** Runs a job on every host, `parallel` at a time; never throws for one host's failure. */
async function runFleet(hosts: Host[], job: (h: Host) => HostJob, o: FleetOptions): Promise<HostResult[]> {
  const controlDir = mkdtempSync(join(tmpdir(), "edgec-ssh-"));
  const results: HostResult[] = new Array(hosts.length);
  const closing: Promise<void>[] = [];
  let next = 0;
  o.progress?.start(hosts.map((h) => h.name));
  try {
    const worker = async () => {
      while (next < hosts.length) {
        const i = next++;
        results[i] = await runHost(hosts[i], job(hosts[i]), o, controlDir, closing);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(o.parallel, hosts.length)) }, worker));
    await Promise.all(closing);
  } finally {
    o.progress?.stop();
    rmSync(controlDir, { recursive: true, force: true });
  }
  return results;
}

const field = (out: string, k: string) => new RegExp(`^${k}=(.*)$`, "m").exec(out)?.[1] ?? "";
const releaseOf = (link: string) => link.replace(/^releases\//, "") || undefined;

/**
 * The first arguments of a locking script: who takes the lock (shown to whoever finds it taken) and
 * whether to break it. Plain printable characters only: it becomes a symlink's target on the device.
 */
function lockArgs(action: string, o: FleetOptions): string[] {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = `uid ${process.getuid?.() ?? "?"}`; // a uid without a passwd entry (some containers)
  }
  const who = `${user}@${hostname()} pid ${process.pid} (${action})`.replace(/[^ -~]|\//g, "?");
  return [who, o.breakLock ? "break" : ""];
}

/** "alice@build1 pid 42 (deploy 0123…) since 2024-05-01T10:00:00Z" from a lock's target. */
const lockHolder = (held: string) => `${/ by=(.*)$/.exec(held)?.[1] ?? "another edgec"} since ${/since=(\S+)/.exec(held)?.[1] ?? "?"}`;

/** The error of a device whose lock is taken (exit LOCKED). */
const lockedError = (h: Host, out: string) =>
  Object.assign(new Error(`device ${h.name} is locked by ${lockHolder(field(out, "lock"))}; if no deploy or rollback runs there, re-run with --break-lock`), { phase: "lock" });

function report(action: FleetReport["action"], hosts: HostResult[], t0: number, extra: Partial<FleetReport> = {}): FleetReport {
  const failed = hosts.filter((h) => h.status === "failed").length;
  return { action, ...extra, ms: Date.now() - t0, ok: hosts.length - failed, failed, hosts };
}

/**
 * Deploys a release to every host: take the device's lock, check the architecture (and
 * edgec_target), upload into a fresh incoming folder, verify every file's sha256 and run the
 * self-test on the device, then switch `current` atomically. A host that fails at any step keeps the
 * version it ran.
 */
export async function deploy(rel: Release, hosts: Host[], arch: string, o: FleetOptions, targetOf: (h: Host) => string | undefined = (h) => h.target): Promise<FleetReport> {
  const t0 = Date.now();
  const staging = mkdtempSync(join(tmpdir(), "edgec-release-"));
  writeFileSync(join(staging, "SHA256SUMS"), rel.sums);
  const accepted = UNAME[arch] ?? [arch];
  try {
    const results = await runFleet(
      hosts,
      (h) => async (step, ssh) => {
        const want = targetOf(h);
        if (want && want !== rel.manifest.target) throw new Error(`inventory says edgec_target '${h.target}', the artifact is built for '${rel.manifest.target}'`);
        const st = rel.manifest.selfTest;
        const args = [...lockArgs(`deploy ${rel.id}`, o), h.dir, rel.id, String(st?.rtol ?? 1e-3), String(st?.atol ?? 1e-4), ...accepted];
        const parts: [string, string[]][] = [[rel.dir, topLevel(rel.files)], [staging, ["SHA256SUMS"]]];
        // One session: check, receive, verify, self-test, switch; the script's markers tell the step.
        let phase = "connect";
        const onLine = (l: string) => {
          if (l === "@upload" || l === "@verify") o.progress?.set(h.name, (phase = l.slice(1)));
        };
        const out = await step("connect", () =>
          ssh.stream(DEPLOY, args, parts, onLine, "deploy").catch((e) => {
            if (e instanceof RemoteError && e.connection) throw e;
            const out = e instanceof RemoteError ? e.stdout : "";
            if (e instanceof RemoteError && e.code === LOCKED) throw lockedError(h, out);
            phase = { 14: "upload", 11: "verify", 12: "verify" }[(e as RemoteError).code] ?? (out.includes("@verify") ? "verify" : out.includes("@upload") ? "upload" : "connect");
            const msg = e instanceof RemoteError && e.code === 10 ? `device architecture is '${field(e.message, "arch") || "?"}', the artifact is for ${arch} (target ${rel.manifest.target})` : (e as Error).message;
            throw Object.assign(new Error(msg.replace(/^deploy: /, "")), { phase });
          }),
        );
        const before = releaseOf(field(out, "current"));
        if (/^unchanged$/m.test(out)) return { status: "unchanged", current: rel.id };
        return { status: "ok", current: rel.id, previous: before };
      },
      o,
    );
    return report("deploy", results, t0, { release: rel.id, artifact: rel.dir });
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Top-level entries of a file list (tar sends folders whole). */
export const topLevel = (files: string[]) => [...new Set(files.map((f) => f.split("/")[0]))];

/** Returns every host to the version it ran before its last switch, holding the device's lock. */
export async function rollback(hosts: Host[], o: FleetOptions): Promise<FleetReport> {
  const t0 = Date.now();
  const results = await runFleet(
    hosts,
    (h) => async (step, ssh) => {
      const out = await step("rollback", () =>
        ssh.run(LOCKED_ROLLBACK, [...lockArgs("rollback", o), h.dir], "rollback").catch((e) => {
          throw e instanceof RemoteError && e.code === LOCKED ? lockedError(h, e.stdout) : e;
        }),
      );
      return { status: "ok", current: releaseOf(/to=(\S*)/.exec(out)?.[1] ?? ""), previous: releaseOf(/from=(\S*)/.exec(out)?.[1] ?? "") };
    },
    o,
  );
  return report("rollback", results, t0);
}

/** What each host runs: current and previous release, and the running artifact's manifest. */
export async function status(hosts: Host[], o: FleetOptions): Promise<FleetReport> {
  const t0 = Date.now();
  const results = await runFleet(
    hosts,
    (h) => async (step, ssh) => {
      const out = await step("status", () => ssh.run(STATUS, [h.dir], "status"));
      const at = out.indexOf("manifest:\n");
      let info: Record<string, unknown> = { arch: field(out, "arch") };
      if (field(out, "lock")) info.lockedBy = lockHolder(field(out, "lock"));
      if (at >= 0) {
        try {
          const m = JSON.parse(out.slice(at + 10)) as Manifest;
          info = { ...info, name: m.name, model: m.model.file, modelSha256: m.model.sha256, target: m.target, edgec: m.edgec };
        } catch {
          info.manifest = "unreadable";
        }
      }
      return { status: "ok", current: releaseOf(field(out, "current")), previous: releaseOf(field(out, "previous")), info };
    },
    o,
  );
  return report("status", results, t0);
}
