import { $, type ProcessPromise } from "zx";
import type { Host } from "./inventory.js";

/** How every ssh call is made: the system OpenSSH client, so ~/.ssh/config, agents, jump hosts and known_hosts apply. */
export interface SshOptions {
  /** ssh -F FILE instead of ~/.ssh/config */
  configFile?: string;
  /** extra -o options, verbatim */
  options?: string[];
  /** StrictHostKeyChecking=accept-new; off by default: unknown host keys fail */
  acceptNewHostKeys?: boolean;
  connectTimeoutS?: number;
  /** folder for the ControlMaster sockets that let one connection serve all of a host's steps */
  controlDir: string;
}

/** POSIX single-quoting for the remote shell (which may be dash or busybox, so no $'…'). */
export const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The remote command line running `script` with `args` as $1 … (ssh joins it into one string for the login shell). */
const remoteSh = (script: string, args: string[]) => ["sh", "-c", shq(script), "edgec", ...args.map(shq)].join(" ");

/** The failures worth retrying: the connection, not the command, went wrong. */
const CONNECTION_ERROR = /Connection refused|Connection timed out|timed out during banner|Connection reset|Connection closed|kex_exchange_identification|No route to host|Network is unreachable|Broken pipe|Could not resolve hostname|mux_client|ControlSocket/i;

export class RemoteError extends Error {
  constructor(message: string, readonly code: number, readonly connection: boolean, readonly stdout = "") {
    super(message);
  }
}

export class Ssh {
  private running = new Set<ProcessPromise>();
  constructor(readonly host: Host, private readonly o: SshOptions) {}

  /** Options of every call (the port is added per call). */
  private common(): string[] {
    const a = ["-o", "BatchMode=yes", "-o", `ConnectTimeout=${this.o.connectTimeoutS ?? 10}`, "-o", "ServerAliveInterval=10"];
    a.push("-o", "ControlMaster=auto", "-o", `ControlPath=${this.o.controlDir}/%C`, "-o", "ControlPersist=60");
    if (this.o.configFile) a.unshift("-F", this.o.configFile);
    if (this.o.acceptNewHostKeys) a.push("-o", "StrictHostKeyChecking=accept-new");
    for (const opt of this.o.options ?? []) a.push("-o", opt);
    if (this.host.user) a.push("-o", `User=${this.host.user}`);
    if (this.host.keyFile) a.push("-i", this.host.keyFile);
    return a;
  }

  private async exec(p: ProcessPromise, what: string): Promise<string> {
    this.running.add(p);
    try {
      const r = await p;
      if (r.exitCode === 0) return r.stdout;
      const err = (r.stderr || r.stdout).trim().split("\n").filter(Boolean).slice(-4).join("; ");
      throw new RemoteError(`${what}: ${err || `exit ${r.exitCode}`}`, r.exitCode ?? -1, r.exitCode === 255 && CONNECTION_ERROR.test(r.stderr), r.stdout);
    } finally {
      this.running.delete(p);
    }
  }

  /**
   * Runs a POSIX sh script on the device with the given arguments ($1 …), each quoted. The script
   * travels in the command line and ssh gets no stdin: a script written to ssh's stdin raced with
   * ssh exiting early (a host that is down), and the EPIPE killed edgec before it printed anything.
   */
  run(script: string, args: string[] = [], what = "remote command"): Promise<string> {
    const port = this.host.port ? ["-p", String(this.host.port)] : [];
    return this.exec($({ nothrow: true, quiet: true, stdio: ["ignore", "pipe", "pipe"] })`ssh ${this.common()} ${port} ${this.host.address} ${remoteSh(script, args)}`, what);
  }

  /**
   * Runs a script on the device with a tar stream of local files on its stdin: `parts` are
   * [folder, paths] pairs (tar -C folder paths). One session carries the upload and the script, so a
   * host costs one connection. `onLine` sees each stdout line as it comes (progress markers).
   */
  stream(script: string, args: string[], parts: [string, string[]][], onLine: (line: string) => void, what = "remote command"): Promise<string> {
    const port = this.host.port ? ["-p", String(this.host.port)] : [];
    const tarArgs = parts.flatMap(([dir, paths]) => ["-C", dir, ...paths]);
    const p = $({ nothrow: true, quiet: true })`tar -cf - ${tarArgs} | ssh ${this.common()} ${port} ${this.host.address} ${remoteSh(script, args)}`;
    let buf = "";
    p.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split("\n");
      buf = lines.pop()!;
      lines.forEach(onLine);
    });
    return this.exec(p, what);
  }

  /** Stops what is in flight (after a timeout) and closes the shared connection. */
  async close(): Promise<void> {
    for (const p of this.running) p.kill("SIGKILL").catch(() => undefined);
    const port = this.host.port ? ["-p", String(this.host.port)] : [];
    await $({ nothrow: true, quiet: true, timeout: 5000 })`ssh ${this.common()} ${port} -O exit ${this.host.address}`;
  }
}
