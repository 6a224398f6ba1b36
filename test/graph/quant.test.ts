import { describe, expect, it } from "vitest";
import { fromNumbers, toNumbers, type Tensor } from "../../src/core/tensor.js";
import type { AttrValue, Node, Value } from "../../src/graph/ir.js";
import { QUANT_OPS } from "../../src/graph/ops/quant.js";

/** QuantizeLinear / DequantizeLinear reference semantics and the integer kernels' shape rules. */
const node = (op: string, attrs: Record<string, AttrValue> = {}): Node => ({ name: "n", op, opset: 21, inputs: [], outputs: ["y"], attrs });
const run = (op: string, attrs: Record<string, AttrValue>, ins: (Tensor | undefined)[]) => QUANT_OPS[op].eval!(node(op, attrs), ins)[0];
const val = (shape: number[], dtype: Value["dtype"] = "uint8"): Value => ({ name: "v", dtype, shape });

describe("QuantizeLinear", () => {
  it("rounds half to even, adds the zero point and saturates", () => {
    const x = fromNumbers("float32", [8], [0.5, 1.5, 2.5, -0.5, -1.5, 300, -300, 3.2]);
    const y = run("QuantizeLinear", {}, [x, fromNumbers("float32", [], [1]), fromNumbers("uint8", [], [10])]);
    expect(y.dtype).toBe("uint8");
    expect(toNumbers(y)).toEqual([10, 12, 12, 10, 8, 255, 0, 13]);
  });

  it("per axis, into int8 from output_dtype when there is no zero point", () => {
    const x = fromNumbers("float32", [2, 2], [1, 1, 1, 1]);
    const y = run("QuantizeLinear", { axis: 1, output_dtype: 3 }, [x, fromNumbers("float32", [2], [0.5, 0.25]), undefined]);
    expect(y.dtype).toBe("int8");
    expect(toNumbers(y)).toEqual([2, 4, 2, 4]);
  });

  it("blocked scales", () => {
    const x = fromNumbers("float32", [1, 4], [1, 1, 1, 1]);
    const y = run("QuantizeLinear", { axis: 1, block_size: 2 }, [x, fromNumbers("float32", [1, 2], [1, 0.5]), undefined]);
    expect(toNumbers(y)).toEqual([1, 1, 2, 2]);
  });
});

describe("DequantizeLinear", () => {
  it("(x - zero_point) * scale per axis", () => {
    const x = fromNumbers("int8", [2, 2], [-128, 0, 10, 127]);
    const y = run("DequantizeLinear", { axis: 0 }, [x, fromNumbers("float32", [2], [0.5, 2]), fromNumbers("int8", [2], [0, -1])]);
    expect(toNumbers(y)).toEqual([-64, 0, 22, 256]);
  });
});

describe("integer kernel shapes", () => {
  it("MatMulInteger broadcasts batch dims and outputs int32", () => {
    const out = QUANT_OPS.MatMulInteger.infer(node("MatMulInteger"), [val([2, 1, 3, 4]), val([5, 4, 6]), undefined, val([6])])!;
    expect(out[0]).toEqual({ dtype: "int32", shape: [2, 5, 3, 6] });
  });

  it("ConvInteger allows one w zero point per output channel, not any other count", () => {
    const conv = (wzp: number[]) => QUANT_OPS.ConvInteger.infer(node("ConvInteger", { pads: [1, 1, 1, 1] }), [val([1, 1, 3, 3]), val([2, 1, 2, 2]), val([]), val(wzp)]);
    expect(conv([2])![0].shape).toEqual([1, 2, 4, 4]);
    expect(() => conv([3])).toThrow(/output channel/);
  });
});
