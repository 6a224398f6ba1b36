import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fromNumbers, toNumbers } from "../../src/core/tensor.js";
import { readTensorFile, tensorToProto } from "../../src/frontend/onnx/tensor-io.js";
import { modelBytes, node, T, tempDir, valueInfo } from "../helpers/onnx-builder.js";
import { edgecCli, type Ran } from "../helpers/run.js";

/**
 * The CLI contract on bad input: one stderr line "edgec: error: ..." naming the problem, exit 2, no
 * stack trace, and nothing left behind. Spawns the built CLI (dist/ must be built: `make test` does).
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NODE_TESTS = join(ROOT, "..", "shared", "corpus", "onnx-node");

const work = tempDir("edgec-cli-test-");
/** The CLI's own temp files go here, so a leak shows up without racing other processes. */
const childTmp = join(work.dir, "tmp");
afterAll(() => work.cleanup());

const edgec = (...args: string[]) => edgecCli(args, { cwd: work.dir, env: { ...process.env, TMPDIR: childTmp, EDGEC_DEBUG: "" } });

function expectOneError(r: Ran, message: RegExp) {
  const lines = r.stderr.split("\n").filter(Boolean);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^edgec: error: /);
  expect(lines[0]).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.code).toBe(2);
}

/** Nothing named like `out` or a temp sibling of it remains in `parent`, and the CLI's temp dir is empty. */
function expectNoLeftovers(parent: string, out: string) {
  expect(existsSync(join(parent, out))).toBe(false);
  expect(readdirSync(parent).filter((f) => f.includes(".tmp-") || f.startsWith(".edgec-out-"))).toEqual([]);
  expect(readdirSync(childTmp)).toEqual([]);
}

const relu = () =>
  modelBytes({ nodes: [node("Relu", ["x"], ["y"])], inputs: [valueInfo("x", T.FLOAT, [2, 3])], outputs: [valueInfo("y", T.FLOAT, [2, 3])] });

let files: Record<string, string>;
beforeAll(() => {
  mkdirSync(childTmp);
  const conv = readFileSync(join(NODE_TESTS, "test_conv_with_strides_padding", "model.onnx"));
  files = {
    relu: work.write("relu.onnx", relu()),
    truncated: work.write("truncated.onnx", conv.subarray(0, conv.length >> 1)),
    text: work.write("text.onnx", "this is not an ONNX model, just some text\n"),
    unsupported: work.write(
      "unsupported.onnx",
      modelBytes({
        nodes: [node("FooBar", ["x"], ["a"], [], "foo_1"), node("Relu", ["a"], ["b"], [], "relu_1"), node("Bazz", ["b"], ["y"], [], "bazz_1")],
        inputs: [valueInfo("x", T.FLOAT, [2, 3])],
        outputs: [valueInfo("y", T.FLOAT, [2, 3])],
        opset: 17,
      }),
    ),
    symbolic: work.write(
      "symbolic.onnx",
      modelBytes({ nodes: [node("Relu", ["x"], ["y"])], inputs: [valueInfo("x", T.FLOAT, ["N", 3])], outputs: [valueInfo("y", T.FLOAT, ["N", 3])] }),
    ),
    right: work.write("right.pb", tensorToProto(fromNumbers("float32", [2, 3], [1, -2, 3, -4, 5, -6]), "x")),
    wrong: work.write("wrong.pb", tensorToProto(fromNumbers("float32", [3, 2], [1, -2, 3, -4, 5, -6]), "x")),
  };
});

describe("edgec build on a bad model", () => {
  test("a truncated .onnx", async () => {
    expectOneError(await edgec("build", files.truncated, "-o", "out"), /truncated\.onnx: not a valid ONNX model .*truncated/);
    expectNoLeftovers(work.dir, "out");
  });

  test("a file that is not ONNX", async () => {
    expectOneError(await edgec("build", files.text, "-o", "out"), /text\.onnx: not a valid ONNX model/);
    expectNoLeftovers(work.dir, "out");
  });

  test("a missing file", async () => {
    expectOneError(await edgec("build", "nowhere.onnx", "-o", "out"), /nowhere\.onnx: cannot read the model file/);
    expectNoLeftovers(work.dir, "out");
  });

  test("unsupported ops are all named in one error, with node names and opset", async () => {
    const r = await edgec("build", files.unsupported, "-o", join("nested", "out"));
    expectOneError(r, /unsupported\.onnx: 2 unsupported ops: FooBar \(opset 17\) at node 'foo_1'; Bazz \(opset 17\) at node 'bazz_1'/);
    expect(r.stderr).not.toMatch(/relu_1/);
    expect(existsSync(join(work.dir, "nested"))).toBe(false);
    expectNoLeftovers(work.dir, "out");
  });

  test("an unknown target", async () => {
    expectOneError(await edgec("build", files.relu, "-o", "out", "--target", "pdp11"), /unknown target 'pdp11'; known targets: .*rpi4/);
    expectNoLeftovers(work.dir, "out");
  });

  test("a target file written for OpenMP: the generated C has its own thread pool", async () => {
    const target = work.write("omp.json", JSON.stringify({ name: "omp", description: "OpenMP", triple: "x86_64-linux-gnu", arch: "x86_64", cflags: ["-O2", "-fopenmp"] }));
    expectOneError(await edgec("build", files.relu, "-o", "out", "--target", target), /omp\.json: -fopenmp in cflags: edgec's generated C brings its own thread pool; use -pthread for threads/);
    expectNoLeftovers(work.dir, "out");
  });

  test("a usage error has the same one-line form", async () => {
    expectOneError(await edgec("build", files.relu), /required option '-o, --output <dir>' not specified/);
  });
});

describe("edgec run with bad inputs", () => {
  let artifact: string;
  beforeAll(async () => {
    const r = await edgec("build", files.relu, "-o", "artifact");
    expect(r.code, r.stderr).toBe(0);
    artifact = join(work.dir, "artifact");
  });

  test("a missing input, on an artifact and on a model", async () => {
    for (const what of [artifact, files.relu]) {
      expectOneError(await edgec("run", what, "--output-dir", "outs"), /missing input 'x' \(the model's inputs are 'x' .*\[2x3\]\)/);
      expectNoLeftovers(work.dir, "outs");
    }
  });

  test("an input of the wrong shape, on an artifact and on a model", async () => {
    expectOneError(await edgec("run", artifact, "-i", `x=${files.wrong}`, "--output-dir", "outs"), /input 'x' has shape \[3x2\], the artifact was built for \[2x3\]/);
    expectNoLeftovers(work.dir, "outs");
    expectOneError(await edgec("run", files.relu, "-i", `x=${files.wrong}`, "--output-dir", "outs"), /input 'x' has shape \[3x2\], the model expects \[2x3\]/);
    expectNoLeftovers(work.dir, "outs");
  });

  test("a model's symbolic dims are pinned from the given input; a contradicting input is an error", async () => {
    const r = await edgec("run", files.symbolic, "-i", `x=${files.right}`, "--output-dir", "sym", "--format", "npy");
    expect(r.code, r.stderr).toBe(0);
    expect(readTensorFile(join(work.dir, "sym", "output_0.npy")).shape).toEqual([2, 3]);
    expectOneError(await edgec("run", files.symbolic, "-i", `x=${files.wrong}`, "--output-dir", "outs"), /input 'x' has shape \[3x2\], the model expects \[Nx3\]/);
    expectNoLeftovers(work.dir, "outs");
  });

  test("a model that fails to build leaves no temp artifact behind", async () => {
    expectOneError(await edgec("run", files.unsupported, "-i", `x=${files.right}`, "--output-dir", "outs"), /2 unsupported ops: FooBar .*; Bazz/);
    expectNoLeftovers(work.dir, "outs");
  });

  test("a good input runs and writes its outputs", async () => {
    const r = await edgec("run", artifact, "-i", `x=${files.right}`, "--output-dir", "outs");
    expect(r.code, r.stderr).toBe(0);
    expect(toNumbers(readTensorFile(join(work.dir, "outs", "output_0.pb")))).toEqual([1, 0, 3, 0, 5, 0]);
  });
});

describe("edgec verify", () => {
  const copy = (name: string) => {
    const dir = join(work.dir, name);
    cpSync(join(NODE_TESTS, "test_relu"), dir, { recursive: true });
    return dir;
  };

  test("exits 0 on a passing corpus test", async () => {
    const dir = copy("relu_ok");
    const r = await edgec("verify", join(dir, "model.onnx"), "--data", dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/PASS/);
  });

  test("exits 1 on a mismatching reference", async () => {
    const dir = copy("relu_bad");
    const ref = join(dir, "test_data_set_0", "output_0.pb");
    const t = readTensorFile(ref);
    const vals = toNumbers(t);
    vals[0] += 1;
    writeFileSync(ref, tensorToProto(fromNumbers(t.dtype, t.shape, vals), t.name));
    const r = await edgec("verify", join(dir, "model.onnx"), "--data", dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/FAIL/);
  });
});

describe("targets", () => {
  test("edgec targets lists every shipped target", async () => {
    const r = await edgec("targets");
    expect(r.code).toBe(0);
    const names = r.stdout.split("\n").filter(Boolean).map((l) => l.split(/\s+/)[0]);
    for (const t of ["host", "rpi4", "rpi5", "jetson-nano", "jetson-orin", "rk3588", "armv7", "wasm32"]) expect(names).toContain(t);
  });

  test("--target jetson resolves to jetson-orin", async () => {
    const r = await edgec("build", files.relu, "-o", "jetson", "--target", "jetson", "--stop-after", "codegen");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(work.dir, "jetson", "manifest.json"), "utf8")).target).toBe("jetson-orin");
  });
});
