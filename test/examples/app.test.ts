import { cpSync, existsSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";
import { edgecCli, run } from "../helpers/run.js";

/**
 * examples/app: a C application whose Makefile runs `edgec build` as a build step. From a clean
 * tree it builds for the host, aarch64 (rpi4, jetson) and armhf (armv7); the foreign binaries run
 * under qemu and print what the host binary prints. A second make does nothing; touching the model
 * re-runs edgec without recompiling (content-hash cache); changing it rebuilds the app.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const work = tempDir("edgec-example-app-");
afterAll(() => work.cleanup());
const app = join(work.dir, "app");
cpSync(join(ROOT, "examples", "app"), app, { recursive: true });

const QEMU: Record<string, string[]> = { rpi4: ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"], jetson: ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"], armv7: ["qemu-arm", "-L", "/usr/arm-linux-gnueabihf"], host: [] };
const CC: Record<string, string> = { host: "gcc", rpi4: "aarch64-linux-gnu-gcc", jetson: "aarch64-linux-gnu-gcc", armv7: "arm-linux-gnueabihf-gcc" };

async function make(...args: string[]) {
  const r = await run("make", ["--no-print-directory", "-C", app, `EDGEC=${process.execPath} ${join(ROOT, "bin", "edgec.js")}`, ...args]);
  return { code: r.code, out: r.stdout + r.stderr };
}
async function runApp(target: string) {
  const [cmd, ...pre] = [...QEMU[target], join(app, "build", target, "app")];
  const r = await run(cmd, pre);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

describe("examples/app", () => {
  // `make setup` installs every cross compiler and qemu: a missing one is a failure, not a skip.
  const targets = Object.keys(CC);

  test.each(targets)("builds and runs for %s", async (target) => {
    const r = await make(`TARGET=${target}`);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/edgec\.js build model\.onnx --target/);
    const out = await runApp(target);
    expect(out).toMatch(/^class 0: [\d.]+\n/);
    if (target !== "host") expect(out).toBe(await runApp("host"));
  });

  test("a second make does nothing, touching the model re-runs edgec only, changing it rebuilds", async () => {
    expect((await make("TARGET=host")).code).toBe(0);
    const again = await make("TARGET=host");
    expect(again.out).toMatch(/Nothing to be done for 'all'/);
    expect(again.out).not.toMatch(/edgec\.js build|gcc/);
    const appFile = join(app, "build", "host", "app");
    const before = statSync(appFile).mtimeMs;
    const later = new Date(Date.now() + 2000);
    utimesSync(join(app, "model.onnx"), later, later);
    const touched = await make("TARGET=host");
    expect(touched.out).toMatch(/edgec\.js build/);
    expect(touched.out).not.toMatch(/gcc|-o build\/host\/app/);
    expect(statSync(appFile).mtimeMs).toBe(before);
    expect((await make("TARGET=host")).out).toMatch(/Nothing to be done for 'all'/);
    // a different model: y = softmax(x W) with other weights
    writeFileSync(
      join(app, "model.onnx"),
      modelBytes({
        nodes: [node("MatMul", ["features", "W"], ["h"]), node("Softmax", ["h"], ["scores"])],
        inputs: [valueInfo("features", T.FLOAT, [1, 8])],
        outputs: [valueInfo("scores", T.FLOAT, [1, 4])],
        initializers: [tensorProto("W", T.FLOAT, [8, 4], { floatData: Array.from({ length: 32 }, (_, i) => (i % 5) - 2) })],
      }),
    );
    const changed = await make("TARGET=host");
    expect(changed.code, changed.out).toBe(0);
    expect(changed.out).toMatch(/libnet\.a/);
    expect(statSync(appFile).mtimeMs).toBeGreaterThan(before);
    expect(existsSync(join(app, "build", "host", "net", "edgec.d"))).toBe(true);
  });

  test("an artifact's Makefile cross-compiles a static library, a shared library and run", async () => {
    const dir = join(work.dir, "artifact");
    const b = await edgecCli(["build", join(ROOT, "examples", "app", "model.onnx"), "--target", "rpi4", "--name", "net", "-o", dir, "--stop-after", "codegen"]);
    expect(b.code, b.stderr).toBe(0);
    const r = await run("make", ["-C", dir, "CROSS_COMPILE=aarch64-linux-gnu-", "CFLAGS=-O2"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/aarch64-linux-gnu-gcc .*-fPIC/);
    expect(r.stdout).toMatch(/aarch64-linux-gnu-ar rcs libnet\.a/);
    for (const f of ["libnet.a", "libnet.so", "run"]) expect(existsSync(join(dir, f))).toBe(true);
    const file = (await run("sh", ["-c", `od -An -tx1 -j18 -N2 ${join(dir, "libnet.so")}`])).stdout.trim();
    expect(file).toBe("b7 00"); // ELF e_machine EM_AARCH64
  });
});

