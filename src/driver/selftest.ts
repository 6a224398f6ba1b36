import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "zx";
import type { Manifest } from "../core/artifact.js";
import { EdgecError } from "../core/diag.js";
import { fromNumbers, numel, type Tensor } from "../core/tensor.js";
import { bytesOf } from "../frontend/onnx/tensor-io.js";
import { emulatorFor } from "../target/device.js";
import { readManifest } from "./artifact.js";
import { runArtifact } from "./run.js";

export const SELF_TEST_DIR = "selftest";

/**
 * Deterministic reference inputs: a fixed linear congruential sequence, floats in [-1, 1), integers in
 * [0, 4) (small and non-negative, so index-like inputs such as Gather's stay in range), bools 0/1.
 */
export function referenceInputs(m: Pick<Manifest, "inputs">): Record<string, Tensor> {
  let state = 0x2545f491;
  const next = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  return Object.fromEntries(
    m.inputs.map((spec) => {
      const n = numel(spec.shape);
      const values = Array.from({ length: n }, () => next());
      const float = spec.dtype.startsWith("float");
      const v = values.map((x) => (float ? 2 * x - 1 : spec.dtype === "bool" ? Math.floor(2 * x) : Math.floor(4 * x)));
      return [spec.name, fromNumbers(spec.dtype, spec.shape, v)];
    }),
  );
}

/**
 * Gives an artifact the self-test a device runs after a deploy: runs it here (under the target's
 * emulator when foreign) on the reference inputs, stores inputs and outputs under selftest/ (under
 * selftest/<model>/ for each model of an artifact of several, which `run --check` checks in turn),
 * records them in manifest.json and checks that `run --check` accepts them. Does nothing when
 * already present.
 */
export async function ensureSelfTest(dir: string, tol = { rtol: 1e-3, atol: 1e-4 }): Promise<Manifest> {
  const m = readManifest(dir);
  if (m.selfTest && existsSync(join(dir, m.selfTest.dir))) return m;
  if (!m.runProgram) throw new EdgecError(`${dir}: the artifact has no run program, so it has no self-test (install the target's compiler and build again)`);
  const tmp = join(dir, `.${SELF_TEST_DIR}.tmp`);
  rmSync(tmp, { recursive: true, force: true });
  for (const model of m.models ?? [undefined]) {
    const spec = model ?? m;
    const inputs = referenceInputs(spec);
    const { outputs } = await runArtifact(dir, inputs, 1, { model: model?.name });
    const sub = join(tmp, model?.name ?? "");
    mkdirSync(join(sub, "in"), { recursive: true });
    mkdirSync(join(sub, "out"));
    spec.inputs.forEach((s, i) => writeFileSync(join(sub, "in", `${i}.bin`), bytesOf(inputs[s.name].data)));
    outputs.forEach((t, i) => writeFileSync(join(sub, "out", `${i}.bin`), bytesOf(t.data)));
  }
  rmSync(join(dir, SELF_TEST_DIR), { recursive: true, force: true });
  renameSync(tmp, join(dir, SELF_TEST_DIR));
  const withTest: Manifest = { ...m, selfTest: { dir: SELF_TEST_DIR, ...tol } };
  const check = [...emulatorFor(m.target, m.triple), join(dir, m.runProgram), "--check", join(dir, SELF_TEST_DIR), String(tol.rtol), String(tol.atol)];
  const r = await $({ nothrow: true, quiet: true })`${check}`;
  if (r.exitCode !== 0) throw new EdgecError(`${dir}: the self-test does not pass on the build machine: ${(r.stderr || r.stdout).trim()}`, 3);
  writeFileSync(join(dir, "manifest.json.tmp"), JSON.stringify(withTest, null, 2) + "\n");
  renameSync(join(dir, "manifest.json.tmp"), join(dir, "manifest.json"));
  return withTest;
}
