import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runGraphPasses } from "../../src/driver/pipeline.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { memoryModel, simulate, type MemoryModel } from "../../src/graph/memory.js";
import { CORPUS } from "../conformance/suite.js";
import { IRREGULAR_SUITE, swiftNet } from "../helpers/irregular.js";
import { memoryRow, summary, type MemoryRow } from "../helpers/memory-table.js";

/**
 * Issue 5's measures on the irregular-network suite, as properties: the scheduler is never worse
 * than the file's own order, it is proven optimal on every network of up to 100 ONNX nodes (and
 * agrees with brute force where the orders can be enumerated), rewriting never raises the peak, and
 * the planned arena stays close to the lower bound. `make bench-memory` prints the table.
 */
const SMALL = 100;

/** Lowest peak over every topological order, or undefined past `cap` orders. */
function bruteForce(m: MemoryModel, cap: number): number | undefined {
  let best = Infinity, seen = 0;
  const order: number[] = [];
  const done = new Set<number>();
  const walk = (): boolean => {
    if (order.length === m.kernels.length) {
      best = Math.min(best, simulate(m, order).peak);
      return ++seen < cap;
    }
    for (let k = 0; k < m.kernels.length; k++) {
      if (done.has(k) || !m.preds[k].every((p) => done.has(p))) continue;
      done.add(k);
      order.push(k);
      const go = walk();
      order.pop();
      done.delete(k);
      if (!go) return false;
    }
    return true;
  };
  return walk() ? best : undefined;
}

describe("memory-aware scheduling on irregularly wired networks", () => {
  const rows: MemoryRow[] = [];

  it.each(IRREGULAR_SUITE.map((n) => [n.name, n] as const))("%s", (_, net) => {
    // Larger networks get a time limit of 10 s. It counts CPU time: when it was the clock's, a full
    // CI run beside other work left darts-NNRNNRN's arena 1.059× its bound (the test taking 18.9 s;
    // 2.8 alone). Beside six busy loops it now takes 12.7 s and finds what it finds alone.
    const r = memoryRow(net, net.onnxNodes <= SMALL ? undefined : 10_000);
    rows.push(r);
    expect(r.dp).toBeLessThanOrEqual(r.topo);
    expect(r.rewritten).toBeLessThanOrEqual(r.dp);
    if (net.onnxNodes <= SMALL) expect(r.optimal, "proven optimal").toBe(true);
    expect(r.arena).toBeGreaterThanOrEqual(r.lowerBound);
    expect(r.arena / r.lowerBound, `arena ${r.arena} vs lower bound ${r.lowerBound}`).toBeLessThanOrEqual(1.05);
  });

  it("agrees with brute force on every network whose orders can be enumerated", () => {
    let checked = 0;
    for (const r of rows.filter((x) => x.kernels <= 16)) {
      const m = memoryModel(r.graph);
      const best = bruteForce(m, 100_000);
      if (best === undefined) continue;
      expect(r.rewritten, r.name).toBe(best);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(3);
  });

  it("places no two buffers live at the same time over each other, some by the depth-first search", () => {
    // An output written over an input of another size (a 1×1 convolution in place changing the
    // channel count) lies at the input's offset or with its end at the input's end.
    const resized = { at: 0, ends: 0 };
    for (const r of rows) {
      const m = memoryModel(r.graph);
      const sim = simulate(m, m.kernels.map((_, k) => k));
      const offsets = r.graph.memory.offsets;
      const span = m.buffers.map((b, i) => ({ i, at: offsets[b.value], bytes: b.bytes, life: sim.life.get(i)! }));
      for (const p of span)
        for (const q of span) {
          if (p.i >= q.i || p.life[1] < q.life[0] || q.life[1] < p.life[0] || sim.reuse.get(q.i) === p.i || sim.reuse.get(p.i) === q.i) continue;
          expect(p.at + p.bytes <= q.at || q.at + q.bytes <= p.at, `${r.name}: ${m.buffers[p.i].value} and ${m.buffers[q.i].value}`).toBe(true);
        }
      for (const [o, i] of sim.reuse) {
        if (span[o].bytes === span[i].bytes) continue;
        expect([span[i].at, span[i].at + span[i].bytes - span[o].bytes], `${r.name}: ${m.buffers[o].value} over ${m.buffers[i].value}`).toContain(span[o].at);
        resized[span[o].at === span[i].at ? "at" : "ends"]++;
      }
    }
    expect(rows.some((r) => r.graph.memory.strategy.includes("depth-first"))).toBe(true);
    expect(resized.at).toBeGreaterThan(0);
    expect(resized.ends).toBeGreaterThan(0);
  });

  it("lowers the peak on the suite as a whole, and rewriting lowers it further on some networks", () => {
    expect(rows.length).toBe(IRREGULAR_SUITE.length);
    const s = summary(rows);
    expect(s.dp).toBeGreaterThan(1.05);
    expect(s.rewritten).toBeGreaterThan(s.dp);
    expect(rows.some((r) => r.rewritten < r.dp)).toBe(true);
  });

  it("plans a branch passed over when the chosen one's plan misses its lower bound", () => {
    // Outside the suite (1 of 160 random networks): 1×1 convolutions in place changing the channel
    // count give it the lowest peak, 256 KiB, in blocks that no placement found fits in 256; the
    // arena was 272 KiB. Without them the peak is 272 KiB, and the plan reaches it. (No plan is
    // tried again past the scheduling time limit, which a loaded machine could reach here.)
    const r = memoryRow(swiftNet(1019, { cells: 2, minNodes: 10, maxNodes: 14, channels: 8, hw: 32 }), 60_000);
    expect(r.arena).toBe(r.lowerBound);
    expect(r.rewritten).toBe(r.lowerBound);
    expect(r.rewritten).toBeLessThan(r.topo);
  });
});

describe("memory planning on the corpus models", () => {
  const models = readdirSync(join(CORPUS, "models")).filter((d) => !d.includes("."));
  it.each(models)("%s: schedule no worse than graph order, arena within 5%% of the lower bound", (d) => {
    const g = runGraphPasses(importOnnx(join(CORPUS, "models", d, "model.onnx")).graph, {});
    expect(g.schedule.peakBytes).toBeLessThanOrEqual(g.schedule.topoPeakBytes);
    expect(g.memory.arenaBytes).toBeGreaterThanOrEqual(g.memory.lowerBoundBytes);
    expect(g.memory.arenaBytes).toBeLessThanOrEqual(1.05 * g.memory.lowerBoundBytes);
  });
});
