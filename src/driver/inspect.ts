import { numel, shapeStr } from "../core/tensor.js";
import { importOnnx } from "../frontend/onnx/import.js";
import { bytesMoved, countMacs } from "../graph/cost.js";
import { isAlias } from "../graph/ir.js";
import { checkCosts, fileSha256 } from "./costs.js";
import { partitionDevices, type Placement } from "../graph/passes/partition-devices.js";
import { cpuFusionsOn, inPlaceConvsOn, measuredLine, predictedLine, runGraphPasses, unfusedGraph, type Optimize, type PipelineOptions } from "./pipeline.js";

export interface InspectInfo {
  model: string;
  opset: number;
  irVersion: number;
  producer: string;
  inputs: { name: string; dtype: string; shape: number[] }[];
  outputs: { name: string; dtype: string; shape: number[] }[];
  /** ONNX nodes as imported (Constant nodes excluded) */
  nodes: number;
  /** kernels after fusion (one per node with --no-fuse) */
  kernels: number;
  /** kernels without fusion: one per node left after constant folding */
  unfusedKernels: number;
  /** bytes all kernels read and write (inputs, outputs and weights, each once per kernel) */
  bytesMoved: { unfused: number; fused: number };
  /** what each fused kernel contains, and why */
  fusion: { kernel: string; ops: string[]; reason: string }[];
  ops: Record<string, number>;
  parameters: number;
  macs: number;
  /** peak live activation bytes in edgec's kernel order (schedule-memory, with any rewrite it kept) */
  peakBytes: number;
  /** the same in the graph's own topological order, as onnxruntime or TFLite would run it */
  topoPeakBytes: number;
  /** the same in onnxruntime's default order (a depth-first walk back from the outputs) */
  ortPeakBytes: number;
  /** edgec's order before graph rewrites */
  dpPeakBytes: number;
  /** true when that order is proven to have the lowest peak before rewrites (it has a share of the time limit) */
  dpScheduleOptimal: boolean;
  /** true when the scheduler proved no order has a lower peak */
  scheduleOptimal: boolean;
  /** which rewrites could lower the peak: "speed" (those that cost no measurable time) or "memory" (see Optimize) */
  optimize: Optimize;
  /** rewrites kept because they lowered the peak */
  rewrites: string[];
  scheduleMs: number;
  /** the activation arena the planner placed every tensor in (a build adds kernel scratch, planned with them) */
  arenaBytes: number;
  /** the most bytes live at once: no placement fits in less */
  lowerBoundBytes: number;
  /** kernels in run order, with the live bytes while each runs */
  schedule: { kernel: string; op: string; liveBytes: number }[];
  /** live bytes per step in the graph's own order */
  topoCurve: number[];
  weightBytes: number;
  /** targets with an OpenCL GPU: where partition-devices puts each kernel, and the predicted times */
  placement?: Placement;
}

export function inspectModel(model: string, opts: PipelineOptions): InspectInfo {
  if (opts.costs) checkCosts(opts.costs, model, fileSha256(model), opts.target);
  const imported = importOnnx(model, { inputShapes: opts.inputShapes, bind: opts.bind });
  const unfused = unfusedGraph(imported.graph);
  const cpuFusions = opts.cpuFusions ?? cpuFusionsOn(opts.target);
  const optimize = opts.optimize ?? "speed";
  const g = runGraphPasses(imported.graph, { fuse: opts.fuse, scheduleTimeLimitMs: opts.scheduleTimeLimitMs, cpuFusions, inPlaceConvs: inPlaceConvsOn(opts.target, cpuFusions), optimize });
  const ops: Record<string, number> = {};
  for (const n of imported.graph.nodes) ops[n.op] = (ops[n.op] ?? 0) + 1;
  const consts = [...g.values.values()].filter((v) => v.data && g.nodes.some((n) => n.inputs.includes(v.name)));
  const kernels = g.nodes.filter((n) => !isAlias(n));
  const io = (names: string[]) => names.map((n) => ({ name: n, dtype: g.values.get(n)!.dtype, shape: g.values.get(n)!.shape! }));
  return {
    model,
    opset: imported.opset,
    irVersion: imported.irVersion,
    producer: imported.producer,
    inputs: io(g.inputs),
    outputs: io(g.outputs),
    nodes: imported.graph.nodes.length,
    kernels: kernels.length,
    unfusedKernels: unfused.nodes.length,
    bytesMoved: { unfused: bytesMoved(unfused), fused: bytesMoved(g) },
    fusion: g.nodes.filter((n) => n.fused).map((n) => ({ kernel: n.name, ops: n.fused!.body.map((m) => m.op), reason: n.fused!.reason })),
    ops,
    parameters: consts.filter((v) => v.dtype.startsWith("float")).reduce((s, v) => s + numel(v.shape!), 0),
    macs: countMacs(unfused),
    peakBytes: g.schedule.peakBytes,
    topoPeakBytes: g.schedule.topoPeakBytes,
    ortPeakBytes: g.schedule.ortPeakBytes,
    dpPeakBytes: g.schedule.dpPeakBytes,
    dpScheduleOptimal: g.schedule.dpOptimal,
    scheduleOptimal: g.schedule.optimal,
    optimize,
    rewrites: g.schedule.rewrites,
    scheduleMs: g.schedule.ms,
    arenaBytes: g.memory.arenaBytes,
    lowerBoundBytes: g.memory.lowerBoundBytes,
    schedule: kernels.map((n, i) => ({ kernel: n.name, op: n.fused ? n.fused.body.map((m) => m.op).join("+") : n.op, liveBytes: g.schedule.curve[i] })),
    topoCurve: g.schedule.topoCurve,
    weightBytes: consts.reduce((s, v) => s + v.data!.data.byteLength, 0),
    placement: opts.target.devices.some((d) => d.kind === "gpu" && d.api === "opencl") ? partitionDevices(g, opts.target, opts.costs, opts.objective).placement : undefined,
  };
}

export function formatInspect(i: InspectInfo): string {
  const fmt = (x: number) => (x >= 1e9 ? `${(x / 1e9).toFixed(2)} G` : x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)} K` : `${x}`);
  const lines = [
    `model      ${i.model} (opset ${i.opset}, IR ${i.irVersion}${i.producer ? `, ${i.producer}` : ""})`,
    ...i.inputs.map((x) => `input      ${x.name}: ${x.dtype}${shapeStr(x.shape)}`),
    ...i.outputs.map((x) => `output     ${x.name}: ${x.dtype}${shapeStr(x.shape)}`),
    `nodes      ${i.nodes} ONNX nodes, ${i.unfusedKernels} after constant folding, ${i.kernels} kernels after fusion`,
    `traffic    ${fmt(i.bytesMoved.unfused)}B unfused, ${fmt(i.bytesMoved.fused)}B fused (${(100 * (1 - i.bytesMoved.fused / i.bytesMoved.unfused)).toFixed(1)}% less)`,
    `ops        ${Object.entries(i.ops).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}×${v}`).join(", ")}`,
    `parameters ${fmt(i.parameters)}`,
    `MACs       ${fmt(i.macs)}`,
    `memory     peak ${fmt(i.peakBytes)}B live (${i.scheduleOptimal ? "optimal order" : "order not proven optimal"}${i.rewrites.length ? `, with ${i.rewrites.join(", ")}` : ""}, optimized for ${i.optimize}; graph order ${fmt(i.topoPeakBytes)}B, onnxruntime's order ${fmt(i.ortPeakBytes)}B), scheduled in ${i.scheduleMs} ms`,
    `arena      ${fmt(i.arenaBytes)}B (lower bound ${fmt(i.lowerBoundBytes)}B)`,
    `weights    ${fmt(i.weightBytes)}B`,
    ...(i.placement ? [`placement  ${i.placement.onGpu.length} of ${i.kernels} kernels on the GPU, ${i.placement.transfers.length} copies (${fmt(i.placement.transfers.reduce((s, x) => s + x.bytes, 0))}B); predicted ${predictedLine(i.placement)}, ${measuredLine(i.placement)}`] : []),
  ];
  return lines.join("\n");
}

/** The live-memory curves as an SVG line chart: edgec's order against the graph's own. */
export function memoryPlotSvg(i: InspectInfo): string {
  const [w, h, pad] = [720, 360, 48];
  const curves = [
    { name: `graph order, peak ${i.topoPeakBytes} B`, ys: i.topoCurve, color: "#c0392b" },
    { name: `edgec, peak ${i.peakBytes} B`, ys: i.schedule.map((s) => s.liveBytes), color: "#2471a3" },
  ];
  const top = Math.max(1, ...curves.flatMap((c) => c.ys));
  const steps = Math.max(2, ...curves.map((c) => c.ys.length));
  const x = (k: number) => (pad + (k * (w - 2 * pad)) / (steps - 1)).toFixed(1);
  const y = (b: number) => (h - pad - (b * (h - 2 * pad)) / top).toFixed(1);
  const esc = (t: string) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(i.model)}: live activation memory per kernel</title>`,
    `<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="black"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="black"/>`,
    `<text x="${w / 2}" y="${h - 12}" text-anchor="middle">kernel (run order)</text>`,
    `<text x="${pad}" y="${pad - 8}">${top} B</text>`,
    ...curves.map((c, k) => `<polyline fill="none" stroke="${c.color}" stroke-width="1.5" points="${c.ys.map((b, s) => `${x(s)},${y(b)}`).join(" ")}"/><text x="${w - pad}" y="${pad + 16 * k}" text-anchor="end" fill="${c.color}">${esc(c.name)}</text>`),
    "</svg>",
    "",
  ].join("\n");
}
