import { inPlaceConvsOn, runGraphPasses, type PlannedGraph } from "../../src/driver/pipeline.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { isAlias } from "../../src/graph/ir.js";
import { loadTarget } from "../../src/target/load.js";
import type { IrregularNet } from "./irregular.js";
import { tempDir } from "./onnx-builder.js";

/** One row of issue 5's table: peak activation memory of one network three ways, and its arena. */
export interface MemoryRow {
  name: string;
  family: string;
  onnxNodes: number;
  kernels: number;
  /** the file's own order (what onnxruntime runs) */
  topo: number;
  /** onnxruntime's own depth-first order */
  ort: number;
  /** edgec's dynamic program, no rewrite */
  dp: number;
  /** the dynamic program with the rewrites it kept */
  rewritten: number;
  /** whether `dp` is proven optimal (its schedule has a share of the time limit) */
  dpOptimal: boolean;
  optimal: boolean;
  arena: number;
  lowerBound: number;
  scheduleMs: number;
  graph: PlannedGraph;
}

/** Convolutions in place as a host build has them (convInPlace). */
const IN_PLACE = inPlaceConvsOn(loadTarget("host"), true);

export function memoryRow(net: IrregularNet, scheduleTimeLimitMs?: number): MemoryRow {
  const dir = tempDir("edgec-memory-table-");
  try {
    const t0 = Date.now();
    const g = runGraphPasses(importOnnx(dir.write(`${net.name}.onnx`, net.bytes)).graph, { scheduleTimeLimitMs, inPlaceConvs: IN_PLACE, optimize: "memory" });
    const s = g.schedule;
    return {
      name: net.name,
      family: net.family,
      onnxNodes: net.onnxNodes,
      kernels: g.nodes.filter((n) => !isAlias(n)).length,
      topo: s.topoPeakBytes,
      ort: s.ortPeakBytes,
      dp: s.dpPeakBytes,
      rewritten: s.peakBytes,
      dpOptimal: s.dpOptimal,
      optimal: s.optimal,
      arena: g.memory.arenaBytes,
      lowerBound: g.memory.lowerBoundBytes,
      scheduleMs: Date.now() - t0,
      graph: g,
    };
  } finally {
    dir.cleanup();
  }
}

const geomean = (xs: number[]) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);

/** Geometric-mean reductions of the peak against the file order and against onnxruntime's order. */
export function summary(rows: MemoryRow[]) {
  return {
    dp: geomean(rows.map((r) => r.topo / r.dp)),
    rewritten: geomean(rows.map((r) => r.topo / r.rewritten)),
    ortDp: geomean(rows.map((r) => r.ort / r.dp)),
    ortRewritten: geomean(rows.map((r) => r.ort / r.rewritten)),
  };
}

export function formatTable(rows: MemoryRow[]): string {
  const kib = (b: number) => (b / 1024).toFixed(0);
  const lines = [
    "| network | family | ONNX nodes | kernels | file order KiB | onnxruntime order KiB | DP KiB | DP + rewrite KiB | reduction vs file order: DP / + rewrite | optimal: DP / + rewrite | arena KiB (vs bound) | graph passes ms |",
    "| --- | --- | --: | --: | --: | --: | --: | --: | --: | --- | --: | --: |",
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.family} | ${r.onnxNodes} | ${r.kernels} | ${kib(r.topo)} | ${kib(r.ort)} | ${kib(r.dp)} | ${kib(r.rewritten)} | ${(r.topo / r.dp).toFixed(2)}× / ${(r.topo / r.rewritten).toFixed(2)}× | ${r.dpOptimal ? "yes" : "no"} / ${r.optimal ? "yes" : "no"} | ${kib(r.arena)} (+${((100 * (r.arena - r.lowerBound)) / r.lowerBound).toFixed(1)}%) | ${r.scheduleMs} |`,
    ),
  ];
  const s = summary(rows);
  lines.push(
    "",
    `geometric-mean reduction of the peak over ${rows.length} networks: against the file order (what TFLite runs) ${s.dp.toFixed(3)}× with the DP, ${s.rewritten.toFixed(3)}× with the DP and rewriting; ` +
      `against onnxruntime's order ${s.ortDp.toFixed(3)}× and ${s.ortRewritten.toFixed(3)}×`,
  );
  return lines.join("\n");
}
