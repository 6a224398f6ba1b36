import type { Target } from "../target/schema.js";
import type { Program } from "../loop/ir.js";

export interface CompileOptions {
  /** C identifier prefix of the generated API */
  name: string;
  /** edgec version, model hash and origin, printed in generated files */
  version: string;
  source: string;
  /** extra C compiler flags when packaging (sanitizers in tests) */
  extraCflags?: string[];
  /** weights compiled in as const arrays, or written to weights.bin for the caller to load */
  weights?: "embed" | "file";
  /** a profiling build (edgec profile): NAME_run times each kernel, NAME_profile reports the times */
  profile?: boolean;
  /** a two-stage CPU/GPU pipeline (--objective throughput): the device whose kernels come first; NAME_run_stream overlaps the stages */
  pipeline?: { first: "cpu" | "gpu" };
}

/** Generated files: name → contents. */
export type Files = Record<string, string | Uint8Array>;

/** Several models rendered into one artifact: its files and the memory they share. */
export interface SharedRender {
  files: Files;
  /** the one activation arena: the largest model's */
  arenaBytes: number;
  /** the one weights zone a model's weights are loaded into when it runs: the largest section */
  zoneBytes: number;
  /** each model's section of the weights file, in the order given */
  sections: { offset: number; bytes: number }[];
}

/**
 * One code generator. configure: read what it needs from the target; lower: backend-specific loop
 * passes; render: loop program → source files; package: build the files in a directory with the
 * target's toolchain (reports what it built, or why it could not). renderShared: several models,
 * each lowered with its own config, into one artifact whose config names the library.
 */
export interface Backend<Config = unknown> {
  name: string;
  /** what runs the kernels: the CPU gets vectorized, register-blocked lowerings, the GPU a work-item per output element */
  device: "cpu" | "gpu";
  configure(target: Target, opts: CompileOptions): Config;
  lower(p: Program, cfg: Config): Program;
  render(p: Program, cfg: Config): Files;
  renderShared(models: { program: Program; config: Config }[], cfg: Config): SharedRender;
  package(dir: string, cfg: Config): Promise<{ built: string[]; skipped?: string }>;
}
