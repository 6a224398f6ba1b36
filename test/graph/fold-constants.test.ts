import { describe, expect, it } from "vitest";
import { fromNumbers, toNumbers } from "../../src/core/tensor.js";
import type { Graph, Node, Value } from "../../src/graph/ir.js";
import { interpret } from "../../src/graph/interp.js";
import { runGraphPasses } from "../../src/driver/pipeline.js";
import { foldConstants } from "../../src/graph/passes/fold-constants.js";
import { inferShapes } from "../../src/graph/passes/infer-shapes.js";
import { verifyGraph } from "../../src/graph/verify.js";

const node = (op: string, inputs: string[], outputs: string[], attrs: Node["attrs"] = {}): Node => ({ name: outputs[0], op, opset: 13, inputs, outputs, attrs });

/** y = Relu(Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))) : the PyTorch flatten idiom. */
function shapeChain(): Graph {
  const vals: Value[] = [
    { name: "x", dtype: "float32", shape: [2, 3, 4] },
    { name: "zero", dtype: "int64", shape: [], data: fromNumbers("int64", [], [0]) },
    { name: "axes0", dtype: "int64", shape: [1], data: fromNumbers("int64", [1], [0]) },
    { name: "minus1", dtype: "int64", shape: [1], data: fromNumbers("int64", [1], [-1]) },
    ...["s", "n", "n1", "shape", "r", "y"].map((name): Value => ({ name, dtype: "float32" })),
  ];
  return {
    name: "chain",
    values: new Map(vals.map((v) => [v.name, v])),
    inputs: ["x"],
    outputs: ["y"],
    nodes: [
      node("Shape", ["x"], ["s"]),
      node("Gather", ["s", "zero"], ["n"], { axis: 0 }),
      node("Unsqueeze", ["n", "axes0"], ["n1"]),
      node("Concat", ["n1", "minus1"], ["shape"], { axis: 0 }),
      node("Reshape", ["x", "shape"], ["r"]),
      node("Relu", ["r"], ["y"]),
    ],
  };
}

describe("foldConstants", () => {
  it("folds a Shape→Gather→Unsqueeze→Concat chain so Reshape gets a constant shape", () => {
    const g = runGraphPasses(shapeChain(), { fuse: false });
    expect(g.nodes.map((n) => n.op)).toEqual(["Reshape", "Relu"]);
    expect(toNumbers(g.values.get("shape")!.data!)).toEqual([2, -1]);
    expect(g.values.get("y")!.shape).toEqual([2, 12]);
    verifyGraph(g);
  });

  it("one round of inference alone cannot type the Reshape; folding unlocks it", () => {
    const once = inferShapes(shapeChain());
    expect(once.values.get("r")!.shape).toBeUndefined();
    const folded = foldConstants(once);
    expect(folded.nodes.length).toBeLessThan(once.nodes.length);
  });

  it("keeps the interpreter's results unchanged", () => {
    const before = shapeChain();
    const after = runGraphPasses(before, { fuse: false });
    const x = fromNumbers("float32", [2, 3, 4], Array.from({ length: 24 }, (_, i) => i - 12));
    const a = interpret(inferShapes(before), { x });
    const b = interpret(after, { x });
    expect(toNumbers(b.y)).toEqual(toNumbers(a.y));
    expect(b.y.shape).toEqual([2, 12]);
    expect(Math.min(...toNumbers(b.y))).toBe(0);
  });
});
