import { cpus } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { tempDir } from "../helpers/onnx-builder.js";
import { startFleet, type Fleet } from "./devices.js";
import { edgec, ROOT, runningRelease } from "./helpers.js";

/**
 * The measure: deploying a MobileNetV2 artifact to 20 loopback devices with --parallel 8
 * takes at most twice as long as deploying it to one. Each timed deploy goes to devices that have
 * never seen it (a first, untimed deploy adds the self-test data to the artifact).
 * A benchmark, not part of `make test`: run it with `make bench-deploy`.
 */
const MODEL = join(ROOT, "..", "shared", "corpus", "models", "mobilenet_v2_w035_c10_96", "model.onnx");
const work = tempDir("edgec-deploy-timing-");
let fleet: Fleet;
let artifact: string;

describe("deploy time, 1 vs 20 devices", () => {
  beforeAll(async () => {
    artifact = join(work.dir, "mobilenetv2");
    const [f, b] = await Promise.all([startFleet(22), edgec(["build", MODEL, "-o", artifact])]);
    fleet = f;
    expect(b.code, b.stderr).toBe(0);
  });
  afterAll(() => {
    fleet?.stop();
    work.cleanup();
  });

  test("20 devices with --parallel 8 against one (the issue asks for at most 2x; asserted on 8+ cores, at most 8x on fewer)", async () => {
    const run = (devs: typeof fleet.devices, name: string) =>
      edgec(["deploy", artifact, "--fleet", fleet.inventory(devs, join(work.dir, `${name}.yml`)), "-F", fleet.sshConfig, "--no-progress", "--parallel", "8"]);
    const warm = await run(fleet.devices.slice(0, 1), "warm");
    expect(warm.code, warm.stdout + warm.stderr).toBe(0);
    const one = await run(fleet.devices.slice(1, 2), "one");
    const twenty = await run(fleet.devices.slice(2, 22), "twenty");
    expect(one.code, one.stdout).toBe(0);
    expect(twenty.code, twenty.stdout).toBe(0);
    const ids = new Set(fleet.devices.map((d) => runningRelease(d)));
    expect(ids.size).toBe(1);
    console.log(`deploy MobileNetV2 (${artifact}): 1 device ${one.ms} ms, 20 devices --parallel 8 ${twenty.ms} ms, ratio ${(twenty.ms / one.ms).toFixed(2)} on ${cpus().length} cores`);
    // The bound holds where the 20 simulated devices do not share two cores with the client:
    // on loopback every device's sshd work (key exchange, tar, sha256, self-test) lands on this machine.
    // With fewer cores the check is that hosts really overlap: well under 20 sequential deploys.
    expect(twenty.ms).toBeLessThanOrEqual((cpus().length >= 8 ? 2 : 8) * one.ms);
  });
});
