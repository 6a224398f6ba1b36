import { join } from "node:path";
import ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import type { Tensor } from "../../src/core/tensor.js";
import { buildArtifact } from "../../src/driver/artifact.js";
import { compileModel } from "../../src/driver/pipeline.js";
import { runArtifact } from "../../src/driver/run.js";
import { compare } from "../../src/driver/verify.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { interpret } from "../../src/graph/interp.js";
import { loadTarget } from "../../src/target/load.js";
import { tempDir } from "../helpers/onnx-builder.js";
import { randomModel, rng, type Case } from "../helpers/random-onnx.js";

/**
 * Randomized differential test of fusion. A seeded generator builds small opset-17 graphs from the
 * ops fusion touches (elementwise with broadcasting, reductions, layout ops, Softmax, MatMul/Conv
 * anchors), with fan-out and intermediate outputs. Each model holds several independent random
 * subgraphs so one gcc build covers several graphs. Every model is compiled fused and unfused for
 * the host, and both artifacts must match the graph interpreter and onnxruntime.
 * Reproduce or explore: FUSE_RANDOM_SEED=<n> FUSE_RANDOM_MODELS=<n> npx vitest run test/graph/fuse-random.test.ts
 */
const SEED = Number(process.env.FUSE_RANDOM_SEED ?? 1592598564);
const MODELS = Number(process.env.FUSE_RANDOM_MODELS ?? 60);
const GRAPHS_PER_MODEL = 4;
const TOL = { rtol: 1e-4, atol: 1e-5 };

async function ortRun(c: Case): Promise<Record<string, Tensor>> {
  const sess = await ort.InferenceSession.create(c.bytes, { graphOptimizationLevel: "disabled", logSeverityLevel: 3 });
  const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, new ort.Tensor("float32", t.data as Float32Array, t.shape)]));
  const res = await sess.run(feeds);
  await sess.release();
  return Object.fromEntries(c.outputs.map((o) => [o, { dtype: "float32", shape: res[o].dims.map(Number), data: res[o].data as Float32Array } as Tensor]));
}

const stats = { graphs: 0, models: 0, fusedKernels: 0, unfusedKernels: 0, modelsWithFewerKernels: 0 };

describe(`fusion on random graphs (seed ${SEED})`, () => {
  const r = rng(SEED);
  const cases = Array.from({ length: MODELS }, (_, i) => randomModel(r, i, GRAPHS_PER_MODEL));
  const tmp = tempDir("edgec-fuse-random-");
  const target = loadTarget("host");
  const started = Date.now();
  afterAll(() => tmp.cleanup());

  // Concurrent tests must assert with their context's expect.
  it.concurrent.for(cases)("model $id: fused and unfused artifacts match the interpreter and onnxruntime", async (c, { expect }) => {
    const file = tmp.write(`m${c.id}.onnx`, c.bytes);
    const refs: [string, Record<string, Tensor>][] = [
      ["onnxruntime", await ortRun(c)],
      ["interpreter", interpret(importOnnx(file).graph, c.inputs)],
    ];
    const kernels: number[] = [];
    for (const fuse of [true, false]) {
      const opts = { target, fuse };
      const dir = join(tmp.dir, `m${c.id}-${fuse ? "fused" : "unfused"}`);
      const built = await buildArtifact(file, dir, opts);
      const compiled = built.compiled ?? compileModel(file, opts);
      kernels.push(compiled.program.kernels.length);
      const { outputs } = await runArtifact(dir, c.inputs);
      refs.push([`${fuse ? "fused" : "unfused"} graph's interpreter`, interpret(compiled.graph, c.inputs)]);
      const bad = built.manifest.outputs.flatMap((spec, i) => {
        const fails = refs.map(([who, ref]) => [who, compare(spec.name, outputs[i], ref[spec.name], TOL)] as const).filter(([, ch]) => !ch.pass);
        return fails.length ? [`${spec.name} differs from ${fails.map(([who, ch]) => `${who} (${ch.why ?? `max abs ${ch.maxAbs}`})`).join(", ")} in\n${c.text.get(spec.name)}`] : [];
      });
      expect(bad, `${fuse ? "fused" : "unfused"} artifact of model ${c.id} (seed ${SEED})`).toEqual([]);
    }
    stats.graphs += GRAPHS_PER_MODEL;
    stats.models++;
    stats.fusedKernels += kernels[0];
    stats.unfusedKernels += kernels[1];
    if (kernels[0] < kernels[1]) stats.modelsWithFewerKernels++;
  });

  it("fused a good part of the graphs", () => {
    console.log(`fuse-random seed ${SEED}: ${stats.graphs} graphs in ${stats.models} models, kernels fused ${stats.fusedKernels} vs unfused ${stats.unfusedKernels}, ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(stats.models).toBe(MODELS);
    expect(stats.modelsWithFewerKernels).toBeGreaterThan(0.8 * MODELS);
    expect(stats.fusedKernels).toBeLessThan(0.8 * stats.unfusedKernels);
  });
});
