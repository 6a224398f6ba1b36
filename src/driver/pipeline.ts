import { basename } from "node:path";
import type { Manifest } from "../core/artifact.js";
import { EdgecError } from "../core/diag.js";
import type { Tensor } from "../core/tensor.js";
import type { Backend, Files } from "../codegen/backend.js";
import { cBackend } from "../codegen/c/index.js";
import { DEFAULT_WORK_GROUP, openclBackend } from "../codegen/opencl/index.js";
import { wasmBackend } from "../codegen/wasm/index.js";
import { importOnnx, type Imported } from "../frontend/onnx/import.js";
import type { Graph, Node } from "../graph/ir.js";
import { eliminateDeadNodes } from "../graph/passes/eliminate-dead-nodes.js";
import { foldConstants } from "../graph/passes/fold-constants.js";
import { eliminateIdentity } from "../graph/passes/eliminate-identity.js";
import { foldBatchnorm } from "../graph/passes/fold-batchnorm.js";
import { fuse } from "../graph/passes/fuse.js";
import { poolSlices } from "../graph/passes/pool-slices.js";
import { splitSlices } from "../graph/passes/split-slices.js";
import { inferShapes } from "../graph/passes/infer-shapes.js";
import { planMemory, type MemoryPlan } from "../graph/passes/plan-memory.js";
import { convInPlace, keepNeeded, marked } from "../graph/passes/conv-in-place.js";
import { rewriteConcat, rewrittenConcats } from "../graph/passes/rewrite-concat.js";
import { madeIn, reassociateSums, sumTrees } from "../graph/passes/reassociate-sums.js";
import { cpuMs, DEFAULT_TIME_LIMIT_MS, scheduleMemory, type ScheduleInfo, type Scheduled } from "../graph/passes/schedule-memory.js";
import { printGraph } from "../graph/print.js";
import { verifyGraph } from "../graph/verify.js";
import type { Kernel, Program } from "../loop/ir.js";
import { gpuCannot, splitProgram } from "../loop/split.js";
import { partitionDevices, type Objective, type Placement } from "../graph/passes/partition-devices.js";
import type { Costs } from "../graph/cost.js";
import { checkCosts, fileSha256 } from "./costs.js";
import { lowerGraph, unloweredOps } from "../loop/lower-graph.js";
import { printLoop } from "../loop/print.js";
import { verifyLoop } from "../loop/verify.js";
import { hoistInvariants } from "../loop/passes/hoist-invariants.js";
import { simplify } from "../loop/passes/simplify.js";
import { vectorizeLoops } from "../loop/passes/vectorize-loops.js";
import type { Target } from "../target/schema.js";
import { VERSION } from "./version.js";

export interface PipelineOptions {
  target: Target;
  inputShapes?: Record<string, number[]>;
  /** inputs compiled in as constants */
  bind?: Record<string, Tensor>;
  /** C identifier prefix of the generated API (default "model") */
  name?: string;
  /** pass names whose output is dumped ("all" for every one) */
  dumpAfter?: string[];
  dump?: (title: string, text: string) => void;
  stopAfter?: "graph" | "loop" | "codegen";
  extraCflags?: string[];
  /** false: no fusion passes, one kernel per node (--no-fuse) */
  fuse?: boolean;
  /** whether to take the fusions only CPU kernels can run (default: cpuFusionsOn(target)); edgec profile's CPU build of a GPU target must make the GPU build's kernels */
  cpuFusions?: boolean;
  /** the most bytes of activation memory (arena and kernel scratch) the build may need (--memory-budget) */
  memoryBudget?: number;
  /** the memory scheduler's time limit; past it the best order found is used (DEFAULT_TIME_LIMIT_MS, shared with the rewrites it tries) */
  scheduleTimeLimitMs?: number;
  /** GPU targets: "auto" places each kernel where the cost model predicts the fastest run (partition-devices) */
  placement?: "auto";
  /** GPU targets: puts a kernel on the CPU or the GPU (undefined: the default, the GPU unless it cannot run it) */
  place?: (k: Kernel) => "cpu" | "gpu" | undefined;
  /** where weights go; "auto" writes weights.bin above EMBED_LIMIT bytes */
  weights?: "embed" | "file" | "auto";
  /** measured kernel and copy times (edgec profile) for placement "auto", in place of the cost model's estimates */
  costs?: Costs;
  /** a profiling build: the run harness prints each kernel's time (edgec profile) */
  profile?: boolean;
  /** what placement "auto" minimises: one inference's latency (default), or the time between results of a stream (a two-stage CPU/GPU pipeline) */
  objective?: Objective;
  /** which rewrites may lower the peak (see Optimize); unset: speed, or, in compileModel, memory where speed's build does not fit memoryBudget (inspect takes speed) */
  optimize?: Optimize;
}

/**
 * What the graph rewrites that lower the peak of live memory may cost. "speed": only those that
 * cost no measurable time (the kernel order, sums reassociated, concats rewritten, convolutions in
 * place: within 2% of the time without them, see README). "memory": fusion for memory too
 * (memoryFirst in select-fusion), whose copied concats and operators recomputed inside
 * convolutions cost time: SqueezeNet 1.1 needs 968,000 bytes with it
 * and 1,161,600 without, and took 1.05× as long on one thread and 1.06× on two (profiling builds,
 * medians of 9 alternating rounds, x86-64 with AVX-512).
 */
export type Optimize = "speed" | "memory";

/** Above this many weight bytes the C source would be too large to compile comfortably. */
export const EMBED_LIMIT = 16 * 1024 * 1024;

/**
 * `fusion` passes are skipped under --no-fuse, which keeps one kernel per ONNX node; a
 * `whenPeakDrops` pass is kept only when the rest of the pipeline schedules its result with a lower
 * peak of live memory than without it.
 */
type GraphPass = {
  name: string;
  run: (g: Graph, o?: GraphPassOptions) => Graph;
  fusion?: boolean;
  whenPeakDrops?: boolean;
  /**
   * a whenPeakDrops pass that rewrites several places: `places(g, ran)` names those its result
   * `ran` rewrote, `only(g, names)` rewrites just those. A rewrite that leaves the peak where it is
   * only costs speed, so each place is tried without, and stays without when the peak does not
   * rise (see narrowed).
   */
  each?: { places: (g: Graph, ran: Graph) => string[]; only: (g: Graph, names: Set<string>) => Graph };
  /**
   * a rewrite whose places the schedule of its result can judge without scheduling again: `prune`
   * takes back those the peak does not need, keeping the peak and its proof, and says whether any
   * is left (when none is, the rewrite only led the search to a better order)
   */
  prune?: (g: Scheduled) => { g: Scheduled; left: boolean };
  /**
   * other results to schedule beside run's: the lowest peak is kept, the earliest on a tie. One
   * named as a `rewrite` is a way to lower the peak at some cost in speed: it is measured against
   * the best of the others, as a whenPeakDrops pass is.
   */
  alternatives?: (g: Graph, ran: Graph, opts?: GraphPassOptions) => { graph: Graph; rewrite?: string }[];
  /**
   * a rewrite guided by the order the rest of the pipeline schedules g in (without it, then with
   * it, while the peak keeps dropping, at most MAX_REORDERS times), on graphs it `applies` to; kept
   * only when the peak drops
   */
  fromSchedule?: { applies: (g: Graph) => boolean; run: (g: Graph, scheduled: Scheduled) => Graph };
};

/** What graph passes are told of the target (see cpuFusionsOn). */
export interface GraphPassOptions {
  cpuFusions?: boolean;
  /** kernels may convolve in place (convInPlace): CPU lowerings with vectors of 4 lanes or more, for at most `threads` threads */
  inPlaceConvs?: { threads: number };
  /** "memory": fusion for memory is tried too (see Optimize) */
  optimize?: Optimize;
}

/**
 * The graph pipeline, in order. Shape inference and constant folding alternate until the graph
 * stops changing, because folding a shape subgraph is what lets the shapes after it be inferred.
 * After the passes, schedule-memory orders the kernels and plan-memory places their buffers.
 */
export const GRAPH_PASSES: GraphPass[] = [
  { name: "infer-shapes", run: inferShapes },
  { name: "fold-constants", run: foldConstants },
  { name: "eliminate-dead-nodes", run: eliminateDeadNodes },
  { name: "eliminate-identity", run: eliminateIdentity, fusion: true },
  { name: "fold-batchnorm", run: foldBatchnorm, fusion: true },
  { name: "pool-slices", run: poolSlices, fusion: true },
  { name: "split-slices", run: splitSlices, fusion: true },
  { name: "reassociate-sums", run: (g) => g, fromSchedule: { applies: (g) => sumTrees(g).length > 0, run: (g, s) => reassociateSums(g, madeIn(s)) } },
  { name: "rewrite-concat", run: (g) => rewriteConcat(g), whenPeakDrops: true, each: { places: rewrittenConcats, only: rewriteConcat } },
  // A concat view's buffer is live whole from its first slice on, which can raise the peak above
  // copying the slices in (see select-fusion): fusion without them is scheduled too. So is fusion
  // for memory when optimizing for memory (memoryFirst, with the Concats copied for the same
  // reason), kept only when it lowers the peak.
  {
    name: "fuse",
    run: (g, o) => fuse(g, { concatViews: o?.cpuFusions, stitchReductions: o?.cpuFusions }),
    fusion: true,
    alternatives: (g, ran, o) => {
      const copied = ran.nodes.some((n) => n.op === "ConcatView") ? fuse(g, { concatViews: false, stitchReductions: o?.cpuFusions }) : ran;
      const lean = o?.optimize === "memory" ? fuse(g, { concatViews: false, stitchReductions: o?.cpuFusions, memoryFirst: true }) : undefined;
      return [...(copied === ran ? [] : [{ graph: copied }]), ...(!lean || sameKernels(lean, copied) ? [] : [{ graph: lean, rewrite: "fuse (memory-first)" }])];
    },
  },
  // A 1×1 convolution in place that changes the channel count gives the planner a block whose size
  // changes, which it may not fit in the lower bound where an order without one would: marks with
  // them are an alternative of their own, kept only where the peak drops further.
  {
    name: "conv-in-place",
    run: (g) => g,
    alternatives: (g, _ran, o) => {
      if (!o?.inPlaceConvs) return [];
      const same = convInPlace(g, o.inPlaceConvs), all = convInPlace(g, { ...o.inPlaceConvs, channels: true });
      const marks = (h: Graph) => h.nodes.filter(marked).length;
      return [...(same === g ? [] : [same]), ...(marks(all) > marks(same) ? [all] : [])].map((graph) => ({ graph, rewrite: "conv-in-place" }));
    },
    prune: keepNeeded,
  },
];

/**
 * Whether a target takes the fusions only CPU kernels can run: concat views (not where kernels can
 * be split between the CPU and an OpenCL GPU, whose copies move whole tensors, not the slices of
 * one), stitched reductions and banded pools (their per-thread partial results and scratch have
 * no OpenCL form).
 */
export const cpuFusionsOn = (t: Target) => backendFor(t).device !== "gpu";

/**
 * Whether convolutions may run in place (convInPlace), and for how many threads: on a CPU backend
 * where the CPU fusions are, with vectors of 4 float32 lanes or more, which the depthwise
 * lowering's copy needs.
 */
export const inPlaceConvsOn = (t: Target, cpuFusions: boolean) =>
  cpuFusions && backendFor(t).device === "cpu" && t.vectorBytes >= 16 ? { threads: Math.max(1, t.cores) } : undefined;

/** What loop passes know of the device the kernels run on: float32 lanes per vector (1: none), and whether its dialect has slides (C's shuffles; OpenCL C's vectors do not). */
export interface LoopShape {
  lanes: number;
  slides: boolean;
}

export const LOOP_PASSES: { name: string; run: (p: Program, s: LoopShape) => Program }[] = [
  { name: "simplify", run: simplify },
  { name: "hoist-invariants", run: hoistInvariants },
  { name: "vectorize-loops", run: (p, s) => vectorizeLoops(p, s.lanes, s.slides) },
];

/** Every code generator, by the name a target's `backend` gives. */
const BACKENDS: Record<Target["backend"], Backend<unknown>> = {
  c: cBackend as Backend<unknown>,
  wasm: wasmBackend as Backend<unknown>,
  opencl: openclBackend as Backend<unknown>,
};

/** The backend for a target: the one its JSON names (C unless it says otherwise). */
export function backendFor(t: Target): Backend<unknown> {
  if (!t.buildable) throw new EdgecError(`target '${t.name}' (${t.arch}) has no code generator yet`);
  return BACKENDS[t.backend];
}

/** Schedules a fromSchedule pass's rewrite is tried on, at most (each from the one before). */
const MAX_REORDERS = 3;

/** Branches passed over that runGraphPasses plans, at most, when the chosen one's plan misses its lower bound. */
const MAX_REPLANS = 3;

const kernelKey = (g: Graph) => g.nodes.map((n) => `${n.op} ${n.name}(${n.inputs.join(",")})->${n.outputs.join(",")}[${n.fused?.body.map((m) => m.name).join(",") ?? ""}]`).join(";");
const sameKernels = (a: Graph, b: Graph) => a.nodes.length === b.nodes.length && kernelKey(a) === kernelKey(b);
/** The kernels in their order, with the convolutions marked in place: what planning a scheduled graph depends on. */
const markedKey = (g: Graph) => `${kernelKey(g)}|${g.nodes.filter(marked).map((n) => n.name).join(",")}`;

const signature = (g: Graph) =>
  `${g.nodes.length}:${[...g.values.values()].filter((v) => v.shape).length}:${[...g.values.values()].filter((v) => v.data).length}`;

export type PlannedGraph = Graph & { memory: MemoryPlan; schedule: ScheduleInfo };

const [infer, fold, ...rest] = GRAPH_PASSES;

function inferAndFold(g: Graph): Graph {
  for (let round = 0, before = ""; round < 64 && before !== signature(g); round++) {
    before = signature(g);
    g = fold.run(infer.run(g));
  }
  return g;
}

/**
 * The graph as its ONNX nodes compute it, shapes inferred and constants folded, with no fusion,
 * rewrite or scheduling: what `inspect` and `bench` count MACs and unfused kernels on, without
 * paying for the memory scheduler.
 */
export function unfusedGraph(g: Graph): Graph {
  g = inferAndFold(g);
  for (const p of rest) if (!p.fusion && !p.whenPeakDrops && !p.fromSchedule) g = p.run(g);
  verifyGraph(g);
  return g;
}

export function runGraphPasses(g: Graph, opts: Pick<PipelineOptions, "dumpAfter" | "dump" | "fuse" | "scheduleTimeLimitMs"> & GraphPassOptions): PlannedGraph {
  const want = (name: string) => opts.dumpAfter?.includes(name) || opts.dumpAfter?.includes("all");
  g = inferAndFold(g);
  if (want(infer.name)) opts.dump?.(`after:${infer.name}`, printGraph(g));
  if (want(fold.name)) opts.dump?.(`after:${fold.name}`, printGraph(g));
  // Dumps wait until the branch a whenPeakDrops pass opens is chosen. `passed` are the branches
  // chosen against, kept for when the chosen one's plan misses its lower bound (see the end).
  type Done = { g: Scheduled; dumps: [string, string][]; passed?: Done[] };
  /** d, with `over` and the branches they passed over added to those it passed over. */
  const passing = (d: Done, over: Done[]): Done => ({ ...d, passed: [...(d.passed ?? []), ...over.flatMap((o) => [{ g: o.g, dumps: o.dumps }, ...(o.passed ?? [])])] });
  /** d and the branches it passed over, each with rewrite `name` among its rewrites (none: as they are). */
  const tagged = (d: Done, name: string | undefined): Done =>
    !name ? d : { ...d, g: { ...d.g, schedule: { ...d.g.schedule, rewrites: [name, ...d.g.schedule.rewrites] } }, passed: d.passed?.map((o) => tagged(o, name)) };
  /** d and the branches it passed over, each with the dumps of the passes before it first. */
  const after = (before: [string, string][], d: Done): Done => ({ ...d, dumps: [...before, ...d.dumps], passed: d.passed?.map((o) => after(before, o)) });
  // One time limit (CPU time) for all scheduling, split evenly between the branches the passes open.
  const deadline = cpuMs() + (opts.scheduleTimeLimitMs ?? DEFAULT_TIME_LIMIT_MS);
  const finish = (g: Graph, passes: GraphPass[], before: [string, string][], share = 1): Done => {
    const dumps = [...before];
    for (const [i, p] of passes.entries()) {
      if (p.fusion && opts.fuse === false) continue;
      if (p.fromSchedule && !p.fromSchedule.applies(g)) {
        dumps.push([p.name, want(p.name) ? printGraph(g) + "// nothing to reorder\n" : ""]);
        continue;
      }
      if (p.fromSchedule) {
        // The schedule without the rewrite takes half of this share and each try half of what is
        // left then. All of it for the first (where often nothing is left to reorder) proved no
        // better on the irregular suite: the same peaks, er-32's graph passes 17.2 s against 13.6.
        const bare = finish(g, passes.slice(i + 1), [], share / 2);
        const tries: Done[] = [];
        let best = bare;
        for (let graph = g; tries.length < MAX_REORDERS; ) {
          const tried = p.fromSchedule.run(graph, best.g);
          if (tried === graph) break;
          const yes = finish(tried, passes.slice(i + 1), [...dumps, [p.name, want(p.name) ? printGraph(tried) : ""]], share / 2);
          tries.push(yes);
          if (yes.g.schedule.peakBytes >= best.g.schedule.peakBytes) break;
          [best, graph] = [yes, tried];
        }
        const no = after([...dumps, [p.name, `// not applied: peak ${bare.g.schedule.peakBytes} bytes without it${tries.length ? `, ${Math.min(...tries.map((t) => t.g.schedule.peakBytes))} with it` : ""}\n`]], bare);
        const over = tries.filter((t) => t !== best).map((t) => tagged(t, p.name));
        return best === bare ? passing(no, over) : passing(rewritten(best, no, p.name), over);
      }
      if (p.whenPeakDrops) {
        const tried = p.run(g, opts);
        if (tried === g) continue;
        const started = cpuMs();
        const bare = finish(g, passes.slice(i + 1), [], share / 2);
        const yes = finish(tried, passes.slice(i + 1), [...dumps, [p.name, want(p.name) ? printGraph(tried) : ""]], share / (2 - share));
        const note = `// not applied: peak ${yes.g.schedule.peakBytes} bytes with it, ${bare.g.schedule.peakBytes} without\n`;
        const no = after([...dumps, [p.name, note]], bare);
        if (yes.g.schedule.peakBytes < no.g.schedule.peakBytes) {
          if (p.prune) return pruned(p.prune, p.name, yes, no, p.name);
          return rewritten(p.each ? narrowed(p.each, g, tried, yes, passes.slice(i + 1), dumps, p.name, cpuMs() - started) : yes, no, p.name);
        }
        return passing(no, [tagged(yes, p.name)]);
      }
      const ran = p.run(g, opts);
      const others = p.alternatives?.(g, ran, opts) ?? [];
      if (others.length) {
        // Each branch takes an equal part of this pass's share of the time: of what the branches
        // before it leave, the j-th of n takes share / (n − j·share).
        const branches = [{ graph: ran, rewrite: undefined as string | undefined }, ...others].map((b, j, all) => ({
          ...b,
          done: finish(b.graph, passes.slice(i + 1), [...dumps, [p.name, want(p.name) ? printGraph(b.graph) : ""]], share / (all.length - j * share)),
        }));
        const peak = (b: (typeof branches)[number]) => b.done.g.schedule.peakBytes;
        const lowest = (bs: typeof branches) => bs.reduce((a, b) => (peak(b) < peak(a) ? b : a));
        const plain = lowest(branches.filter((b) => !b.rewrite));
        const best = lowest(branches);
        const rest = (...chosen: (typeof branches)[number][]) => branches.filter((b) => !chosen.includes(b)).map((b) => tagged(b.done, b.rewrite));
        if (best.rewrite && peak(best) < peak(plain))
          return passing(p.prune ? pruned(p.prune, p.name, best.done, plain.done, best.rewrite) : rewritten(best.done, plain.done, best.rewrite), rest(best, plain));
        const tried = branches.filter((b) => b.rewrite);
        if (!tried.length) return passing(plain.done, rest(plain));
        const note = `// ${tried[0].rewrite} not applied: peak ${peak(lowest(tried))} bytes with it, ${peak(plain)} without\n`;
        return passing({ ...plain.done, dumps: plain.done.dumps.map(([n, t]) => [n, n === p.name && want(n) ? t + note : t]) }, rest(plain));
      }
      g = ran;
      dumps.push([p.name, want(p.name) ? printGraph(g) : ""]);
    }
    verifyGraph(g);
    const scheduled = scheduleMemory(g, { timeLimitMs: Math.max(0, (deadline - cpuMs()) * share) });
    verifyGraph(scheduled);
    const s = scheduled.schedule;
    const summary = `// peak ${s.peakBytes} bytes (graph order ${s.topoPeakBytes}), ${s.optimal ? "optimal" : "not proven optimal"}, ${s.pieces} pieces, ${s.states} states, ${s.ms} ms\n`;
    return { g: scheduled, dumps: [...dumps, ["schedule-memory", want("schedule-memory") ? printGraph(scheduled) + summary : ""]] };
  };
  /**
   * The rewrite of only the places the peak needs: each place, the last first, is left as it was
   * when the schedule without it peaks no higher and is as proven. SqueezeNet 1.1's peak is in its
   * first fire modules; its last convolution, split over the halves of its input, ran as two products
   * (the second adding into the first's result) where one does. A try that would leave nothing
   * rewritten is skipped: the caller scheduled that graph already. The tries, their schedules
   * included, end within as long as the two schedules before them took, or a second, and by the
   * deadline; a graph whose tries do not all fit keeps the rewrites not tried, so which ones depends
   * on the machine's speed, as the DP's own proof does (never the peak, nor whether it is proven).
   */
  const narrowed = (each: NonNullable<GraphPass["each"]>, g: Graph, ran: Graph, best: Done, passes: GraphPass[], before: [string, string][], name: string, spent: number): Done => {
    const stop = Math.min(deadline, cpuMs() + Math.max(spent, 1000));
    let kept = new Set(each.places(g, ran));
    for (const place of [...kept].reverse()) {
      const now = cpuMs();
      if (now >= stop) break;
      const only = new Set([...kept].filter((x) => x !== place));
      if (!only.size) continue;
      const graph = each.only(g, only);
      // Its share of what is left before the deadline ends its schedules by `stop`.
      const done = finish(graph, passes, [...before, [name, want(name) ? printGraph(graph) : ""]], Math.min(1, (stop - now) / Math.max(1, deadline - now)));
      const [s, b] = [done.g.schedule, best.g.schedule];
      if (s.peakBytes <= b.peakBytes && (s.optimal || !b.optimal)) {
        best = done;
        kept = only;
      }
    }
    return best;
  };
  /** A rewrite's result with its places pruned (see GraphPass.prune), measured against the schedule without it. */
  const pruned = (prune: NonNullable<GraphPass["prune"]>, pass: string, yes: Done, no: Done, name: string): Done => {
    const { g, left } = prune(yes.g);
    // The dumps show what is left: the pass's marks, and the scheduled graph with the schedule's summary.
    const redump = ([n, t]: [string, string]): [string, string] =>
      !want(n) || (n !== pass && n !== "schedule-memory") ? [n, t] : [n, printGraph(g) + (n === pass ? "" : t.slice(t.lastIndexOf("// peak")))];
    return rewritten({ g, dumps: yes.dumps.map(redump), passed: yes.passed }, no, left ? name : undefined);
  };
  /** A rewrite's result (`name`; none when nothing of it is left), measured against the schedule without it (the graph order and the DP before rewrites). */
  const rewritten = (yes: Done, no: Done, name: string | undefined): Done => {
    const before = no.g.schedule;
    const mine = tagged(yes, name);
    const schedule = { ...mine.g.schedule, topoPeakBytes: before.topoPeakBytes, ortPeakBytes: before.ortPeakBytes, topoCurve: before.topoCurve, dpPeakBytes: before.dpPeakBytes, dpOptimal: before.dpOptimal };
    return passing({ ...mine, g: { ...mine.g, schedule } }, [no]);
  };
  const chosen = finish(g, rest, []);
  // The lowest peak stands for the smallest arena, which the plan reaches at the lower bound. Where
  // it does not (a block of two sizes, from a convolution in place changing the channel count, can
  // fit no placement in the bound: swiftnet-2x10-14 of seed 1019, 272 KiB against 256), the
  // branches passed over with a peak no higher than that arena are planned too, lowest peak first
  // (at most MAX_REPLANS, and none past the scheduling time limit: a plan that misses its bound
  // searches for seconds), and one needing less memory, or as much in its own bound, is taken. A
  // branch passed over keeps all its marks of convolutions in place: keepNeeded prunes only the
  // chosen branch's, so one taken may run more of them in place than its peak needs.
  let done = chosen;
  let memory = planMemory(chosen.g).memory;
  const seen = new Set([markedKey(chosen.g)]);
  const passed = [...(chosen.passed ?? [])].sort((a, b) => a.g.schedule.peakBytes - b.g.schedule.peakBytes);
  for (let i = 0, replans = 0; i < passed.length && replans < MAX_REPLANS && cpuMs() < deadline && memory.arenaBytes > memory.lowerBoundBytes; i++) {
    const d = passed[i];
    if (d.g.schedule.peakBytes > memory.arenaBytes || seen.has(markedKey(d.g))) continue;
    seen.add(markedKey(d.g));
    replans++;
    const m = planMemory(d.g).memory;
    if (m.arenaBytes < memory.arenaBytes || (m.arenaBytes === memory.arenaBytes && m.arenaBytes <= m.lowerBoundBytes)) [done, memory] = [d, m];
  }
  const s = chosen.g.schedule;
  const schedule = done === chosen ? s : { ...done.g.schedule, topoPeakBytes: s.topoPeakBytes, ortPeakBytes: s.ortPeakBytes, topoCurve: s.topoCurve, dpPeakBytes: s.dpPeakBytes, dpOptimal: s.dpOptimal };
  for (const [name, text] of done.dumps) if (want(name)) opts.dump?.(`after:${name}`, text);
  const planned = { ...done.g, memory, schedule };
  const mem = planned.memory;
  if (want("plan-memory")) opts.dump?.("after:plan-memory", printGraph(planned) + `// arena ${mem.arenaBytes} bytes, lower bound ${mem.lowerBoundBytes} (placed by ${mem.strategy}), ${Object.keys(mem.inPlace).length} in place\n`);
  return planned;
}

export interface Compiled {
  imported: Imported;
  graph: PlannedGraph;
  program: Program;
  files: Files;
  manifest: Manifest;
  backend: Backend<unknown>;
  config: unknown;
}

class OverBudget extends EdgecError {}

function overBudget(model: string, g: PlannedGraph, needed: number, budget: number, optimize: Optimize | undefined): EdgecError {
  const s = g.schedule;
  const goal = optimize === "speed" ? " optimized for speed (--optimize memory may need less)" : "";
  return new OverBudget(
    `${basename(model)}: needs ${needed} bytes of activation memory, over the budget of ${budget} (--memory-budget): ` +
      `its smallest peak of live tensors${goal} is ${s.peakBytes} bytes${s.optimal ? " (proven: no kernel order needs less)" : " (best order found; not proven optimal)"}, ` +
      `in an arena of ${g.memory.arenaBytes} bytes${needed > g.memory.arenaBytes ? ` (${needed} with the kernels' scratch)` : ""}; in the graph's own order the peak would be ${s.topoPeakBytes} bytes`,
  );
}

/**
 * A GPU program with the kernels the GPU cannot run (see gpuCannot), and those `opts.place` puts
 * there, moved to the CPU: lowered for the CPU too and split, or returned as it is when none move.
 */
function placeKernels(gpuProgram: Program, cpuProgram: () => Program, opts: PipelineOptions): Program {
  const gpu = opts.target.devices.find((d) => d.kind === "gpu" && d.api === "opencl")!;
  const onCpu = gpuProgram.kernels.map((k) => gpuCannot(k, gpuProgram, gpu) !== undefined || opts.place?.(k) === "cpu");
  return onCpu.some(Boolean) ? splitProgram(cpuProgram(), gpuProgram, onCpu) : gpuProgram;
}

/** The GPU program with each tiled kernel's untiled form (from `plain`, the same graph lowered without tiles) beside it. */
function withUntiled(p: Program, plain: Program): Program {
  return {
    ...p,
    kernels: p.kernels.map((k, i) => {
      if (!k.body.some((s) => s.k === "grid")) return k;
      const u = plain.kernels[i];
      if (u?.node !== k.node) throw new Error(`internal: kernel ${k.name} (${k.node}) has no untiled form`);
      return { ...k, params: [...new Set([...k.params, ...u.params])], writes: [...new Set([...k.writes, ...u.writes])], untiled: u.body };
    }),
  };
}

/**
 * The throughput split's kernel order: stage 1 (an ideal, so the order stays topological) before
 * the rest, each in the scheduled order, a View with the kernel that wrote what it views, and the
 * memory plan redone for that order.
 */
function stagesFirst(g: PlannedGraph, first: Set<string>): PlannedGraph {
  const writer = new Map(g.nodes.flatMap((n) => n.outputs.map((o): [string, Node] => [o, n])));
  const inFirst = (n: Node): boolean => (n.op === "View" ? !writer.has(n.inputs[0]) || inFirst(writer.get(n.inputs[0])!) : first.has(n.name));
  const nodes = [...g.nodes.filter(inFirst), ...g.nodes.filter((n) => !inFirst(n))];
  return { ...planMemory({ ...g, nodes }), schedule: g.schedule };
}

/** What a placement predicts, for the objective it was made for. */
export function predictedLine(p: Placement): string {
  const { cpuMs, gpuMs, partitionedMs } = p.predicted;
  const parts = `CPU ${p.split.cpuMs.toFixed(3)} ms, GPU ${p.split.gpuMs.toFixed(3)} ms, copies ${p.split.copiesMs.toFixed(3)} ms`;
  const times = `${partitionedMs.toFixed(3)} ms split (${parts}), ${cpuMs.toFixed(3)} ms all on the CPU, ${gpuMs.toFixed(3)} ms all on the GPU`;
  if (p.objective === "latency") return times;
  const st = p.stages;
  const stages = st ? `a pipeline of ${st.kernels.length} kernels on the ${st.first.toUpperCase()} then the rest, the best of ${st.ideals} splits (${st.exhaustive ? "every ideal" : "prefixes of the kernel order only: too many ideals"})` : "no pipeline: one device";
  return `time between results in a stream: ${times}; ${stages}`;
}

/** Where a placement's times came from. */
export const measuredLine = (p: Placement) => (p.measured.kernels ? `times measured on ${p.measured.machine} for ${p.measured.kernels} of ${p.measured.of} kernels${p.measured.kernels < p.measured.of ? " (the rest estimated)" : ""}` : "times estimated by the cost model");

/** partition-devices' result as --dump-ir and inspect print it. */
export function formatPlacement(p: Placement): string {
  const bytes = p.transfers.reduce((s, x) => s + x.bytes, 0);
  return [
    `// predicted (${p.objective}): ${predictedLine(p)}; ${measuredLine(p)}`,
    `// on the GPU (${p.onGpu.length}): ${p.onGpu.join(", ") || "none"}`,
    ...p.pinned.map((x) => `// pinned to the CPU: ${x.kernel} (${x.why})`),
    `// ${p.transfers.length} copies, ${bytes} bytes: ${p.transfers.map((x) => `${x.value} to ${x.to}`).join(", ") || "none"}`,
    "",
  ].join("\n");
}

export const sanitizeName = (n: string) => n.replace(/[^A-Za-z0-9_]/g, "_").replace(/^(?=\d)/, "m");

/**
 * Model file → graph → loop → source files, in memory. Under a memory budget with no goal given, a
 * build optimized for speed that does not fit is made again optimized for memory (with a schedule
 * time limit of its own; without fusion the two are the same build).
 */
export function compileModel(model: string, opts: PipelineOptions): Compiled {
  if (opts.optimize || opts.memoryBudget === undefined || opts.fuse === false) return compileFor(model, { ...opts, optimize: opts.optimize ?? "speed" });
  // The dumps are the build's that is kept.
  const held: [string, string][] = [];
  try {
    const fast = compileFor(model, { ...opts, optimize: "speed", dump: (title, text) => held.push([title, text]) });
    for (const [title, text] of held) opts.dump?.(title, text);
    return fast;
  } catch (e) {
    if (!(e instanceof OverBudget)) throw e;
    return compileFor(model, { ...opts, optimize: "memory" });
  }
}

function compileFor(model: string, opts: PipelineOptions & { optimize: Optimize }): Compiled {
  const backend = backendFor(opts.target);
  const imported = importOnnx(model, { inputShapes: opts.inputShapes, bind: opts.bind });
  const cpuFusions = opts.cpuFusions ?? cpuFusionsOn(opts.target);
  let graph = runGraphPasses(imported.graph, { ...opts, cpuFusions, inPlaceConvs: inPlaceConvsOn(opts.target, cpuFusions) });
  const missing = unloweredOps(graph);
  if (missing.length) throw new EdgecError(`${basename(model)}: ${missing.length} unsupported op${missing.length > 1 ? "s" : ""}: ${missing.join("; ")}`, 2, missing);
  const name = sanitizeName(opts.name ?? "model");
  const sha256 = fileSha256(model);
  const t = opts.target;
  // 64-byte vectors on x86 are AVX-512's, which packs and spreads lanes by a mask.
  const cpu = { lanes: Math.max(1, t.vectorBytes / 4), registers: t.vectorRegisters, threads: Math.max(1, t.cores), compress: t.arch === "x86_64" && t.vectorBytes === 64 };
  const want = (name: string) => opts.dumpAfter?.includes(name) || opts.dumpAfter?.includes("all");
  // GPU kernels use float vectors where the target's GPU entry asks for them (Mali's vec4 ALUs); 1: scalar SIMT code.
  const gpuEntry = t.devices.find((d) => d.kind === "gpu" && d.api === "opencl");
  const gpuLanes = gpuEntry?.vectorLanes ?? 1;
  // Tiled products take square work-groups: the largest power-of-two side (at most 16) the GPU's work-group size holds.
  let tile = 16;
  while (tile > 1 && tile * tile > (gpuEntry?.workGroupSize ?? DEFAULT_WORK_GROUP)) tile /= 2;
  /** The graph lowered for one device and through the loop passes (dumped for the backend's own device only). */
  const lowerFor = (device: "cpu" | "gpu", tiled = true) => {
    const dump = device === backend.device && tiled;
    // A CPU/GPU split needs the tensors where the GPU's lowering has them: the CPU's scratch goes after them.
    let p = lowerGraph(graph, device === "cpu" ? { cpu, scratch: backend.device === "cpu" ? "planned" : "after" } : { gpu: tiled ? { tile } : undefined });
    verifyLoop(p);
    if (dump && want("lower-graph")) opts.dump?.("after:lower-graph", printLoop(p));
    for (const pass of LOOP_PASSES) {
      p = pass.run(p, device === "cpu" ? { lanes: cpu.lanes, slides: true } : { lanes: gpuLanes, slides: false });
      verifyLoop(p);
      if (dump && want(pass.name)) opts.dump?.(`after:${pass.name}`, printLoop(p));
    }
    return p;
  };
  let place = opts.place;
  let stages: Placement["stages"];
  if (backend.device === "gpu" && opts.placement === "auto") {
    if (opts.costs) checkCosts(opts.costs, model, sha256, t);
    const { placement } = partitionDevices(graph, t, opts.costs, opts.objective);
    if (want("partition-devices")) opts.dump?.("after:partition-devices", formatPlacement(placement));
    const kernels = new Set(graph.nodes.map((n) => n.name));
    const onGpu = new Set(placement.onGpu);
    stages = placement.stages;
    // Kernels of no graph node (the copies into outputs that lowering adds at the end) join the
    // pipeline's last stage, or the CPU: an all-CPU placement stays plain C.
    const last = stages?.first === "cpu" ? "gpu" : "cpu";
    place = (k) => opts.place?.(k) ?? (kernels.has(k.node) ? (onGpu.has(k.node) ? "gpu" : "cpu") : last);
    if (stages) graph = stagesFirst(graph, new Set(stages.kernels));
  }
  let program = lowerFor(backend.device);
  if (program.kernels.some((k) => k.body.some((s) => s.k === "grid"))) program = withUntiled(program, lowerFor("gpu", false));
  if (backend.device === "gpu") program = placeKernels(program, () => lowerFor("cpu"), { ...opts, place });
  if (opts.memoryBudget !== undefined && program.arenaBytes > opts.memoryBudget) throw overBudget(model, graph, program.arenaBytes, opts.memoryBudget, opts.optimize);
  const weightBytes = [...program.buffers.values()].filter((b) => b.kind === "weight").reduce((s, b) => s + b.data!.data.byteLength, 0);
  const weights = opts.weights === "file" || (opts.weights !== "embed" && weightBytes > EMBED_LIMIT) ? "file" : "embed";
  const config = backend.configure(opts.target, { name, version: VERSION, source: `${basename(model)} (sha256 ${sha256.slice(0, 16)})`, extraCflags: opts.extraCflags, weights, profile: opts.profile, pipeline: stages && { first: stages.first } });
  program = backend.lower(program, config);
  verifyLoop(program);
  if (want(`${backend.name}-lower`)) opts.dump?.(`after:${backend.name}-lower`, printLoop(program));
  const files = backend.render(program, config);
  const spec = (names: string[]) =>
    names.map((b) => {
      const buf = program.buffers.get(b)!;
      return { name: buf.value, field: b.replace(/^(in|out)_/, ""), dtype: buf.dtype, shape: buf.shape };
    });
  const manifest: Manifest = {
    edgec: VERSION,
    name,
    model: { file: basename(model), sha256, opset: imported.opset, irVersion: imported.irVersion, producer: imported.producer },
    target: opts.target.name,
    triple: opts.target.triple,
    inputs: spec(program.inputs),
    outputs: spec(program.outputs),
    arenaBytes: program.arenaBytes,
    weightBytes,
    weightsFile: weights === "file" ? "weights.bin" : undefined,
    kernels: program.kernels.length,
    optimize: opts.optimize,
    files: Object.keys(files).sort(),
    profile: opts.profile ? program.kernels.map((k) => ({ node: k.node, device: backend.device === "gpu" && k.device !== "cpu" ? "gpu" : "cpu" })) : undefined,
  };
  return { imported, graph, program, files, manifest, backend, config };
}
