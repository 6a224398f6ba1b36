import { spawn } from "node:child_process";
import { chmodSync, cpSync, existsSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { tempDir } from "../helpers/onnx-builder.js";
import { startFleet, takeDown, type Device, type Fleet } from "./devices.js";
import { addModel, edgec, runningRelease } from "./helpers.js";

/**
 * edgec deploy against 20 real OpenSSH servers on loopback (test/deploy/devices.ts): a parallel
 * deploy, then faults — a host that is down, a wrong key, a full disk, a read-only folder, a corrupted
 * upload, a failing self-test, an interrupted deploy and its re-run, a rollback. After each, every
 * device runs the old or the new release, complete (runningRelease checks every file's sha256).
 */
const N = 20;
const work = tempDir("edgec-deploy-test-");
let fleet: Fleet;
let inv: string;
const ids: Record<string, string> = {};

const ssh = () => ["-F", fleet.sshConfig];
const deploy = (artifact: string, ...extra: string[]) => edgec(["deploy", artifact, "--fleet", inv, ...ssh(), "--no-progress", "--report", join(work.dir, "report.json"), ...extra]);
const report = () => JSON.parse(readFileSync(join(work.dir, "report.json"), "utf8")) as { release: string; failed: number; hosts: { host: string; status: string; error?: string; step?: string }[] };
const byHost = () => Object.fromEntries(report().hosts.map((h) => [h.host, h]));
const states = () => Object.fromEntries(fleet.devices.map((d) => [d.name, runningRelease(d)]));
/** The holder written in a device's lock (the target of its `.lock` symlink), if it is locked. */
const lockOf = (d: Device) => {
  try {
    return readlinkSync(join(d.home, "edgec/.lock"));
  } catch {
    return undefined;
  }
};
const incoming = (d: Device) => readdirSync(join(d.home, "edgec/releases")).filter((f) => f.startsWith(".incoming"));
type JsonReport = { release?: string; failed: number; hosts: { host: string; status: string; step?: string; error?: string; current?: string; info?: { lockedBy?: string } }[] };

async function build(name: string, c: number) {
  const model = work.write(`${name}.onnx`, addModel(c));
  const r = await edgec(["build", model, "-o", join(work.dir, name)]);
  expect(r.code, r.stderr).toBe(0);
  return join(work.dir, name);
}

describe("edgec deploy to a loopback fleet", () => {
  let v1: string, v2: string, bad: string;
  beforeAll(async () => {
    [fleet, v1, v2] = await Promise.all([startFleet(N), build("v1", 1), build("v2", 2)]);
    inv = fleet.inventory();
  });
  afterAll(() => {
    fleet?.stop();
    work.cleanup();
  });

  test(`deploys to ${N} devices in parallel`, async () => {
    const r = await deploy(v1, "--parallel", "8");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    ids.v1 = report().release;
    expect(r.stdout).toMatch(new RegExp(`deploy ${ids.v1}: ${N} ok, 0 failed`));
    expect(new Set(Object.values(states()))).toEqual(new Set([ids.v1]));
    // the self-test data went along and passes on the device
    expect(existsSync(join(fleet.devices[0].home, "edgec/current/selftest/out/0.bin"))).toBe(true);
    // a second deploy of the same release changes nothing
    const again = await deploy(v1);
    expect(again.code).toBe(0);
    expect(report().hosts.every((h) => h.status === "unchanged")).toBe(true);
  });

  test("a host that is down, a wrong key, a full disk, a read-only folder and a corrupted upload fail alone", async () => {
    const [down, key, full, ro, corrupt] = fleet.devices;
    takeDown(down);
    await fleet.setFault(key, "wrong-key");
    await fleet.setFault(full, "disk-full");
    await fleet.setFault(ro, "read-only");
    chmodSync(join(ro.home, "edgec"), 0o555);
    chmodSync(join(ro.home, "edgec", "releases"), 0o555);
    await fleet.setFault(corrupt, "corrupt");
    const r = await deploy(v2, "--retries", "1");
    expect(r.code).toBe(1);
    ids.v2 = report().release;
    const h = byHost();
    expect(h[down.name]).toMatchObject({ status: "failed", step: "connect" });
    expect(h[down.name].error).toMatch(/Connection refused/);
    expect(h[key.name].error).toMatch(/Permission denied/);
    expect(h[full.name]).toMatchObject({ status: "failed", step: "upload" });
    expect(h[ro.name]).toMatchObject({ status: "failed", step: "connect" });
    expect(h[ro.name].error).toMatch(/Permission denied|Read-only/);
    expect(h[corrupt.name]).toMatchObject({ status: "failed", step: "verify" });
    expect(h[corrupt.name].error).toMatch(/checksum mismatch/);
    expect(report().failed).toBe(5);
    const s = states();
    for (const d of [down, key, full, ro, corrupt]) expect(s[d.name]).toBe(ids.v1);
    for (const d of fleet.devices.slice(5)) expect(s[d.name]).toBe(ids.v2);
    // no upload is left behind on the devices that failed after creating it
    expect(readdirSync(join(full.home, "edgec/releases")).filter((f) => f.startsWith(".incoming"))).toEqual([]);
    expect(readdirSync(join(corrupt.home, "edgec/releases")).filter((f) => f.startsWith(".incoming"))).toEqual([]);
  });

  test("a failing self-test keeps the running version", async () => {
    // v3: v2 (with the self-test data its deploy added) with a wrong reference output
    bad = join(work.dir, "v3");
    cpSync(v2, bad, { recursive: true });
    const out = join(bad, "selftest", "out", "0.bin");
    const ref = readFileSync(out);
    ref.writeFloatLE(ref.readFloatLE(0) + 1, 0);
    writeFileSync(out, ref);
    const healthy = fleet.devices.slice(5);
    const r = await edgec(["deploy", bad, "--fleet", fleet.inventory(healthy, join(work.dir, "healthy.yml")), ...ssh(), "--no-progress", "--json"]);
    expect(r.code).toBe(1);
    const rep = JSON.parse(r.stdout) as { hosts: { status: string; step: string; error: string }[] };
    for (const h of rep.hosts) expect(h).toMatchObject({ status: "failed", step: "verify", error: expect.stringMatching(/self-test failed/) });
    for (const d of healthy) expect(runningRelease(d)).toBe(ids.v2);
  });

  test("rollback returns the hosts to their previous version", async () => {
    const healthy = fleet.devices.slice(5);
    const r = await edgec(["deploy", "--rollback", "--fleet", fleet.inventory(healthy, join(work.dir, "healthy.yml")), ...ssh(), "--no-progress"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const d of healthy) expect(runningRelease(d)).toBe(ids.v1);
    // the faulty devices never switched, so they have nothing to roll back to
    const [, , , , corrupt] = fleet.devices;
    await fleet.setFault(corrupt, "none");
    const none = await edgec(["deploy", "--rollback", "--host", `127.0.0.1:${corrupt.port}`, ...ssh(), "--no-progress"]);
    expect(none.code).toBe(1);
    expect(none.stdout).toMatch(/no previous version/);
  });

  test("an interrupted deploy leaves old or new versions, and a re-run completes it", async () => {
    const [down, key, full, ro] = fleet.devices;
    await Promise.all([key, full, ro].map((d) => fleet.setFault(d, "none")));
    chmodSync(join(ro.home, "edgec"), 0o755);
    chmodSync(join(ro.home, "edgec", "releases"), 0o755);
    const up = fleet.devices.slice(1);
    for (const d of up) await fleet.setFault(d, "slow");
    const upInv = fleet.inventory(up, join(work.dir, "up.yml"));
    let kill = () => {};
    const started = edgec(["deploy", v2, "--fleet", upInv, ...ssh(), "--no-progress", "--parallel", "4"], { onSpawn: (k) => (kill = k) });
    // kill edgec as soon as some devices have switched and others are mid-upload
    for (let i = 0; i < 400; i++) {
      const s = up.map((d) => runningRelease(d));
      if (s.includes(ids.v2) && s.includes(ids.v1)) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    kill();
    const r = await started;
    expect(r.code).not.toBe(0);
    const mid = up.map((d) => runningRelease(d));
    expect(mid.every((s) => s === ids.v1 || s === ids.v2)).toBe(true);
    expect(mid).toContain(ids.v1);
    for (const d of up) await fleet.setFault(d, "none");
    // The killed run's sessions on the devices still hold their locks until they end (seconds).
    for (let i = 0; i < 600 && up.some(lockOf); i++) await new Promise((r) => setTimeout(r, 50));
    const again = await edgec(["deploy", v2, "--fleet", upInv, ...ssh(), "--no-progress"]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    for (const d of up) {
      expect(runningRelease(d)).toBe(ids.v2);
      expect(readdirSync(join(d.home, "edgec/releases")).filter((f) => f.startsWith(".incoming"))).toEqual([]);
    }
    expect(runningRelease(down)).toBe(ids.v1);
  });

  test("two deploys to one device at once: one proceeds, the other finds it locked", async () => {
    const d = fleet.devices[N - 2];
    // The upload waits 3 s on this device, so whichever deploy takes the lock first still holds it
    // when the other arrives.
    await fleet.setFault(d, "slow-upload");
    const one = (v: string) => edgec(["deploy", v, "--host", `127.0.0.1:${d.port}`, ...ssh(), "--no-progress", "--json"]);
    const runs = await Promise.all([one(v1), one(v2)]);
    await fleet.setFault(d, "none");
    const reps = runs.map((r) => JSON.parse(r.stdout) as JsonReport);
    const won = reps.filter((r) => r.failed === 0);
    const lost = reps.filter((r) => r.failed === 1);
    expect(won.length, runs.map((r) => r.stdout).join("\n")).toBe(1);
    expect(lost.length).toBe(1);
    expect(lost[0].hosts[0]).toMatchObject({ status: "failed", step: "lock" });
    expect(lost[0].hosts[0].error).toMatch(new RegExp(`^device 127\\.0\\.0\\.1:${d.port} is locked by \\S+@\\S+ pid \\d+ \\(deploy ${won[0].release}\\) since \\d{4}-\\d\\d-\\d\\dT`));
    expect(runningRelease(d)).toBe(won[0].release);
    expect(lockOf(d)).toBeUndefined();
    expect(incoming(d)).toEqual([]);
  });

  test("rollback takes the lock too; a lock whose holder is gone is taken over; --break-lock breaks a live one", async () => {
    const d = fleet.devices[N - 3]; // runs v2, v1 before it
    const host = ["--host", `127.0.0.1:${d.port}`, ...ssh(), "--no-progress", "--json"];
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    // a deploy from elsewhere, still running: a live process on the device (loopback shares its pids)
    const holder = spawn("sleep", ["60"]);
    const lock = (pid: number, b = boot) => symlinkSync(`pid=${pid} boot=${b} since=2030-01-02T03:04:05Z by=ops@elsewhere pid 7 (deploy feedface)`, join(d.home, "edgec/.lock"));
    try {
      lock(holder.pid!);
      const refused = await edgec(["deploy", "--rollback", ...host]);
      expect(refused.code).toBe(1);
      expect((JSON.parse(refused.stdout) as JsonReport).hosts[0]).toMatchObject({ step: "lock", error: expect.stringMatching(/is locked by ops@elsewhere pid 7 \(deploy feedface\) since 2030-01-02T03:04:05Z; .*--break-lock/) });
      expect(runningRelease(d)).toBe(ids.v2);
      const st = await edgec(["fleet", "status", ...host]);
      expect((JSON.parse(st.stdout) as JsonReport).hosts[0].info?.lockedBy).toBe("ops@elsewhere pid 7 (deploy feedface) since 2030-01-02T03:04:05Z");
      const broken = await edgec(["deploy", "--rollback", ...host, "--break-lock"]);
      expect(broken.code, broken.stdout).toBe(0);
      expect(runningRelease(d)).toBe(ids.v1);
      expect(lockOf(d)).toBeUndefined();
      // stale: the same holder from before a reboot, then a holder whose process is gone
      lock(holder.pid!, "00000000-0000-0000-0000-000000000000");
      const afterReboot = await edgec(["deploy", "--rollback", ...host]);
      expect(afterReboot.code, afterReboot.stdout).toBe(0);
      expect(runningRelease(d)).toBe(ids.v2);
    } finally {
      holder.kill();
    }
    await new Promise((r) => holder.once("close", r));
    lock(holder.pid!);
    const afterKill = await edgec(["deploy", "--rollback", ...host]);
    expect(afterKill.code, afterKill.stdout).toBe(0);
    expect(runningRelease(d)).toBe(ids.v1);
    expect(lockOf(d)).toBeUndefined();
  });

  test("fleet status shows what each host runs", async () => {
    const r = await edgec(["fleet", "status", "--fleet", inv, ...ssh(), "--no-progress", "--json"]);
    expect(r.code, r.stderr).toBe(1); // dev01 is down
    const rep = JSON.parse(r.stdout) as { hosts: { host: string; status: string; current?: string; info?: { model?: string; target?: string } }[] };
    const h = Object.fromEntries(rep.hosts.map((x) => [x.host, x]));
    expect(h.dev01.status).toBe("failed");
    expect(h.dev02).toMatchObject({ status: "ok", current: ids.v2, info: { model: "v2.onnx", target: "host" } });
  });

  test("unknown host keys are refused unless --insecure-accept-new-host-keys", async () => {
    const d = fleet.devices[N - 1];
    const cfg = join(work.dir, "ssh_config_empty_known_hosts");
    writeFileSync(cfg, readFileSync(fleet.sshConfig, "utf8").replace(/UserKnownHostsFile .*/, `UserKnownHostsFile ${join(work.dir, "known_hosts_new")}`).replace("StrictHostKeyChecking yes", ""));
    const host = ["--host", `127.0.0.1:${d.port}`, "-F", cfg, "--no-progress"];
    const refused = await edgec(["deploy", v1, ...host]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/Host key verification failed/);
    const accepted = await edgec(["deploy", v1, ...host, "--insecure-accept-new-host-keys"]);
    expect(accepted.code, accepted.stdout).toBe(0);
    expect(readFileSync(join(work.dir, "known_hosts_new"), "utf8")).toMatch(/ssh-ed25519/);
  });

  test("refuses remote paths that could escape and targets that do not match", async () => {
    const d = fleet.devices[1];
    const esc = await edgec(["deploy", v1, "--host", `127.0.0.1:${d.port}`, "--dir", "../evil", ...ssh()]);
    expect(esc.code).toBe(2);
    expect(esc.stderr).toMatch(/not allowed/);
    const quote = await edgec(["deploy", v1, "--host", `127.0.0.1:${d.port}`, "--dir", "a';touch x'", ...ssh()]);
    expect(quote.code).toBe(2);
    const wrong = work.write("wrong.yml", `all:\n  hosts:\n    d: { ansible_host: 127.0.0.1, ansible_port: ${d.port}, edgec_target: rpi4 }\n`);
    const r = await edgec(["deploy", v1, "--fleet", wrong, ...ssh(), "--no-progress"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/edgec_target 'rpi4', the artifact is built for 'host'/);
  });
});
