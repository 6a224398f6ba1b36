import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../helpers/run.js";

/**
 * Loopback "devices": one OpenSSH server per device on 127.0.0.1, with generated host and user keys,
 * each device living in its own folder (its login directory). A forced command (device.sh) puts every
 * session — shell commands and sftp — into that folder and injects the device's fault, if any.
 * Nothing touches ~/.ssh: clients use the generated ssh_config (-F) with its own known_hosts.
 */
export type Fault = "none" | "wrong-key" | "disk-full" | "read-only" | "corrupt" | "slow" | "slow-upload";

export interface Device {
  name: string;
  port: number;
  home: string;
  fault: Fault;
  proc?: ChildProcess;
}

export interface Fleet {
  root: string;
  devices: Device[];
  /** ssh -F file with the user key and this fleet's known_hosts */
  sshConfig: string;
  userKey: string;
  /** writes a YAML inventory for the given devices (default all) and returns its path */
  inventory(devices?: Device[], file?: string): string;
  setFault(d: Device, f: Fault): Promise<void>;
  stop(): void;
}

const SSHD = "/usr/sbin/sshd";
const root = process.getuid?.() === 0;

const DEVICE_SH = `#!/bin/sh
# A device session: its own login folder, plus the fault it is configured with.
cd "$DEVICE_HOME" || exit 1
export HOME="$DEVICE_HOME"
fault=$(cat "$DEVICE_HOME/../fault" 2>/dev/null)
run() {
  case "$fault" in
    disk-full) ulimit -f 4; "$@" ;;
    read-only) if [ "$(id -u)" = 0 ]; then setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; else "$@"; fi ;;
    slow) sleep 0.3; "$@" ;;
    *) "$@" ;;
  esac
}
# corrupt: a tar that damages what it unpacks (a flaky link or storage, after the transfer)
[ "$fault" = corrupt ] && export PATH="$DEVICE_HOME/../../corrupt-bin:$PATH"
# slow-upload: a tar that waits 3 s before unpacking (a slow link), so a deploy holds the lock a while
[ "$fault" = slow-upload ] && export PATH="$DEVICE_HOME/../../slow-bin:$PATH"
case "$SSH_ORIGINAL_COMMAND" in
  */sftp-server*|internal-sftp*) run /usr/lib/openssh/sftp-server ;;
  *) run /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;
esac
`;

/**
 * n distinct loopback ports free right now: all n are held open at once before any is released,
 * since a port released and asked for again may come back (two devices on one port: one sshd fails).
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
  return ports;
}

export const freePort = async (): Promise<number> => (await freePorts(1))[0];

async function keygen(file: string) {
  const r = await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "edgec-test", "-f", file]);
  if (r.code !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
}

async function waitForPort(port: number, ms = 10_000) {
  const { connect } = await import("node:net");
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const c = connect(port, "127.0.0.1", () => (c.end(), res(true)));
      c.on("error", () => res(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`sshd on port ${port} did not start`);
    await new Promise((r) => setTimeout(r, 30));
  }
}

// Sync: describe.runIf needs the answer at collection time, and `-V` only prints a version.
export const haveSshd = () => spawnSync(SSHD, ["-V"]).status !== null && spawnSync("ssh", ["-V"]).status === 0;

export async function startFleet(n: number, faults: Record<number, Fault> = {}): Promise<Fleet> {
  const dir = mkdtempSync(join(tmpdir(), "edgec-fleet-"));
  // sshd refuses a world-writable path to its files when run as root with StrictModes; StrictModes is off, but keep it tidy.
  chmodSync(dir, 0o755);
  if (root) mkdirSync("/run/sshd", { recursive: true });
  const userKey = join(dir, "id_user");
  const otherKey = join(dir, "id_other");
  const hostKey = join(dir, "host_key");
  await Promise.all([keygen(userKey), keygen(otherKey), keygen(hostKey)]);
  const deviceSh = join(dir, "device.sh");
  writeFileSync(deviceSh, DEVICE_SH);
  chmodSync(deviceSh, 0o755);
  mkdirSync(join(dir, "corrupt-bin"));
  writeFileSync(join(dir, "corrupt-bin", "tar"), `#!/bin/sh\n/bin/tar "$@" || exit $?\nfor f in releases/.incoming-*/manifest.json */releases/.incoming-*/manifest.json; do [ -f "$f" ] && printf X >> "$f"; done\nexit 0\n`);
  chmodSync(join(dir, "corrupt-bin", "tar"), 0o755);
  mkdirSync(join(dir, "slow-bin"));
  writeFileSync(join(dir, "slow-bin", "tar"), `#!/bin/sh\nsleep 3\nexec /bin/tar "$@"\n`);
  chmodSync(join(dir, "slow-bin", "tar"), 0o755);
  const hostPub = readFileSync(`${hostKey}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
  const devices: Device[] = [];
  const ports = await freePorts(n);
  for (let i = 0; i < n; i++) {
    const name = `dev${String(i + 1).padStart(2, "0")}`;
    const ddir = join(dir, name);
    const home = join(ddir, "home");
    mkdirSync(home, { recursive: true });
    chmodSync(ddir, 0o755);
    chmodSync(home, 0o755);
    const fault = faults[i] ?? "none";
    writeFileSync(join(ddir, "fault"), fault);
    writeFileSync(join(ddir, "authorized_keys"), readFileSync(`${fault === "wrong-key" ? otherKey : userKey}.pub`));
    devices.push({ name, port: ports[i], home, fault });
  }
  const known = devices.map((d) => `[127.0.0.1]:${d.port} ${hostPub}`).join("\n") + "\n";
  writeFileSync(join(dir, "known_hosts"), known);
  const sshConfig = join(dir, "ssh_config");
  writeFileSync(sshConfig, `Host 127.0.0.1\n  IdentityFile ${userKey}\n  IdentitiesOnly yes\n  UserKnownHostsFile ${join(dir, "known_hosts")}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n`);
  const user = (await run("id", ["-un"])).stdout.trim();

  const start = async (d: Device) => {
    const ddir = join(d.home, "..");
    const cfg = join(ddir, "sshd_config");
    writeFileSync(
      cfg,
      [
        `Port ${d.port}`, "ListenAddress 127.0.0.1", `HostKey ${hostKey}`, `PidFile ${join(ddir, "sshd.pid")}`,
        `AuthorizedKeysFile ${join(ddir, "authorized_keys")}`, "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "UsePAM no", "StrictModes no", `PermitRootLogin ${root ? "yes" : "no"}`, `AllowUsers ${user}`,
        `ForceCommand ${deviceSh}`, `SetEnv DEVICE_HOME=${d.home}`, "Subsystem sftp /usr/lib/openssh/sftp-server",
        "MaxStartups 64:30:128", "MaxSessions 64", "LogLevel ERROR",
        // Like many embedded sshd/dropbear builds: classic ECDH and AES-GCM. The loopback devices share
        // the test machine's cores with the client, so the post-quantum kex would be paid 20 times here.
        "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org", "Ciphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com", "",
      ].join("\n"),
    );
    d.proc = spawn(SSHD, ["-f", cfg, "-D", "-e"], { stdio: ["ignore", "ignore", "pipe"] });
    d.proc.stderr!.on("data", () => undefined);
    await waitForPort(d.port);
  };
  await Promise.all(devices.map(start));

  const fleet: Fleet = {
    root: dir,
    devices,
    sshConfig,
    userKey,
    inventory(ds = devices, file = join(dir, "inventory.yml")) {
      const hosts = ds.map((d) => `        ${d.name}: { ansible_host: 127.0.0.1, ansible_port: ${d.port} }`).join("\n");
      writeFileSync(file, `all:\n  children:\n    devices:\n      vars:\n        edgec_target: host\n      hosts:\n${hosts}\n`);
      return file;
    },
    async setFault(d, f) {
      d.fault = f;
      writeFileSync(join(d.home, "..", "fault"), f);
      writeFileSync(join(d.home, "..", "authorized_keys"), readFileSync(`${f === "wrong-key" ? otherKey : userKey}.pub`));
    },
    stop() {
      for (const d of devices) d.proc?.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fleet;
}

/** Stops a device's sshd (a host that is down). */
export function takeDown(d: Device) {
  d.proc?.kill("SIGTERM");
  d.proc = undefined;
}
