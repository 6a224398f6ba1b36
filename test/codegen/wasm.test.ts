import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { runArtifact } from "../../src/driver/run.js";
import { ensureSelfTest } from "../../src/driver/selftest.js";
import { compare, verifyModel, verifyModels } from "../../src/driver/verify.js";
import { bytesOf, readTensorFile } from "../../src/frontend/onnx/tensor-io.js";
import { loadTarget } from "../../src/target/load.js";
import { CORPUS } from "../conformance/suite.js";
import { tempDir } from "../helpers/onnx-builder.js";
import { run, runOk } from "../helpers/run.js";

/**
 * The wasm backend's artifact: run.wasm (the C harness as a WASI command) and the `run` launcher
 * that Node runs it with. The conformance suite (test/conformance/wasm32.test.ts) covers the
 * numbers and wasm-package.test.ts the npm package; this covers the rest: SIMD on and off, the
 * launcher as a user calls it, the self-test, weights.bin, several models in one artifact.
 */
const KWS = join(CORPUS, "models", "dscnn_kws");
const TFM = join(CORPUS, "models", "tiny_transformer_encoder");
const TOL = { rtol: 1e-3, atol: 1e-5 };
const work = tempDir("edgec-wasm-");
afterAll(() => work.cleanup());

/** WebAssembly SIMD instructions (v128.load, f32x4.add, ...) in the artifact's model code. */
const simdInstructions = async (dir: string) =>
  (await runOk("llvm-objdump", ["-d", join(dir, "libmodel.a")]))
    .split("\n")
    .filter((l) => /\b(v128|f32x4|i32x4)\./.test(l)).length;

async function buildKws(targetName: string, out: string) {
  const { dir, manifest } = await buildArtifact(join(KWS, "model.onnx"), join(work.dir, out), { target: loadTarget(targetName) });
  const input = readTensorFile(join(KWS, "test_data_set_0", "input_0.pb"));
  const want = readTensorFile(join(KWS, "test_data_set_0", "output_0.pb"));
  return { dir, manifest, input, want };
}

describe("wasm32", () => {
  it.each([
    ["wasm32", true],
    ["wasm32-nosimd", false],
  ])("%s (SIMD128 %s): its outputs match the reference", async (targetName, simd) => {
    const { dir, manifest, input, want } = await buildKws(targetName, targetName);
    expect(manifest.runProgram).toBe("run");
    const count = await simdInstructions(dir);
    if (simd) expect(count).toBeGreaterThan(100);
    else expect(count).toBe(0);
    const { outputs } = await runArtifact(dir, { [manifest.inputs[0].name]: input });
    const c = compare("output", outputs[0], want, TOL);
    expect(c.pass, `max abs ${c.maxAbs}`).toBe(true);
  });

  it("the artifact's `run` works like the native harness: relative directories, timing, --check", async () => {
    const { dir, input, want } = await buildKws("wasm32", "launcher");
    mkdirSync(join(dir, "in"));
    mkdirSync(join(dir, "out"));
    writeFileSync(join(dir, "in", "0.bin"), bytesOf(input.data));
    // Started directly (its #! line finds node), with directories relative to the caller's.
    const r = await run("./run", ["--threads", "1", "--warmup-ms", "20", "in", "out", "3"], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const stats = /median_ms=([\d.]+) .* max_rss_kb=(\d+)/.exec(r.stdout);
    expect(stats, r.stdout).not.toBeNull();
    // The linear memory holds the weights (91 KB) and the arena (66 KB).
    expect(Number(stats![2])).toBeGreaterThanOrEqual(192);
    const got = { ...want, data: new Float32Array(new Uint8Array(readFileSync(join(dir, "out", "0.bin"))).buffer) };
    expect(compare("output", got, want, TOL).pass).toBe(true);

    // The deploy self-test runs `run --check` through the launcher; a changed reference fails it.
    const m = await ensureSelfTest(dir);
    const ref = join(dir, m.selfTest!.dir, "out", "0.bin");
    const bytes = readFileSync(ref);
    bytes.writeFloatLE(bytes.readFloatLE(0) + 1, 0);
    writeFileSync(ref, bytes);
    const check = await run(process.execPath, [join(dir, "run"), "--check", join(dir, m.selfTest!.dir)]);
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/check: FAIL/);
  });

  it("without a WASI libc for its flags, a build writes the sources only and says why", async () => {
    const file = work.write("nolibc.json", JSON.stringify({ ...loadTarget("wasm32"), name: "nolibc", cflags: ["-O2", "--target=wasm32-wasi", `--sysroot=${work.dir}`] }));
    const r = await buildArtifact(join(KWS, "model.onnx"), join(work.dir, "nolibc"), { target: loadTarget(file) });
    expect(r.skipped).toMatch(/no WASI libc .*wasi-libc/);
    expect(r.manifest.runProgram).toBeUndefined();
    expect(r.manifest.files).toContain("model.c");
  });

  it("weights in weights.bin, read through WASI", async () => {
    const target = loadTarget("wasm32");
    const res = await verifyModel(join(TFM, "model.onnx"), TFM, { target, weights: "file" }, TOL);
    expect(res.map((r) => r.pass)).toEqual([true]);
  });

  it("several models in one artifact, run in turns", async () => {
    const target = loadTarget("wasm32");
    const res = await verifyModels(
      [
        { file: join(KWS, "model.onnx"), name: "kws", data: KWS },
        { file: join(TFM, "model.onnx"), name: "tfm", data: TFM },
      ],
      { target },
      TOL,
    );
    expect(res.map((r) => `${r.model}:${r.pass}`)).toEqual(["kws:true", "tfm:true"]);
  });
});
