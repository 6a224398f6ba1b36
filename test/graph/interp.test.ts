import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compare } from "../../src/driver/verify.js";
import { importOnnx, modelInputs } from "../../src/frontend/onnx/import.js";
import { readTensorFile } from "../../src/frontend/onnx/tensor-io.js";
import { interpret } from "../../src/graph/interp.js";
import { OPS } from "../../src/graph/ops/index.js";
import { inferShapes } from "../../src/graph/passes/infer-shapes.js";
import { foldConstants } from "../../src/graph/passes/fold-constants.js";
import { CORPUS } from "../conformance/suite.js";

/**
 * The reference semantics behind constant folding, checked against the ONNX backend tests: every
 * node test whose ops all have an `eval` must reproduce the expected outputs in the interpreter.
 */
describe("graph/interp matches the ONNX node tests", () => {
  const dir = join(CORPUS, "onnx-node");
  const cases = readdirSync(dir)
    .sort()
    .map((t) => join(dir, t))
    .filter((t) => {
      try {
        return importOnnx(join(t, "model.onnx"), {}).graph.nodes.every((n) => OPS[n.op].eval);
      } catch {
        return false;
      }
    });

  it("covers a good part of the corpus", () => {
    expect(cases.length).toBeGreaterThan(60);
  });

  it.each(cases.map((c) => [c.split("/").pop()!, c]))("%s", (_name, t) => {
    const model = join(t, "model.onnx");
    const set = join(t, "test_data_set_0");
    const declared = modelInputs(model);
    const inputs = Object.fromEntries(declared.map((d, i) => [d.name, readTensorFile(join(set, `input_${i}.pb`))]));
    const shapes = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.shape]));
    let g = importOnnx(model, { inputShapes: shapes }).graph;
    for (let i = 0; i < 4; i++) g = foldConstants(inferShapes(g));
    const got = interpret(g, inputs);
    g.outputs.forEach((o, i) => {
      const check = compare(o, got[o], readTensorFile(join(set, `output_${i}.pb`)), { rtol: 1e-3, atol: 1e-5 });
      expect(check.pass, `${o}: max abs ${check.maxAbs}`).toBe(true);
    });
  });
});
