import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { testFolders } from "../../src/driver/conformance.js";
import { compileModel } from "../../src/driver/pipeline.js";
import { specializeInputs } from "../../src/driver/inputs.js";
import { modelInputs } from "../../src/frontend/onnx/import.js";
import { readTensorFile } from "../../src/frontend/onnx/tensor-io.js";
import { loadTarget } from "../../src/target/load.js";
import { CORPUS } from "../conformance/suite.js";

/** gcc compiles every artifact with -Werror in the conformance suites; this is the second compiler. */
describe("generated C is warning-free under clang -Wall -Wextra -Werror", () => {
  const work = mkdtempSync(join(tmpdir(), "edgec-clang-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  const target = loadTarget("host");
  const dirs = testFolders(["onnx-node", "onnx-pytorch-converted", "models"].map((f) => join(CORPUS, f)));

  it.concurrent.each(dirs.map((d) => [d.split("/").pop()!, d]))("%s", (name, dir) => {
    const model = join(dir, "model.onnx");
    const given = Object.fromEntries(modelInputs(model).map((inp, i) => [inp.name, readTensorFile(join(dir, "test_data_set_0", `input_${i}.pb`))]));
    const { inputShapes, bind } = specializeInputs(model, given);
    const compiled = compileModel(model, { target, inputShapes, bind });
    const out = join(work, name);
    mkdirSync(out);
    for (const [f, content] of Object.entries(compiled.files)) writeFileSync(join(out, f), content);
    execFileSync("clang", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "model.c", "run.c"], { cwd: out, stdio: "pipe" });
  });
});
