import type { DType } from "./dtype.js";

export interface TensorSpec {
  name: string;
  /** C field name in the generated structs */
  field: string;
  dtype: DType;
  shape: number[];
}

/** One model of an artifact of several. */
export interface ModelEntry {
  /** its C prefix, and the name `run --model` and edgec_run_by_name take */
  name: string;
  model: Manifest["model"];
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** what it needs of the shared arena */
  arenaBytes: number;
  weightBytes: number;
  kernels: number;
  /** which graph rewrites lowered its peak (see Optimize in driver/pipeline.ts) */
  optimize: "speed" | "memory";
  /** its section of weightsFile, read into the weights zone when it runs */
  weights: { offset: number; bytes: number };
}

/**
 * manifest.json of a built artifact directory: what deploy, run and verify need to know.
 * In an artifact of several models (`models` set), `name` is the library's, `arenaBytes` the one
 * arena they share, `weightBytes` all their weights (in `weightsFile`) and `kernels` all their
 * kernels; `model`, `inputs` and `outputs` are the first model's, the default for tools that know
 * of one model only.
 */
export interface Manifest {
  edgec: string;
  name: string;
  model: { file: string; sha256: string; opset: number; irVersion: number; producer: string };
  target: string;
  triple: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  arenaBytes: number;
  weightBytes: number;
  /** set when the weights are in this file instead of compiled in */
  weightsFile?: string;
  /** several models: the static zone each model's weights are loaded into (its largest section) */
  weightsZoneBytes?: number;
  models?: ModelEntry[];
  kernels: number;
  /** which graph rewrites lowered the peak: "speed" (those that cost no measurable time) or "memory" (also fusion for memory); an artifact of several models: the first's */
  optimize: "speed" | "memory";
  files: string[];
  /** the `run` harness, when the toolchain was present */
  runProgram?: string;
  /** reference data for `run --check DIR RTOL ATOL`: DIR/in/<i>.bin inputs, DIR/out/<i>.bin outputs */
  selfTest?: { dir: string; rtol: number; atol: number };
  /** a profiling build: for each kernel, in the order NAME_profile reports their times, its graph node and device */
  profile?: { node: string; device: "cpu" | "gpu" }[];
}
