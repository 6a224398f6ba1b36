/**
 * onnxruntime in a process of its own, for `edgec bench --compare-ort`: its peak memory is then
 * its own, and the parent can alternate runs of edgec and onnxruntime in one benchmark. Forked with
 * an IPC channel; every request gets exactly one reply (see OrtRequest / OrtReply). The engine is
 * onnxruntime-node for native targets and onnxruntime-web's WebAssembly backend (SIMD, one thread,
 * as edgec's wasm32 artifacts run) for WebAssembly targets.
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type { DType, TypedArray } from "../core/dtype.js";
import type { Tensor } from "../core/tensor.js";

export type OrtRequest =
  /** untimed: `warmup` runs, then more until `warmupMs` have passed */
  | { op: "load"; engine: OrtEngine; model: string; threads: number; warmup: number; warmupMs: number; inputs: Record<string, Tensor> }
  /** untimed runs until `warmupMs` have passed, then `runs` timed ones */
  | { op: "run"; runs: number; warmupMs: number }
  | { op: "exit" };

export type OrtReply =
  /** outputs of the last warm-up run; nodeRssKb: the peak RSS of this process before onnxruntime loaded; cpus: the CPUs it may run on (Linux) */
  | { op: "loaded"; outputs: Record<string, Tensor>; nodeRssKb: number; cpus?: string }
  | { op: "times"; ms: number[] }
  | { op: "done"; maxRssKb: number }
  | { op: "error"; message: string; exitCode: number };

export type OrtEngine = "onnxruntime-node" | "onnxruntime-web";

// Both packages implement onnxruntime-common's API; the node package's types stand for both.
type Ort = typeof import("onnxruntime-node");

let ort: Ort;
let session: import("onnxruntime-node").InferenceSession;
let feeds: Record<string, import("onnxruntime-node").Tensor>;

async function importEngine(engine: OrtEngine): Promise<Ort> {
  if (engine === "onnxruntime-node") return import("onnxruntime-node");
  const web = (await import("onnxruntime-web")) as unknown as Ort & { env: { wasm: { numThreads: number } } };
  web.env.wasm.numThreads = 1;
  return web;
}

/**
 * This process's peak resident memory in KiB. Not getrusage's ru_maxrss on Linux: that keeps the
 * high-water mark of the parent's memory copied at fork across exec, so a child of a large edgec
 * process would report edgec's size. VmHWM belongs to this process's own address space.
 */
function peakRssKb(): number {
  const hwm = status(/^VmHWM:\s+(\d+) kB$/m);
  return hwm ? Number(hwm) : process.resourceUsage().maxRSS;
}

const status = (field: RegExp): string | undefined => (process.platform === "linux" ? field.exec(readFileSync("/proc/self/status", "utf8"))?.[1] : undefined);

const reply = (r: OrtReply) => new Promise<void>((done) => process.send!(r, () => done()));

async function load(r: Extract<OrtRequest, { op: "load" }>): Promise<OrtReply> {
  const nodeRssKb = peakRssKb();
  try {
    ort = await importEngine(r.engine);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ERR_MODULE_NOT_FOUND") throw e;
    return { op: "error", message: `--compare-ort needs ${r.engine}, a devDependency of edgec that is not installed: run \`npm install\` in edgec's folder (or \`npm install ${r.engine}\`)`, exitCode: 2 };
  }
  try {
    const options = r.engine === "onnxruntime-web" ? { executionProviders: ["wasm"] } : { intraOpNumThreads: r.threads, interOpNumThreads: 1, executionMode: "sequential" as const };
    session = await ort.InferenceSession.create(r.model, { ...options, graphOptimizationLevel: "all" });
  } catch (e) {
    return { op: "error", message: `onnxruntime cannot load ${r.model}: ${(e as Error).message.split("\n")[0]}`, exitCode: 3 };
  }
  // edgec stores bool one byte per element, as onnxruntime does; every other dtype name is shared.
  feeds = Object.fromEntries(Object.entries(r.inputs).map(([name, t]) => [name, new ort.Tensor(t.dtype, t.data, t.shape)]));
  let out: Awaited<ReturnType<typeof session.run>> = {};
  const start = performance.now();
  for (let i = 0; i < Math.max(1, r.warmup) || performance.now() - start < r.warmupMs; i++) out = await session.run(feeds);
  const outputs = Object.fromEntries(Object.entries(out).map(([name, t]) => [name, { dtype: t.type as DType, shape: [...t.dims], data: t.data as TypedArray }]));
  return { op: "loaded", outputs, nodeRssKb, cpus: status(/^Cpus_allowed_list:\s+(\S+)$/m) };
}

async function run(runs: number, warmupMs: number): Promise<OrtReply> {
  const ms: number[] = [];
  for (const start = performance.now(); performance.now() - start < warmupMs; ) await session.run(feeds);
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    ms.push(performance.now() - t0);
  }
  return { op: "times", ms };
}

process.on("message", async (r: OrtRequest) => {
  try {
    if (r.op === "load") await reply(await load(r));
    else if (r.op === "run") await reply(await run(r.runs, r.warmupMs));
    else {
      await reply({ op: "done", maxRssKb: peakRssKb() });
      process.exit(0);
    }
  } catch (e) {
    await reply({ op: "error", message: `onnxruntime: ${(e as Error).message.split("\n")[0]}`, exitCode: 3 });
  }
});
