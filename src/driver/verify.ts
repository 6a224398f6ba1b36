import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { isFloat } from "../core/dtype.js";
import { EdgecError } from "../core/diag.js";
import { shapeStr, toNumbers, type Tensor } from "../core/tensor.js";
import { modelInputs } from "../frontend/onnx/import.js";
import { bytesOf, readTensorFile } from "../frontend/onnx/tensor-io.js";
import { buildArtifact, buildSharedArtifact } from "./artifact.js";
import { specializeInputs } from "./inputs.js";
import type { PipelineOptions } from "./pipeline.js";
import { runArtifact } from "./run.js";

export interface Tolerance {
  rtol: number;
  atol: number;
}

export interface OutputCheck {
  name: string;
  maxAbs: number;
  maxRel: number;
  pass: boolean;
  why?: string;
}

export interface DataSetResult {
  dataSet: string;
  outputs: OutputCheck[];
  pass: boolean;
}

/** test_data_set_* folders under `dir`, or `dir` itself when it holds input_*.pb files. */
export function dataSets(dir: string): string[] {
  if (!existsSync(dir)) throw new EdgecError(`${dir}: test data folder not found`);
  const sets = readdirSync(dir).filter((d) => d.startsWith("test_data_set_")).sort().map((d) => join(dir, d));
  if (sets.length) return sets;
  if (readdirSync(dir).some((f) => /^input_\d+\.(pb|npy)$/.test(f))) return [dir];
  throw new EdgecError(`${dir}: no test_data_set_* folders and no input_*.pb files`);
}

const numbered = (dir: string, prefix: string) =>
  readdirSync(dir)
    .map((f) => ({ f, m: new RegExp(`^${prefix}_(\\d+)\\.(pb|npy)$`).exec(f) }))
    .filter((x) => x.m)
    .sort((a, b) => Number(a.m![1]) - Number(b.m![1]))
    .map((x) => readTensorFile(join(dir, x.f)));

/** |got - ref| <= atol + rtol·|ref| for floats (NaN matches NaN); exact for integers and bools. */
export function compare(name: string, got: Tensor, ref: Tensor, tol: Tolerance): OutputCheck {
  if (got.shape.join("x") !== ref.shape.join("x")) {
    return { name, maxAbs: Infinity, maxRel: Infinity, pass: false, why: `shape ${shapeStr(got.shape)} != expected ${shapeStr(ref.shape)}` };
  }
  const a = toNumbers(got), b = toNumbers(ref);
  const exact = !isFloat(ref.dtype);
  let maxAbs = 0, maxRel = 0, pass = true;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) && Number.isNaN(b[i])) continue;
    const d = a[i] === b[i] ? 0 : Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) {
      pass = false;
      maxAbs = Infinity;
      continue;
    }
    maxAbs = Math.max(maxAbs, d);
    if (b[i] !== 0) maxRel = Math.max(maxRel, d / Math.abs(b[i]));
    if (exact ? d !== 0 : d > tol.atol + tol.rtol * Math.abs(b[i])) pass = false;
  }
  return { name, maxAbs, maxRel, pass };
}

/** A data set's inputs, keyed by the model's input names, and its reference outputs. */
function readDataSet(model: string, set: string): { given: Record<string, Tensor>; refs: Tensor[] } {
  const declared = modelInputs(model);
  const files = numbered(set, "input");
  if (files.length !== declared.length) {
    throw new EdgecError(`${set}: ${files.length} input files, the model has ${declared.length} input${declared.length === 1 ? "" : "s"} (${declared.map((d) => `'${d.name}'`).join(", ")})`);
  }
  const given: Record<string, Tensor> = {};
  declared.forEach((d, i) => {
    const t = files[i];
    given[t.name && declared.some((x) => x.name === t.name) ? t.name : d.name] = t;
  });
  return { given, refs: numbered(set, "output") };
}

function check(set: string, outputs: Tensor[], specs: { name: string }[], refs: Tensor[], tol: Tolerance): DataSetResult {
  if (refs.length !== outputs.length) throw new EdgecError(`${set}: ${refs.length} expected outputs, the model has ${outputs.length}`);
  const checks = outputs.map((o, i) => compare(specs[i].name, o, refs[i], tol));
  return { dataSet: basename(set), outputs: checks, pass: checks.every((c) => c.pass) };
}

/**
 * Builds the model, runs it on every data set and compares each output with the reference.
 * Dims the options do not pin are taken from the data set's input files.
 */
export async function verifyModel(model: string, dataDir: string, opts: PipelineOptions, tol: Tolerance): Promise<DataSetResult[]> {
  const results: DataSetResult[] = [];
  for (const set of dataSets(dataDir)) {
    const { given, refs } = readDataSet(model, set);
    const spec = specializeInputs(model, given, opts.inputShapes);
    const tmp = mkdtempSync(join(tmpdir(), "edgec-verify-"));
    try {
      const { dir, manifest } = await buildArtifact(model, join(tmp, "artifact"), { ...opts, inputShapes: spec.inputShapes, bind: spec.bind });
      const { outputs } = await runArtifact(dir, spec.runInputs);
      results.push(check(set, outputs, manifest.outputs, refs, tol));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return results;
}

const sameData = (a: Tensor, b: Tensor) => Buffer.from(bytesOf(a.data)).equals(Buffer.from(bytesOf(b.data)));

/**
 * Verifies models the way an artifact of several deploys them: built once into one artifact, each
 * model specialized for its first data set, then run in turns (each model's data set i, then i + 1)
 * so that every run after the first finds the weights zone holding another model's weights. Later
 * data sets must fit the artifact built for the first.
 */
export async function verifyModels(models: { file: string; name: string; data: string }[], opts: PipelineOptions, tol: Tolerance): Promise<(DataSetResult & { model: string })[]> {
  const sets = models.map((m) => dataSets(m.data).map((set) => ({ set, ...readDataSet(m.file, set) })));
  const first = models.map((m, i) => specializeInputs(m.file, sets[i][0].given, opts.inputShapes));
  const results: (DataSetResult & { model: string })[] = [];
  const tmp = mkdtempSync(join(tmpdir(), "edgec-verify-"));
  try {
    const specs = models.map((m, i) => ({ file: m.file, name: m.name, inputShapes: first[i].inputShapes, bind: first[i].bind }));
    const { dir, manifest } = await buildSharedArtifact(specs, join(tmp, "artifact"), opts);
    for (let round = 0; round < Math.max(...sets.map((s) => s.length)); round++) {
      for (const [i, m] of models.entries()) {
        const ds = sets[i][round];
        if (!ds) continue;
        const spec = round ? specializeInputs(m.file, ds.given, opts.inputShapes) : first[i];
        for (const [k, t] of Object.entries(spec.bind)) {
          if (!sameData(t, first[i].bind[k])) throw new EdgecError(`${ds.set}: input '${k}' is compiled in as a constant and differs from its value in ${sets[i][0].set}; verify ${m.file} on its own`);
        }
        const { outputs } = await runArtifact(dir, spec.runInputs, 1, { model: m.name });
        results.push({ model: m.name, ...check(ds.set, outputs, manifest.models![i].outputs, ds.refs, tol) });
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return results;
}
