import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, it } from "vitest";
import { testFolders } from "../../src/driver/conformance.js";
import { compileModel } from "../../src/driver/pipeline.js";
import { specializeInputs } from "../../src/driver/inputs.js";
import { modelInputs } from "../../src/frontend/onnx/import.js";
import { readTensorFile } from "../../src/frontend/onnx/tensor-io.js";
import { loadTarget } from "../../src/target/load.js";
import { CORPUS } from "../conformance/suite.js";
import { runOk } from "../helpers/run.js";

/**
 * Every corpus test compiled for `targetName` (sources only), its files
 * written to a fresh folder, and each clang command of `checks` run there.
 */
function everyTest(title: string, targetName: string, checks: string[][]) {
  describe(title, () => {
    const work = mkdtempSync(join(tmpdir(), "edgec-clang-"));
    afterAll(() => rmSync(work, { recursive: true, force: true }));
    const target = loadTarget(targetName);
    const dirs = testFolders(["onnx-node", "onnx-pytorch-converted", "models"].map((f) => join(CORPUS, f)));

    it.concurrent.each(dirs.map((d) => [d.split("/").pop()!, d]))("%s", async (name, dir) => {
      const model = join(dir, "model.onnx");
      const given = Object.fromEntries(modelInputs(model).map((inp, i) => [inp.name, readTensorFile(join(dir, "test_data_set_0", `input_${i}.pb`))]));
      const { inputShapes, bind } = specializeInputs(model, given);
      const compiled = compileModel(model, { target, inputShapes, bind });
      const out = join(work, name);
      mkdirSync(out);
      for (const [f, content] of Object.entries(compiled.files)) writeFileSync(join(out, f), content);
      for (const args of checks) await runOk("clang", args, { cwd: out });
    });
  });
}

const C99 = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "model.c", "run.c"];

/** gcc compiles every artifact with -Werror in the conformance suites; this is the second compiler. */
everyTest("generated C is warning-free under clang -Wall -Wextra -Werror", "host", [C99]);

/** The OpenCL backend's kernels under clang's OpenCL C 1.2 front end (PoCL compiles them in the conformance suite), and its host code as C99. */
everyTest("generated OpenCL C is warning-free under clang -x cl -cl-std=CL1.2 -Wall -Wextra -Werror", "opencl", [
  ["-x", "cl", "-cl-std=CL1.2", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "kernels.cl"],
  C99,
]);
