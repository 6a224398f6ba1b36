import { afterAll, describe, expect, it } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { runArtifact } from "../../src/driver/run.js";
import { loadTarget } from "../../src/target/load.js";
import { modelBytes, node, T, tempDir, valueInfo } from "../helpers/onnx-builder.js";

/**
 * Float Max and Min follow C's fmax/fmin (a NaN operand loses) whichever way a target's C computes
 * them: an instruction on AArch64, a bit mask elsewhere, a vector blend in vector loops, x86's
 * min/max instructions masked or blended where the second operand is NaN. 37 elements: vector
 * bodies and scalar tails on every target, NaNs in both and in either operand; 13 more (the
 * float32 `e` and `f`): the 8- and 4-lane forms a 16-lane target uses for short rows.
 */
const N = 37;
const SHORT = 13;
const NAN_A = [3, 20, 35];
const NAN_B = [5, 20, 36];
const values = (nans: number[], k: number, n = N) => Array.from({ length: n }, (_, i) => (nans.includes(i) ? NaN : Math.sin(i * k) * 10));
const a = values(NAN_A, 1.3);
const b = values(NAN_B, 0.7);
// On a 16-lane host: elements 0–7 in 8 lanes, 8–11 in 4, each with NaNs in e only, f only and both.
const e = values([1, 5, 9, 11], 0.9, SHORT);
const f = values([2, 5, 9, 10], 1.7, SHORT);
const fminmax = (x: number[], y: number[], pick: (x: number, y: number) => number) =>
  x.map((v, i) => (Number.isNaN(v) ? y[i] : Number.isNaN(y[i]) ? v : pick(v, y[i])));

const work = tempDir("edgec-minmax-");
afterAll(() => work.cleanup());
const file = work.write(
  "minmax.onnx",
  modelBytes({
    inputs: [
      valueInfo("a", T.FLOAT, [N]), valueInfo("b", T.FLOAT, [N]), valueInfo("c", T.DOUBLE, [N]), valueInfo("d", T.DOUBLE, [N]),
      valueInfo("e", T.FLOAT, [SHORT]), valueInfo("f", T.FLOAT, [SHORT]),
    ],
    nodes: [
      node("Max", ["a", "b"], ["max"]), node("Min", ["a", "b"], ["min"]), node("Max", ["c", "d"], ["max64"]), node("Min", ["c", "d"], ["min64"]),
      node("Max", ["e", "f"], ["maxShort"]), node("Min", ["e", "f"], ["minShort"]),
    ],
    outputs: [
      valueInfo("max", T.FLOAT), valueInfo("min", T.FLOAT), valueInfo("max64", T.DOUBLE), valueInfo("min64", T.DOUBLE),
      valueInfo("maxShort", T.FLOAT), valueInfo("minShort", T.FLOAT),
    ],
  }),
);

describe("Max and Min with NaN operands", () => {
  for (const t of ["host", "rpi4", "wasm32"]) {
    it(`take the other operand on ${t}`, async () => {
      const dir = `${work.dir}/${t}`;
      await buildArtifact(file, dir, { target: loadTarget(t) });
      const f32 = (v: number[]) => ({ dtype: "float32" as const, shape: [v.length], data: Float32Array.from(v) });
      const f64 = (v: number[]) => ({ dtype: "float64" as const, shape: [v.length], data: Float64Array.from(v) });
      const { outputs } = await runArtifact(dir, { a: f32(a), b: f32(b), c: f64(a), d: f64(b), e: f32(e), f: f32(f) });
      const [max, min] = [fminmax(a, b, Math.max), fminmax(a, b, Math.min)];
      expect(Array.from(outputs[0].data as Float32Array)).toEqual(Array.from(Float32Array.from(max)));
      expect(Array.from(outputs[1].data as Float32Array)).toEqual(Array.from(Float32Array.from(min)));
      expect(Array.from(outputs[2].data as Float64Array)).toEqual(max);
      expect(Array.from(outputs[3].data as Float64Array)).toEqual(min);
      expect(Array.from(outputs[4].data as Float32Array)).toEqual(Array.from(Float32Array.from(fminmax(e, f, Math.max))));
      expect(Array.from(outputs[5].data as Float32Array)).toEqual(Array.from(Float32Array.from(fminmax(e, f, Math.min))));
    });
  }
});
