import { afterAll, describe, expect, it } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { runArtifact } from "../../src/driver/run.js";
import { loadTarget } from "../../src/target/load.js";
import { modelBytes, node, T, tempDir, valueInfo } from "../helpers/onnx-builder.js";

/**
 * Float Max and Min follow C's fmax/fmin (a NaN operand loses) whichever way a target's C computes
 * them: an instruction on AArch64, a bit mask elsewhere, a vector blend in vector loops. 37 elements:
 * vector bodies and scalar tails on every target, NaNs in both and in either operand.
 */
const N = 37;
const NAN_A = [3, 20, 35];
const NAN_B = [5, 20, 36];
const values = (nans: number[], k: number) => Array.from({ length: N }, (_, i) => (nans.includes(i) ? NaN : Math.sin(i * k) * 10));
const a = values(NAN_A, 1.3);
const b = values(NAN_B, 0.7);
const fminmax = (pick: (x: number, y: number) => number) => a.map((x, i) => (Number.isNaN(x) ? b[i] : Number.isNaN(b[i]) ? x : pick(x, b[i])));

const work = tempDir("edgec-minmax-");
afterAll(() => work.cleanup());
const file = work.write(
  "minmax.onnx",
  modelBytes({
    inputs: [valueInfo("a", T.FLOAT, [N]), valueInfo("b", T.FLOAT, [N]), valueInfo("c", T.DOUBLE, [N]), valueInfo("d", T.DOUBLE, [N])],
    nodes: [node("Max", ["a", "b"], ["max"]), node("Min", ["a", "b"], ["min"]), node("Max", ["c", "d"], ["max64"]), node("Min", ["c", "d"], ["min64"])],
    outputs: [valueInfo("max", T.FLOAT), valueInfo("min", T.FLOAT), valueInfo("max64", T.DOUBLE), valueInfo("min64", T.DOUBLE)],
  }),
);

describe("Max and Min with NaN operands", () => {
  for (const t of ["host", "rpi4", "wasm32"]) {
    it(`take the other operand on ${t}`, async () => {
      const dir = `${work.dir}/${t}`;
      await buildArtifact(file, dir, { target: loadTarget(t) });
      const f32 = (v: number[]) => ({ dtype: "float32" as const, shape: [N], data: Float32Array.from(v) });
      const f64 = (v: number[]) => ({ dtype: "float64" as const, shape: [N], data: Float64Array.from(v) });
      const { outputs } = await runArtifact(dir, { a: f32(a), b: f32(b), c: f64(a), d: f64(b) });
      const [max, min] = [fminmax(Math.max), fminmax(Math.min)];
      expect(Array.from(outputs[0].data as Float32Array)).toEqual(Array.from(Float32Array.from(max)));
      expect(Array.from(outputs[1].data as Float32Array)).toEqual(Array.from(Float32Array.from(min)));
      expect(Array.from(outputs[2].data as Float64Array)).toEqual(max);
      expect(Array.from(outputs[3].data as Float64Array)).toEqual(min);
    });
  }
});
