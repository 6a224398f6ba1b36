import ort from "onnxruntime-node";
import { expect } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import type { PipelineOptions } from "../../src/driver/pipeline.js";
import { runArtifact } from "../../src/driver/run.js";
import { compare } from "../../src/driver/verify.js";

/**
 * Builds `file` into `dir`, runs it on the one float32 input `x` of shape `shape`, and expects each
 * of the named outputs (in the artifact's output order) to match onnxruntime's within 1e-4 relative,
 * 1e-5 absolute.
 */
export async function expectLikeOrt(file: string, dir: string, x: Float32Array, shape: number[], outs: string[], opts: PipelineOptions): Promise<void> {
  const session = await ort.InferenceSession.create(file);
  const ref = await session.run({ x: new ort.Tensor("float32", x, shape) });
  await buildArtifact(file, dir, opts);
  const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape, data: x } });
  outs.forEach((name, i) => {
    const r = ref[name];
    const cmp = compare(name, outputs[i], { dtype: "float32", shape: [...r.dims], data: r.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
    expect(cmp.pass, `${name}: max abs error ${cmp.maxAbs}`).toBe(true);
  });
}
