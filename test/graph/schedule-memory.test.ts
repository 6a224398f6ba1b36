import { describe, expect, it } from "vitest";
import { fromNumbers } from "../../src/core/tensor.js";
import type { Graph, Node, Value } from "../../src/graph/ir.js";
import { memoryModel, simulate, type MemoryModel } from "../../src/graph/memory.js";
import { inferShapes } from "../../src/graph/passes/infer-shapes.js";
import { scheduleMemory } from "../../src/graph/passes/schedule-memory.js";
import { verifyGraph } from "../../src/graph/verify.js";
import { rng } from "../helpers/random-onnx.js";

const AXES = "axes_last";
const n = (op: string, inputs: string[], o: string, attrs: Node["attrs"] = {}): Node => ({ name: o, op, opset: 18, inputs, outputs: [o], attrs });

function graph(nodes: Node[], inputShape: number[], outputs = [nodes[nodes.length - 1].outputs[0]]): Graph {
  const names = new Set(nodes.flatMap((x) => [...x.inputs, ...x.outputs]));
  const values = new Map<string, Value>([...names].map((v) => [v, { name: v, dtype: "float32" as const, shape: v === "x" ? inputShape : undefined }]));
  values.set(AXES, { name: AXES, dtype: "int64", shape: [1], data: fromNumbers("int64", [1], [-1]) });
  return inferShapes({ name: "g", values, nodes, inputs: ["x"], outputs });
}

/** Every topological order of the model's kernels, for graphs small enough to enumerate. */
function* orders(m: MemoryModel, prefix: number[] = [], done = new Set<number>()): Generator<number[]> {
  if (prefix.length === m.kernels.length) yield [...prefix];
  for (let k = 0; k < m.kernels.length; k++) {
    if (done.has(k) || !m.preds[k].every((p) => done.has(p))) continue;
    done.add(k);
    prefix.push(k);
    yield* orders(m, prefix, done);
    prefix.pop();
    done.delete(k);
  }
}

const kernelOrder = (g: Graph) => g.nodes.filter((x) => x.op !== "View").map((x) => x.name);

/**
 * A random DAG of up to `size` kernels over [1, C·w] tensors: Relu (in place), Add, Concat (grows),
 * ReduceSum over the last axis (shrinks), Softmax, so values differ in size and orders in peak; and
 * with `views`, ConcatViews, whose buffer several kernels write, each its own slice.
 */
function randomGraph(seed: number, size: number, views = false): Graph {
  const r = rng(seed);
  const nodes: Node[] = [];
  const avail: { name: string; w: number }[] = [{ name: "x", w: 64 }];
  /** kernel outputs that may still become a ConcatView's slice */
  const sliceable: { name: string; w: number }[] = [];
  const sliced = new Set<string>();
  for (let i = 0; i < size; i++) {
    const a = r.pick(avail);
    const o = `v${i}`;
    const kind = r.int(0, views ? 5 : 4);
    const same = avail.filter((v) => v.w === a.w && v !== a);
    // A ConcatView adds no kernel: a Softmax (the last branch below) still follows it.
    if (kind === 5 && sliceable.length >= 2) {
      const ins = r.shuffle([...sliceable]).slice(0, 2);
      for (const v of ins) sliceable.splice(sliceable.indexOf(v), 1), sliced.add(v.name);
      nodes.push(n("ConcatView", ins.map((v) => v.name), `cv${i}`, { axis: 1 }));
      avail.push({ name: `cv${i}`, w: ins[0].w + ins[1].w });
    }
    if (kind === 0 || (kind === 1 && !same.length)) {
      nodes.push(n("Relu", [a.name], o));
      avail.push({ name: o, w: a.w });
    } else if (kind === 1) {
      nodes.push(n("Add", [a.name, r.pick(same).name], o));
      avail.push({ name: o, w: a.w });
    } else if (kind === 2 && a.w < 512) {
      const b = r.pick(avail);
      nodes.push(n("Concat", [a.name, b.name], o, { axis: 1 }));
      avail.push({ name: o, w: a.w + b.w });
    } else if (kind === 3) {
      nodes.push(n("ReduceSum", [a.name, AXES], o, { keepdims: 1 }));
      avail.push({ name: o, w: 1 });
    } else {
      nodes.push(n("Softmax", [a.name], o, { axis: -1 }));
      avail.push({ name: o, w: a.w });
    }
    sliceable.push(avail[avail.length - 1]);
  }
  const used = new Set(nodes.flatMap((x) => x.inputs));
  const sinks = nodes.map((x) => x.outputs[0]).filter((v) => !used.has(v) && !sliced.has(v));
  return graph(nodes, [1, 64], sinks);
}

describe("scheduleMemory", () => {
  it("runs a branch to its small result before starting the next branch", () => {
    // Graph order: both wide branches first, so both are live at once; the better order finishes one.
    const g = graph(
      [
        n("Relu", ["x"], "a1"),
        n("Relu", ["x"], "b1"),
        n("ReduceSum", ["a1", AXES], "a2", { keepdims: 1 }),
        n("ReduceSum", ["b1", AXES], "b2", { keepdims: 1 }),
        n("Add", ["a2", "b2"], "y"),
      ],
      [1, 1000],
    );
    const s = scheduleMemory(g);
    expect(s.schedule.topoPeakBytes).toBe(2 * 4032 + 64);
    expect(s.schedule.peakBytes).toBe(4032 + 2 * 64);
    expect(s.schedule.optimal).toBe(true);
    expect(kernelOrder(s)).toEqual(["a1", "a2", "b1", "b2", "y"]);
    verifyGraph(s);
  });

  it("finds the optimum of every random graph small enough to enumerate, never worse than graph order", () => {
    let improved = 0, withViews = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const g = randomGraph(seed, 4 + (seed % 8), seed > 200);
      if (g.nodes.some((x) => x.op === "ConcatView")) withViews++;
      const m = memoryModel(g);
      let best = Infinity;
      for (const o of orders(m)) best = Math.min(best, simulate(m, o).peak);
      const s = scheduleMemory(g);
      verifyGraph(s);
      expect(s.schedule.optimal).toBe(true);
      expect(s.schedule.peakBytes, `seed ${seed}`).toBe(best);
      expect(s.schedule.peakBytes).toBeLessThanOrEqual(s.schedule.topoPeakBytes);
      // The reported peak is the peak of the order the graph now has.
      const after = memoryModel(s);
      expect(simulate(after, after.kernels.map((_, k) => k)).peak).toBe(best);
      if (best < s.schedule.topoPeakBytes) improved++;
    }
    expect(improved).toBeGreaterThan(5);
    expect(withViews).toBeGreaterThan(50);
  });

  it("keeps each View right after the kernel it aliases", () => {
    const g = graph([n("Relu", ["x"], "a"), n("Relu", ["x"], "b"), n("Add", ["a", "b"], "y")], [2, 8]);
    const withView: Graph = {
      ...g,
      nodes: [g.nodes[0], { name: "va", op: "View", opset: 13, inputs: ["a"], outputs: ["a_v"], attrs: { shape: [2, 8] } }, g.nodes[1], { ...g.nodes[2], inputs: ["a_v", "b"] }],
      values: new Map([...g.values, ["a_v", { name: "a_v", dtype: "float32", shape: [2, 8] }]]),
    };
    const s = scheduleMemory(withView);
    verifyGraph(s);
    const names = s.nodes.map((x) => x.name);
    expect(names.indexOf("va")).toBe(names.indexOf("a") + 1);
  });

  it("with no time left, keeps the better heuristic order, valid and no worse than graph order, not claimed optimal", () => {
    // 60 independent Relu → ReduceSum → Softmax branches; in graph order all 60 wide Relus are live at once.
    const nodes: Node[] = [];
    for (let i = 0; i < 60; i++) nodes.push(n("Relu", ["x"], `r${i}`), n("ReduceSum", [`r${i}`, AXES], `s${i}`, { keepdims: 1 }));
    for (let i = 0; i < 60; i++) nodes.push(n("Softmax", [`s${i}`], `y${i}`));
    const g = graph(nodes, [1, 256], nodes.slice(120).map((x) => x.outputs[0]));
    const s = scheduleMemory(g, { timeLimitMs: 0 });
    verifyGraph(s);
    expect(s.schedule.optimal).toBe(false);
    expect(s.schedule.peakBytes).toBeLessThan(s.schedule.topoPeakBytes);
  });
});
