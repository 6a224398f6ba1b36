import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { gunzipSync, gzipSync } from "node:zlib";
import { Project, ts } from "ts-morph";
import { afterAll, describe, expect, it } from "vitest";
import type { Tensor } from "../../src/core/tensor.js";
import { testFolders } from "../../src/driver/conformance.js";
import { compare } from "../../src/driver/verify.js";
import { CORPUS } from "../conformance/suite.js";
import { tempDir } from "../helpers/onnx-builder.js";
import { buildCorpusPackage } from "../helpers/wasm-package.js";

/**
 * A one-model wasm32 artifact as an npm package: model.wasm loaded by index.js in Node, its typed
 * run() against the corpus's reference outputs, its errors, and index.d.ts through the TypeScript
 * compiler.
 */
const TOL = { rtol: 1e-3, atol: 1e-5 };
const work = tempDir("edgec-wasm-package-");
afterAll(() => work.cleanup());

interface Model {
  run(inputs: Record<string, unknown>): Record<string, Tensor["data"]>;
}

/** Builds the corpus test in `dir` as a package, specialized for its first data set; its module and that data set. */
async function packaged(dir: string, opts: { weights?: "file" } = {}) {
  const name = dir.split("/").pop()!;
  const built = await buildCorpusPackage(dir, join(work.dir, `${name}${opts.weights ? "-file" : ""}`), opts.weights);
  const pkg = (await import(pathToFileURL(join(built.dir, "index.js")).href)) as { load(wasm?: Uint8Array): Promise<Model>; outputs: { name: string }[] };
  const inputs = Object.fromEntries(Object.entries(built.inputs).map(([k, t]) => [k, t.data]));
  return { dir: built.dir, manifest: built.manifest, pkg, inputs, refs: built.refs };
}

function expectReference(outputs: Record<string, Tensor["data"]>, specs: { name: string; dtype: Tensor["dtype"]; shape: number[] }[], refs: Tensor[], what: string) {
  expect(Object.keys(outputs), what).toEqual(specs.map((s) => s.name));
  specs.forEach((s, i) => {
    const c = compare(s.name, { dtype: s.dtype, shape: s.shape, data: outputs[s.name] }, refs[i], TOL);
    expect(c.pass, `${what} ${s.name}: ${c.why ?? `max abs ${c.maxAbs}`}`).toBe(true);
  });
}

describe("wasm32 npm package", () => {
  // Every whole model, and onnx-node tests with each element type the wrapper maps (bool in, int64
  // in and out, float16 out) plus every 12th test.
  const nodeTests = testFolders([join(CORPUS, "onnx-node")]);
  const typed = ["test_where_example", "test_gather_0", "test_shape", "test_cast_FLOAT_to_FLOAT16"];
  const chosen = [...testFolders([join(CORPUS, "models")]), ...nodeTests.filter((d, i) => i % 12 === 0 || typed.includes(d.split("/").pop()!))];

  it.each(chosen.map((d) => [d.split("/").pop()!, d]))("%s: load() and run() give the reference outputs", async (name, dir) => {
    const { manifest, pkg, inputs, refs } = await packaged(dir);
    const model = await pkg.load();
    expectReference(model.run(inputs), manifest.outputs, refs, name);
  });

  it("outputs are the caller's: a later run does not change them", async () => {
    const { manifest, pkg, inputs, refs } = await packaged(join(CORPUS, "models", "dscnn_kws"));
    const model = await pkg.load();
    const first = model.run(inputs);
    model.run({ input: new Float32Array((inputs.input as Float32Array).length).fill(3) });
    expectReference(first, manifest.outputs, refs, "first run");
  });

  it("ships the module without its weights and the weights apart, compressed, in less than the model file", async () => {
    const model = join(CORPUS, "models", "dscnn_kws");
    const { manifest, dir } = await packaged(model);
    expect(manifest.weightsFile).toBeUndefined();
    expect(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).files).toEqual(["index.js", "index.d.ts", "runtime.js", "model.wasm.gz", "data.z", "README.md"]);
    const size = (f: string) => statSync(join(dir, f)).size;
    const wasm = readFileSync(join(dir, "model.wasm"));
    const stripped = gunzipSync(readFileSync(join(dir, "model.wasm.gz")));
    expect(WebAssembly.validate(stripped)).toBe(true);
    // data.z: the address and length of the segment left out, then its bytes, which the module no longer holds.
    const data = gunzipSync(readFileSync(join(dir, "data.z")));
    expect(data.byteLength).toBe(8 + data.readUInt32LE(4));
    expect(data.readUInt32LE(4)).toBeGreaterThanOrEqual(manifest.weightBytes);
    expect(wasm.byteLength - stripped.byteLength).toBeGreaterThanOrEqual(data.readUInt32LE(4));
    // Grouping each word's bytes by their place is what makes the weights compress past plain gzip.
    const download = size("model.wasm.gz") + size("data.z");
    expect(download).toBeLessThan(gzipSync(wasm, { level: 9 }).byteLength);
    expect(download).toBeLessThan(statSync(join(model, "model.onnx")).size);
  });

  it("load() also takes model.wasm's bytes as they are; weights in weights.bin ship as weights.z", async () => {
    const { manifest, pkg, inputs, refs, dir } = await packaged(join(CORPUS, "models", "dscnn_kws"));
    expectReference((await pkg.load(readFileSync(join(dir, "model.wasm")))).run(inputs), manifest.outputs, refs, "model.wasm bytes");
    const file = await packaged(join(CORPUS, "models", "tiny_transformer_encoder"), { weights: "file" });
    expect(file.manifest.weightsFile).toBe("weights.bin");
    expect(JSON.parse(readFileSync(join(file.dir, "package.json"), "utf8")).files).toContain("weights.z");
    expect(gunzipSync(readFileSync(join(file.dir, "weights.z"))).byteLength).toBe(statSync(join(file.dir, "weights.bin")).size);
    expectReference((await file.pkg.load()).run(file.inputs), file.manifest.outputs, file.refs, "weights.z");
  });

  it("run() names what is wrong with its inputs", async () => {
    const { pkg } = await packaged(join(CORPUS, "models", "dscnn_kws"));
    const model = await pkg.load();
    const x = new Float32Array(490);
    expect(() => model.run({})).toThrow(new TypeError("edgec: missing input 'input' (float32 [1x1x49x10])"));
    expect(() => model.run({ input: x, mask: x })).toThrow(new TypeError("edgec: unknown input 'mask' (the model's inputs are 'input')"));
    expect(() => model.run({ input: new Float64Array(490) })).toThrow(new TypeError("edgec: input 'input' must be a Float32Array (float32 [1x1x49x10]), not Float64Array"));
    expect(() => model.run({ input: [1, 2] })).toThrow(/must be a Float32Array .* not Array/);
    expect(() => model.run({ input: new Float32Array(49) })).toThrow(new RangeError("edgec: input 'input' has 49 elements; the model takes float32 [1x1x49x10], 490 elements"));
  });

  it("index.d.ts types the inputs and outputs by name for the TypeScript compiler", async () => {
    const { dir } = await packaged(join(CORPUS, "models", "dscnn_kws"));
    const project = new Project({
      compilerOptions: { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, lib: ["lib.es2022.d.ts", "lib.dom.d.ts"], types: [] },
    });
    const use = (file: string, body: string) => {
      writeFileSync(join(dir, file), `import { load, inputs } from "./index.js";\nconst model = await load();\n${body}\nexport {};\n`);
      return project.addSourceFileAtPath(join(dir, file));
    };
    const errors = (f: ReturnType<typeof use>) => project.getPreEmitDiagnostics().filter((d) => d.getSourceFile() === f).map((d) => ts.flattenDiagnosticMessageText(d.compilerObject.messageText, " "));
    const good = use("good.ts", `const y: Float32Array = model.run({ input: new Float32Array(490) }).output;\nconst dims: readonly [1, 1, 49, 10] = inputs[0].shape;\nconsole.log(y, dims);`);
    const bad = use("bad.ts", `model.run({ inptu: new Float32Array(490) });\nmodel.run({ input: new Int32Array(490) });\nconst z: Float32Array = model.run({ input: new Float32Array(490) }).logits;\nconsole.log(z);`);
    expect(errors(good)).toEqual([]);
    const found = errors(bad);
    expect(found.length).toBe(3);
    expect(found[0]).toMatch(/'inptu' does not exist in type 'Inputs'/);
    expect(found[1]).toMatch(/Type 'Int32Array<.*>' is not assignable to type 'Float32Array<.*>'/);
    expect(found[2]).toMatch(/Property 'logits' does not exist on type 'Outputs'/);
  });
});
