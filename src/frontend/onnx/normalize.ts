import { dtypeFromOnnx, ONNX_TYPE_NAMES } from "../../core/dtype.js";
import { fromNumbers } from "../../core/tensor.js";
import { attrNum, type Node, type Value } from "../../graph/ir.js";
import { opFail } from "../../graph/ops/types.js";

/**
 * Turns each opset's variant of an ONNX op into edgec's canonical form (the newest opset's, mostly):
 * attribute operands become constant inputs, Upsample becomes Resize, Cast's `to` becomes a DType.
 * `addConst` registers a new constant value and returns its name.
 */
type AddConst = (v: Omit<Value, "name">, hint: string) => string;
type Normalizer = (n: Node, addConst: AddConst) => Node;

const ints64 = (xs: number[]) => fromNumbers("int64", [xs.length], xs);
const f32 = (xs: number[]) => fromNumbers("float32", [xs.length], xs);

/** Moves attribute `attr` (when present) into input slot `slot` as an int64 or float32 constant. */
function attrToInput(attr: string, slot: number, kind: "int64" | "float32" = "int64", scalarValue = false): Normalizer {
  return (n, addConst) => {
    const a = n.attrs[attr];
    if (a === undefined) return n;
    const arr = Array.isArray(a) ? (a as number[]) : [a as number];
    const data = kind === "int64" ? ints64(arr) : f32(arr);
    if (scalarValue) data.shape = [];
    const inputs = [...n.inputs];
    while (inputs.length < slot) inputs.push("");
    inputs[slot] = addConst({ dtype: data.dtype, shape: data.shape, data }, `${n.name}_${attr}`);
    const attrs = { ...n.attrs };
    delete attrs[attr];
    return { ...n, inputs, attrs };
  };
}

const chain = (...fs: Normalizer[]): Normalizer => (n, c) => fs.reduce((m, f) => f(m, c), n);
const below = (opset: number, f: Normalizer): Normalizer => (n, c) => (n.opset < opset ? f(n, c) : n);

const REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare"];

export const NORMALIZE: Record<string, Normalizer> = {
  Squeeze: below(13, attrToInput("axes", 1)),
  Unsqueeze: below(13, attrToInput("axes", 1)),
  Split: below(13, attrToInput("split", 1)),
  Slice: below(10, chain(attrToInput("starts", 1), attrToInput("ends", 2), attrToInput("axes", 3))),
  Clip: below(11, chain(attrToInput("min", 1, "float32", true), attrToInput("max", 2, "float32", true))),
  Pad: below(11, (n, c) => {
    const renamed = n.attrs.paddings !== undefined ? { ...n, attrs: { ...n.attrs, pads: n.attrs.paddings } } : n;
    return chain(attrToInput("pads", 1), attrToInput("value", 2, "float32", true))(renamed, c);
  }),
  Reshape: below(5, attrToInput("shape", 1)),
  Upsample: (n, c) => {
    const m = n.opset < 9 ? attrToInput("scales", 1, "float32")(n, c) : n;
    const mode = m.attrs.mode === "linear" || m.attrs.mode === "bilinear" ? "linear" : "nearest";
    return {
      ...m,
      op: "Resize",
      inputs: [m.inputs[0], "", m.inputs[1]],
      attrs: { mode, coordinate_transformation_mode: "asymmetric", nearest_mode: "floor" },
    };
  },
  Resize: (n) =>
    n.opset < 11
      ? { ...n, inputs: [n.inputs[0], "", n.inputs[1]], attrs: { ...n.attrs, coordinate_transformation_mode: "asymmetric", nearest_mode: "floor" } }
      : n,
  Cast: (n) => {
    // Cast-1 names the type as a string ("FLOAT"); later opsets use the TensorProto.DataType number.
    const name = n.attrs.to;
    const code = typeof name === "string" ? Number(Object.keys(ONNX_TYPE_NAMES).find((k) => ONNX_TYPE_NAMES[Number(k)] === name.toUpperCase()) ?? 0) : attrNum(n, "to", 0);
    const to = dtypeFromOnnx(code);
    if (!to) opFail(n, `cast to ${ONNX_TYPE_NAMES[code] ?? code} is not supported`);
    return { ...n, attrs: { ...n.attrs, to: to! } };
  },
  Softmax: (n) => (n.opset < 13 ? { ...n, attrs: { axis: attrNum(n, "axis", 1), coerce2d: 1 } } : n),
  LogSoftmax: (n) => (n.opset < 13 ? { ...n, attrs: { axis: attrNum(n, "axis", 1), coerce2d: 1 } } : n),
  ...Object.fromEntries(REDUCE.map((op) => [op, below(op === "ReduceSum" ? 13 : 18, attrToInput("axes", 1))])),
};
