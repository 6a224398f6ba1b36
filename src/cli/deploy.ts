import { writeFileSync } from "node:fs";
import { Command, Option } from "commander";
import { EdgecError } from "../core/diag.js";
import { readManifest } from "../driver/artifact.js";
import { ensureSelfTest } from "../driver/selftest.js";
import { emitAnsible } from "../deploy/ansible.js";
import { deploy, prepareRelease, rollback, status, type FleetOptions, type FleetReport } from "../deploy/deploy.js";
import { DEFAULT_REMOTE_DIR, parseHostSpec, readInventory, type Host } from "../deploy/inventory.js";
import { formatReport, Progress } from "../deploy/progress.js";
import { loadTarget } from "../target/load.js";

interface FleetFlags {
  host?: string[];
  fleet?: string;
  limit?: string;
  dir?: string;
  parallel: number;
  timeout: number;
  retries: number;
  sshConfig?: string;
  sshOption?: string[];
  insecureAcceptNewHostKeys?: boolean;
  progress: boolean;
  report?: string;
  json?: boolean;
  breakLock?: boolean;
}

const count = (what: string, min: number) => (v: string) => {
  const x = Number(v);
  if (!Number.isInteger(x) || x < min) throw new EdgecError(`${what}: '${v}' is not an integer >= ${min}`);
  return x;
};
const collect = (v: string, a: string[] = []) => [...a, v];

/** The options every fleet command shares: where the hosts are and how to reach them. */
function fleetOptions(c: Command): Command {
  return c
    .option("--host <user@host[:port]>", "a device to deploy to (repeatable)", collect)
    .option("--fleet <inventory>", "Ansible inventory, YAML or INI (ansible_host, ansible_port, ansible_user, ansible_ssh_private_key_file, edgec_target, edgec_dir)")
    .option("--limit <group-or-host>", "only the inventory's hosts of this group, or this host")
    .option("--dir <remote-dir>", `remote directory for hosts without edgec_dir (default ${DEFAULT_REMOTE_DIR}, relative to the login directory)`)
    .option("--parallel <n>", "hosts at a time", count("--parallel", 1), 8)
    .option("--timeout <s>", "seconds per host for all of its steps", count("--timeout", 1), 300)
    .option("--retries <n>", "retries of a step after a connection error", count("--retries", 0), 2)
    .option("-F, --ssh-config <file>", "ssh configuration file instead of ~/.ssh/config")
    .option("-o, --ssh-option <opt>", "extra ssh option, e.g. -o ProxyJump=bastion (repeatable)", collect)
    .option("--insecure-accept-new-host-keys", "accept (and record) unknown host keys; changed keys are still refused")
    .option("--no-progress", "no per-host progress lines")
    .option("--report <file>", "write the results as JSON");
}

function hostsOf(o: FleetFlags): Host[] {
  if (!o.host?.length && !o.fleet) throw new EdgecError("give the devices with --host user@host[:port] or --fleet INVENTORY");
  const hosts = [...(o.fleet ? readInventory(o.fleet, { defaultDir: o.dir, limit: o.limit }) : []), ...(o.host ?? []).map((h) => parseHostSpec(h, o.dir))];
  const dup = hosts.find((h, i) => hosts.findIndex((x) => x.name === h.name) !== i);
  if (dup) throw new EdgecError(`host '${dup.name}' is given twice`);
  return hosts;
}

function runOptions(o: FleetFlags): FleetOptions {
  return {
    ssh: { configFile: o.sshConfig, options: o.sshOption, acceptNewHostKeys: !!o.insecureAcceptNewHostKeys },
    parallel: o.parallel,
    timeoutS: o.timeout,
    retries: o.retries,
    breakLock: !!o.breakLock,
    progress: o.progress ? new Progress() : undefined,
  };
}

function finish(r: FleetReport, o: FleetFlags) {
  if (o.report) writeFileSync(o.report, JSON.stringify(r, null, 2) + "\n");
  process.stdout.write(o.json ? JSON.stringify(r, null, 2) + "\n" : formatReport(r));
  if (r.failed) process.exitCode = 1;
}

/** Adds `edgec deploy` and `edgec fleet status` to the CLI. */
export function addDeployCommands(cli: Command): void {
  fleetOptions(
    cli
      .command("deploy")
      .description("install an artifact on devices over SSH: verify checksums, run its self-test on each device, switch atomically (exit 1 when a host failed)")
      .argument("[artifact]", "artifact directory from `edgec build`")
      .option("--rollback", "return each host to its previous version instead")
      .option("--emit-ansible <dir>", "write an Ansible playbook doing the same steps instead of deploying")
      .option("--break-lock", "remove each device's lock first, even one held by a running deploy (only when none runs: the lock keeps two deploys from interleaving)"),
  )
    .addOption(new Option("--json", "print the report as JSON instead of a table"))
    .action(async (artifact: string | undefined, o: FleetFlags & { rollback?: boolean; emitAnsible?: string }) => {
      if (o.rollback) {
        if (artifact) throw new EdgecError("--rollback takes no artifact");
        return finish(await rollback(hostsOf(o), runOptions(o)), o);
      }
      if (!artifact) throw new EdgecError("deploy: missing ARTIFACT (an artifact directory from `edgec build`)");
      readManifest(artifact);
      const m = await ensureSelfTest(artifact);
      const target = loadTarget(m.target);
      const rel = prepareRelease(artifact, m);
      if (o.emitAnsible) {
        emitAnsible(rel, target.arch, o.emitAnsible);
        console.log(`wrote ${o.emitAnsible}/deploy.yml and rollback.yml for release ${rel.id}; run: ansible-playbook -i INVENTORY ${o.emitAnsible}/deploy.yml`);
        return;
      }
      const hosts = hostsOf(o);
      // Inventory targets may be aliases ("jetson"); compare canonical names.
      const canonical = new Map(hosts.filter((h) => h.target).map((h) => [h.name, loadTarget(h.target!).name]));
      finish(await deploy(rel, hosts, target.arch, runOptions(o), (h) => canonical.get(h.name)), o);
    });

  const fleet = cli.command("fleet").description("inspect a fleet of devices");
  fleetOptions(fleet.command("status").description("show the version each host runs"))
    .option("--json", "print the report as JSON")
    .action(async (o: FleetFlags) => finish(await status(hostsOf(o), runOptions(o)), o));
}
