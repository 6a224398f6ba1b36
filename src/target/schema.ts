/**
 * A target is data: everything edgec knows about a device comes from `targets/<name>.json`,
 * merged over these typed defaults. Capabilities decide what code is legal; nothing in the compiler
 * branches on a target's name.
 */
export interface DeviceEntry {
  kind: "cpu" | "gpu";
  name: string;
  /** "opencl" for GPUs edgec can drive */
  api?: string;
  fp16?: boolean;
  /** false for a GPU without double precision (no cl_khr_fp64): kernels in float64 then run on the CPU */
  fp64?: boolean;
  /** OpenCL: float lanes per vector in kernels (4: float4 loads, stores and arithmetic; default 1, scalar) */
  vectorLanes?: number;
  /** OpenCL: work-items per work-group the kernels are launched with (at most; default 64) */
  workGroupSize?: number;
  /** OpenCL: part of the device's name; at run time a device so named is preferred */
  openclName?: string;
  /** cost model (graph/cost.ts): float32 peak, memory bandwidth, and the share of the peak edgec's kernels reach */
  peakGflops?: number;
  bandwidthGBs?: number;
  efficiency?: number;
  /** cost model: overhead per kernel launch, in microseconds */
  launchUs?: number;
  /** cost model, GPUs: host↔device copies (bandwidth; fixed cost per copy in microseconds) */
  transferGBs?: number;
  transferLatencyUs?: number;
}

export interface Target {
  name: string;
  description: string;
  /** LLVM/GNU triple of the CPU code */
  triple: string;
  arch: "x86_64" | "aarch64" | "armv7" | "wasm32";
  /** C compiler used to build artifacts (the cross compiler for foreign targets) */
  cc: string;
  cflags: string[];
  ldflags: string[];
  /** SIMD register width in bytes (16 NEON/SSE/WASM, 32 AVX2, 64 AVX-512); 0: probe the compiler */
  vectorBytes: number;
  /** SIMD registers the code generator may plan for (GEMM register blocking); 0: probe */
  vectorRegisters: number;
  /** CPU cores, the default thread count; 0: this machine's */
  cores: number;
  /**
   * the least work (statements a loop runs, roughly) that a parallel loop splits between threads:
   * below it, waking the other threads costs more than they save
   */
  parallelMinWork: number;
  memoryBytes: number;
  devices: DeviceEntry[];
  /** command prefix that runs this target's binaries on the build machine, when foreign */
  emulator: string[];
  /** other names that resolve to this target ("jetson" → jetson-orin) */
  aliases: string[];
  /**
   * the code generator that builds it: C sources and a native harness, the same C for WebAssembly
   * run by Node, or OpenCL kernels with C host code (what `--device gpu` switches a target with an
   * OpenCL GPU to)
   */
  backend: "c" | "wasm" | "opencl";
  /** false for targets whose code generator is not built yet */
  buildable: boolean;
  /** why a flag or value is what it is (JSON has no comments) */
  notes?: string;
}

export const TARGET_DEFAULTS: Omit<Target, "name" | "description" | "triple" | "arch"> = {
  cc: "cc",
  cflags: ["-O2"],
  ldflags: [],
  vectorBytes: 16,
  vectorRegisters: 16,
  cores: 1,
  parallelMinWork: 131072,
  memoryBytes: 512 * 1024 * 1024,
  devices: [],
  emulator: [],
  aliases: [],
  backend: "c",
  buildable: true,
};
