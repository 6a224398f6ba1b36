import { readdirSync } from "node:fs";
import { join } from "node:path";
import { buildArtifact } from "../../src/driver/artifact.js";
import { specializeInputs } from "../../src/driver/inputs.js";
import { modelInputs } from "../../src/frontend/onnx/import.js";
import { readTensorFile } from "../../src/frontend/onnx/tensor-io.js";
import { loadTarget } from "../../src/target/load.js";

/**
 * Builds the corpus test in `dir` as a wasm32 package into `out`, specialized for its first data
 * set; the built artifact, that data set's inputs (as the harness takes them) and reference outputs.
 */
export async function buildCorpusPackage(dir: string, out: string, weights?: "embed" | "file") {
  const model = join(dir, "model.onnx");
  const set = join(dir, "test_data_set_0");
  const given = Object.fromEntries(modelInputs(model).map((d, i) => [d.name, readTensorFile(join(set, `input_${i}.pb`))]));
  const refs = readdirSync(set)
    .filter((f) => /^output_\d+\.pb$/.test(f))
    .sort((a, b) => parseInt(a.slice(7)) - parseInt(b.slice(7)))
    .map((f) => readTensorFile(join(set, f)));
  const spec = specializeInputs(model, given);
  const built = await buildArtifact(model, out, { target: loadTarget("wasm32"), inputShapes: spec.inputShapes, bind: spec.bind, weights });
  return { ...built, inputs: spec.runInputs, refs };
}
