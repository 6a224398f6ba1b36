import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { fromNumbers, toNumbers } from "../../src/core/tensor.js";
import { bytesMoved } from "../../src/graph/cost.js";
import { compileModel, runGraphPasses } from "../../src/driver/pipeline.js";
import { importOnnx } from "../../src/frontend/onnx/import.js";
import { onnx } from "../../src/frontend/onnx/proto.js";
import { interpret } from "../../src/graph/interp.js";
import type { Graph, Node, Value } from "../../src/graph/ir.js";
import { ELEMENTWISE_OPS } from "../../src/graph/ops/elementwise.js";
import { eliminateIdentity } from "../../src/graph/passes/eliminate-identity.js";
import { foldBatchnorm } from "../../src/graph/passes/fold-batchnorm.js";
import { fuse } from "../../src/graph/passes/fuse.js";
import { inferShapes } from "../../src/graph/passes/infer-shapes.js";
import { selectFusion } from "../../src/graph/passes/select-fusion.js";
import { verifyGraph } from "../../src/graph/verify.js";
import { AT } from "../../src/loop/lower/index.js";
import { loadTarget } from "../../src/target/load.js";
import { CORPUS } from "../conformance/suite.js";

const node = (op: string, inputs: string[], outputs: string[], attrs: Node["attrs"] = {}): Node => ({ name: outputs[0], op, opset: 17, inputs, outputs, attrs });

/** A graph from nodes; `consts` maps constant names to [shape, values]; input x has `shape`. */
function graph(nodes: Node[], shape: number[], consts: Record<string, [number[], number[]]> = {}, outputs?: string[]): Graph {
  const values = new Map<string, Value>();
  for (const n of nodes) for (const v of [...n.inputs, ...n.outputs]) if (v) values.set(v, { name: v, dtype: "float32" });
  values.set("x", { name: "x", dtype: "float32", shape });
  for (const [k, [s, d]] of Object.entries(consts)) values.set(k, { name: k, dtype: "float32", shape: s, data: fromNumbers("float32", s, d) });
  return inferShapes({ name: "g", values, nodes, inputs: ["x"], outputs: outputs ?? [nodes[nodes.length - 1].outputs[0]] });
}

const ramp = (n: number, scale = 0.1) => Array.from({ length: n }, (_, i) => ((i * 7) % 13) * scale - 0.6);

describe("fuse", () => {
  it("gives a Conv the chain Relu → Add(residual) → Relu as an epilogue: one kernel", () => {
    const g = graph(
      [node("Conv", ["x", "w"], ["c"], { pads: [1, 1, 1, 1] }), node("Relu", ["c"], ["r"]), node("Add", ["r", "x"], ["a"]), node("Relu", ["a"], ["y"])],
      [1, 2, 4, 4],
      { w: [[2, 2, 3, 3], ramp(36)] },
    );
    const f = fuse(g);
    expect(f.nodes.map((n) => n.op)).toEqual(["Fused"]);
    expect(f.nodes[0].fused!.anchor).toBe("c");
    // Relu and Add are inlined into the last Relu, which is the Conv's epilogue.
    expect(f.nodes[0].fused!.epilogue).toEqual(["y"]);
    expect(f.nodes[0].fused!.body.map((n) => n.op)).toEqual(["Conv", "Relu", "Add", "Relu"]);
    expect(f.nodes[0].fused!.reason).toBe("Conv kernel, epilogue [Relu, Add, Relu]");
    expect(f.nodes[0].inputs.sort()).toEqual(["w", "x"]);
    verifyGraph(f);
    const x = fromNumbers("float32", [1, 2, 4, 4], ramp(32, 0.2));
    expect(toNumbers(interpret(f, { x }).y)).toEqual(toNumbers(interpret(g, { x }).y));
  });

  it("inlines elementwise producers into a reduction and a whole elementwise chain into one kernel", () => {
    // variance-like: ReduceMean((x - 1)^2) then Sqrt → Mul
    const g = graph(
      [
        node("Sub", ["x", "one"], ["d"]),
        node("Mul", ["d", "d"], ["sq"]),
        node("ReduceMean", ["sq", "axes"], ["m"], { keepdims: 1 }),
        node("Sqrt", ["m"], ["s"]),
        node("Mul", ["s", "two"], ["y"]),
      ],
      [2, 8],
      { one: [[1], [1]], two: [[1], [2]] },
    );
    g.values.set("axes", { name: "axes", dtype: "int64", shape: [1], data: fromNumbers("int64", [1], [1]) });
    const decision = selectFusion(inferShapes(g));
    expect(decision.groups).toHaveLength(1);
    expect(decision.groups[0].reason).toMatch(/ReduceMean kernel, inlined producers \[Sub, Mul\], epilogue \[Sqrt, Mul\]/);
  });

  it("turns Reshape-like ops into views and keeps a value read by a view in memory", () => {
    const g = graph([node("Relu", ["x"], ["r"]), node("Flatten", ["r"], ["f"], { axis: 1 }), node("Sigmoid", ["f"], ["y"])], [1, 3, 2, 2]);
    const f = fuse(g);
    expect(f.nodes.map((n) => n.op)).toEqual(["Relu", "View", "Sigmoid"]);
    expect(f.nodes[1].attrs.shape).toEqual([1, 12]);
    expect(bytesMoved(f)).toBe(2 * 2 * 48);
  });

  it("inlines only index-only producers into a kernel that reads each element many times", () => {
    const conv = (input: string) => node("Conv", [input, "w"], ["y"]);
    const w: Record<string, [number[], number[]]> = { w: [[1, 1, 2, 2], [1, 2, 3, 4]] };
    const transposed = fuse(graph([node("Transpose", ["x"], ["t"], { perm: [0, 1, 3, 2] }), conv("t")], [1, 1, 3, 3], w));
    expect(transposed.nodes.map((n) => n.op)).toEqual(["Fused"]);
    expect(transposed.nodes[0].fused!.reason).toBe("Conv kernel, inlined producers [Transpose]");
    const activated = fuse(graph([node("Sigmoid", ["x"], ["t"]), conv("t")], [1, 1, 3, 3], w));
    expect(activated.nodes.map((n) => n.op)).toEqual(["Sigmoid", "Conv"]);
  });

  it("has an expression form in the loop layer for every op it may inline", () => {
    for (const op of [...Object.keys(ELEMENTWISE_OPS), "Transpose", "Slice", "Expand", "Tile", "Gather", "Concat", "Pad"]) expect(AT[op], op).toBeDefined();
  });
});

describe("foldBatchnorm and eliminateIdentity", () => {
  it("folds BatchNormalization into the Conv before it without changing results", () => {
    const g = graph(
      [node("Conv", ["x", "w", "b"], ["c"]), node("BatchNormalization", ["c", "s", "bb", "mu", "var"], ["y"], { epsilon: 1e-3 })],
      [1, 2, 3, 3],
      { w: [[2, 2, 1, 1], [1, -2, 0.5, 3]], b: [[2], [0.1, -0.2]], s: [[2], [1.5, 0.5]], bb: [[2], [0.3, -1]], mu: [[2], [0.2, 0.4]], var: [[2], [2, 0.25]] },
    );
    const f = foldBatchnorm(g);
    expect(f.nodes.map((n) => n.op)).toEqual(["Conv"]);
    const x = fromNumbers("float32", [1, 2, 3, 3], ramp(18, 0.3));
    const [a, b] = [interpret(g, { x }).y, interpret(f, { x }).y].map(toNumbers);
    a.forEach((v, i) => expect(b[i]).toBeCloseTo(v, 5));
  });

  it("removes Identity and mask-free Dropout but keeps one that produces a graph output", () => {
    const g = graph([node("Identity", ["x"], ["i"]), node("Dropout", ["i"], ["d"]), node("Relu", ["d"], ["r"]), node("Identity", ["r"], ["y"])], [4]);
    const f = eliminateIdentity(g);
    expect(f.nodes.map((n) => n.op)).toEqual(["Relu", "Identity"]);
    expect(f.nodes[0].inputs).toEqual(["x"]);
  });
});

/** onnxruntime's own optimized graph, saved at the highest level: the node count to beat. */
async function ortOptimizedNodes(model: string, dir: string): Promise<number> {
  const out = join(dir, "opt.onnx");
  await ort.InferenceSession.create(model, { graphOptimizationLevel: "all", optimizedModelFilePath: out, logSeverityLevel: 3 });
  return onnx.ModelProto.decode(readFileSync(out)).graph!.node!.length;
}

describe("fusion on the corpus models", () => {
  const work = mkdtempSync(join(tmpdir(), "edgec-fuse-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  for (const m of ["dscnn_kws", "mobilenet_v2_w035_c10_96", "squeezenet1_1_c10_64", "tiny_transformer_encoder"]) {
    it(`${m}: no more kernels than onnxruntime's optimized graph has nodes, and at least 40% less traffic than unfused`, async () => {
      const model = join(CORPUS, "models", m, "model.onnx");
      const target = loadTarget("host");
      const fused = compileModel(model, { target });
      const unfused = compileModel(model, { target, fuse: false });
      const ortNodes = await ortOptimizedNodes(model, work);
      expect(fused.program.kernels.length).toBeLessThanOrEqual(ortNodes);
      expect(fused.program.kernels.length).toBeLessThan(unfused.program.kernels.length);
      const g = importOnnx(model, {}).graph;
      expect(bytesMoved(runGraphPasses(g, {}))).toBeLessThanOrEqual(0.6 * bytesMoved(runGraphPasses(g, { fuse: false })));
    });
  }
});
