import { spawnSync } from "node:child_process";
import { cpSync, existsSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

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

function make(...args: string[]) {
  const r = spawnSync("make", ["--no-print-directory", "-C", app, `EDGEC=${process.execPath} ${join(ROOT, "bin", "edgec.js")}`, ...args], { encoding: "utf8" });
  return { code: r.status, out: r.stdout + r.stderr };
}
function runApp(target: string) {
  const [cmd, ...pre] = [...QEMU[target], join(app, "build", target, "app")];
  const r = spawnSync(cmd, pre, { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

describe("examples/app", () => {
  // `make setup` installs every cross compiler and qemu: a missing one is a failure, not a skip.
  const targets = Object.keys(CC);

  test.each(targets)("builds and runs for %s", (target) => {
    const r = make(`TARGET=${target}`);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/edgec\.js build model\.onnx --target/);
    const out = runApp(target);
    expect(out).toMatch(/^class 0: [\d.]+\n/);
    if (target !== "host") expect(out).toBe(runApp("host"));
  });

  test("a second make does nothing, touching the model re-runs edgec only, changing it rebuilds", () => {
    expect(make("TARGET=host").code).toBe(0);
    const again = make("TARGET=host");
    expect(again.out).toMatch(/Nothing to be done for 'all'/);
    expect(again.out).not.toMatch(/edgec\.js build|gcc/);
    const appFile = join(app, "build", "host", "app");
    const before = statSync(appFile).mtimeMs;
    const later = new Date(Date.now() + 2000);
    utimesSync(join(app, "model.onnx"), later, later);
    const touched = make("TARGET=host");
    expect(touched.out).toMatch(/edgec\.js build/);
    expect(touched.out).not.toMatch(/gcc|-o build\/host\/app/);
    expect(statSync(appFile).mtimeMs).toBe(before);
    expect(make("TARGET=host").out).toMatch(/Nothing to be done for 'all'/);
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
    const changed = make("TARGET=host");
    expect(changed.code, changed.out).toBe(0);
    expect(changed.out).toMatch(/libnet\.a/);
    expect(statSync(appFile).mtimeMs).toBeGreaterThan(before);
    expect(existsSync(join(app, "build", "host", "net", "edgec.d"))).toBe(true);
  });

  test("an artifact's Makefile cross-compiles a static library, a shared library and run", () => {
    const dir = join(work.dir, "artifact");
    const b = spawnSync(process.execPath, [join(ROOT, "bin", "edgec.js"), "build", join(ROOT, "examples", "app", "model.onnx"), "--target", "rpi4", "--name", "net", "-o", dir, "--stop-after", "codegen"], { encoding: "utf8" });
    expect(b.status, b.stderr).toBe(0);
    const r = spawnSync("make", ["-C", dir, "CROSS_COMPILE=aarch64-linux-gnu-", "CFLAGS=-O2"], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/aarch64-linux-gnu-gcc .*-fPIC/);
    expect(r.stdout).toMatch(/aarch64-linux-gnu-ar rcs libnet\.a/);
    for (const f of ["libnet.a", "libnet.so", "run"]) expect(existsSync(join(dir, f))).toBe(true);
    const file = spawnSync("sh", ["-c", `od -An -tx1 -j18 -N2 ${join(dir, "libnet.so")}`], { encoding: "utf8" }).stdout.trim();
    expect(file).toBe("b7 00"); // ELF e_machine EM_AARCH64
  });
});

