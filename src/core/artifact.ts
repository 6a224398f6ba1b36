import type { DType } from "./dtype.js";

export interface TensorSpec {
  name: string;
  /** C field name in the generated structs */
  field: string;
  dtype: DType;
  shape: number[];
}

/** manifest.json of a built artifact directory: what deploy, run and verify need to know. */
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
  kernels: number;
  files: string[];
  /** the `run` harness, when the toolchain was present */
  runProgram?: string;
  /** reference data for `run --check DIR RTOL ATOL`: DIR/in/<i>.bin inputs, DIR/out/<i>.bin outputs */
  selfTest?: { dir: string; rtol: number; atol: number };
}
