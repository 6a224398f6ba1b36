import { afterEach, describe, expect, test } from "vitest";
import { EdgecError } from "../../src/core/diag.js";
import type { Tensor } from "../../src/core/tensor.js";
import { importOnnx, type ImportOptions } from "../../src/frontend/onnx/import.js";
import { onnx, type OnnxNs } from "../../src/frontend/onnx/proto.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo, type ModelSpec } from "../helpers/onnx-builder.js";

let cleanups: (() => void)[] = [];
afterEach(() => {
  cleanups.forEach((c) => c());
  cleanups = [];
});

/** Writes the model into a fresh temp dir (plus any side files) and imports it. */
function load(spec: ModelSpec, opts?: ImportOptions, side: Record<string, Uint8Array> = {}) {
  const d = tempDir();
  cleanups.push(d.cleanup);
  for (const [name, bytes] of Object.entries(side)) d.write(name, bytes);
  return importOnnx(d.write("model.onnx", modelBytes(spec)), opts);
}

/** A graph whose outputs are exactly the given initializers. */
function initializers(...inits: OnnxNs.ITensorProto[]) {
  const g = load({ initializers: inits, outputs: inits.map((t) => valueInfo(t.name!, t.dataType!)) }).graph;
  return (name: string) => g.values.get(name)!.data!;
}

function importError(spec: ModelSpec, opts?: ImportOptions): string {
  try {
    load(spec, opts);
  } catch (e) {
    expect(e).toBeInstanceOf(EdgecError);
    return (e as Error).message;
  }
  throw new Error("expected the import to fail");
}

const values = (t: Tensor) => [...t.data];
const le = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe("initializer encodings", () => {
  test("raw_data in several dtypes", () => {
    const get = initializers(
      tensorProto("f", T.FLOAT, [2, 2], { rawData: le(new Float32Array([1.5, -2, 3.25, 0])) }),
      tensorProto("d", T.DOUBLE, [2], { rawData: le(new Float64Array([1e-300, -7])) }),
      tensorProto("i", T.INT64, [3], { rawData: le(new BigInt64Array([-1n, 9007199254740993n, 0x7fffffffffffffffn])) }),
      tensorProto("b", T.BOOL, [3], { rawData: new Uint8Array([1, 0, 1]) }),
      tensorProto("h", T.FLOAT16, [2], { rawData: le(new Uint16Array([0x3c00, 0xc000])) }),
    );
    expect(get("f")).toMatchObject({ dtype: "float32", shape: [2, 2] });
    expect(values(get("f"))).toEqual([1.5, -2, 3.25, 0]);
    expect(values(get("d"))).toEqual([1e-300, -7]);
    expect(values(get("i"))).toEqual([-1n, 9007199254740993n, 0x7fffffffffffffffn]);
    expect(values(get("b"))).toEqual([1, 0, 1]);
    expect(values(get("h"))).toEqual([0x3c00, 0xc000]);
  });

  test("typed fields: float_data, int32_data (int8/uint8/bool/float16/int32), int64_data, double_data, uint64_data", () => {
    const get = initializers(
      tensorProto("f", T.FLOAT, [3], { floatData: [0.5, -1, 2] }),
      tensorProto("i8", T.INT8, [3], { int32Data: [-128, -1, 127] }),
      tensorProto("u8", T.UINT8, [3], { int32Data: [0, 128, 255] }),
      tensorProto("b", T.BOOL, [2], { int32Data: [1, 0] }),
      tensorProto("h", T.FLOAT16, [3], { int32Data: [0x3c00, 0xc000, 0x7c00] }),
      tensorProto("i32", T.INT32, [2], { int32Data: [-2147483648, 7] }),
      tensorProto("i64", T.INT64, [3], { int64Data: ["-9223372036854775808", 42, "9007199254740993"] as never }),
      tensorProto("f64", T.DOUBLE, [2], { doubleData: [Math.PI, -0.25] }),
      tensorProto("u64", T.UINT64, [2], { uint64Data: ["18446744073709551615", 3] as never }),
      tensorProto("u32", T.UINT32, [2], { uint64Data: [4294967295, 1] }),
      tensorProto("s", T.FLOAT, [], { floatData: [9] }),
    );
    expect(values(get("f"))).toEqual([0.5, -1, 2]);
    expect(get("i8")).toMatchObject({ dtype: "int8" });
    expect(values(get("i8"))).toEqual([-128, -1, 127]);
    expect(values(get("u8"))).toEqual([0, 128, 255]);
    expect(get("b").dtype).toBe("bool");
    expect(values(get("b"))).toEqual([1, 0]);
    expect(get("h").dtype).toBe("float16");
    expect(values(get("h"))).toEqual([0x3c00, 0xc000, 0x7c00]);
    expect(values(get("i32"))).toEqual([-2147483648, 7]);
    expect(values(get("i64"))).toEqual([-9223372036854775808n, 42n, 9007199254740993n]);
    expect(values(get("f64"))).toEqual([Math.PI, -0.25]);
    expect(values(get("u64"))).toEqual([18446744073709551615n, 3n]);
    expect(values(get("u32"))).toEqual([4294967295, 1]);
    expect(get("s")).toMatchObject({ shape: [] });
    expect(values(get("s"))).toEqual([9]);
  });

  test("external data with location, offset and length next to the model", () => {
    const bin = new Uint8Array(64);
    bin.set(le(new Float32Array([1, 2, 3, 4, 5, 6])), 8);
    bin.set(le(new BigInt64Array([-5n, 6n])), 40);
    const ext = (kv: Record<string, string>): Partial<OnnxNs.ITensorProto> => ({
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: Object.entries(kv).map(([key, value]) => ({ key, value })),
    });
    const inits = [
      tensorProto("w", T.FLOAT, [2, 3], ext({ location: "weights.bin", offset: "8", length: "24" })),
      tensorProto("k", T.INT64, [2], ext({ location: "weights.bin", offset: "40" })),
    ];
    const g = load({ initializers: inits, outputs: [valueInfo("w", T.FLOAT), valueInfo("k", T.INT64)] }, {}, { "weights.bin": bin }).graph;
    expect(g.values.get("w")!.data).toMatchObject({ dtype: "float32", shape: [2, 3] });
    expect(values(g.values.get("w")!.data!)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(values(g.values.get("k")!.data!)).toEqual([-5n, 6n]);
  });

  test("external data that is missing or too short is a clear error", () => {
    const ext = { dataLocation: onnx.TensorProto.DataLocation.EXTERNAL, externalData: [{ key: "location", value: "gone.bin" }] };
    expect(importError({ initializers: [tensorProto("w", T.FLOAT, [2], ext)], outputs: [valueInfo("w", T.FLOAT)] })).toMatch(/external data file .*gone\.bin.* of tensor 'w' cannot be read/);
    const short = { ...ext, externalData: [{ key: "location", value: "short.bin" }] };
    const d = tempDir();
    cleanups.push(d.cleanup);
    d.write("short.bin", new Uint8Array(4));
    const file = d.write("model.onnx", modelBytes({ initializers: [tensorProto("w", T.FLOAT, [2], short)], outputs: [valueInfo("w", T.FLOAT)] }));
    expect(() => importOnnx(file)).toThrow(/tensor 'w' holds 4 bytes, its shape \[2\] needs 8/);
  });

  test("a wrong element count is a clear error", () => {
    expect(importError({ initializers: [tensorProto("w", T.FLOAT, [2, 2], { floatData: [1, 2, 3] })], outputs: [valueInfo("w", T.FLOAT)] })).toMatch(
      /tensor 'w' has 3 values, its shape \[2x2\] needs 4/,
    );
  });
});

describe("Constant nodes", () => {
  test("value, value_float, value_floats, value_int, value_ints become constant values", () => {
    const g = load({
      nodes: [
        node("Constant", [], ["t"], [attr.t("value", tensorProto("", T.INT32, [2], { int32Data: [3, -4] }))]),
        node("Constant", [], ["f"], [attr.f("value_float", 0.5)]),
        node("Constant", [], ["fs"], [attr.floats("value_floats", [1, 2.5])]),
        node("Constant", [], ["i"], [attr.i("value_int", 7)]),
        node("Constant", [], ["is"], [attr.ints("value_ints", [1, -2, 9223372036854775807n, -9223372036854775808n])]),
      ],
      outputs: ["t", "f", "fs", "i", "is"].map((n) => valueInfo(n, T.FLOAT)),
    }).graph;
    const c = (n: string) => g.values.get(n)!.data!;
    expect(g.nodes).toHaveLength(0);
    expect(c("t")).toMatchObject({ dtype: "int32", shape: [2] });
    expect(values(c("t"))).toEqual([3, -4]);
    expect(c("f")).toMatchObject({ dtype: "float32", shape: [] });
    expect(values(c("f"))).toEqual([0.5]);
    expect(c("fs")).toMatchObject({ dtype: "float32", shape: [2] });
    expect(values(c("fs"))).toEqual([1, 2.5]);
    expect(c("i")).toMatchObject({ dtype: "int64", shape: [] });
    expect(values(c("i"))).toEqual([7n]);
    expect(c("is")).toMatchObject({ dtype: "int64", shape: [4] });
    expect(values(c("is"))).toEqual([1n, -2n, 9223372036854775807n, -9223372036854775808n]);
  });

  test("a Constant whose tensor value lives in external data", () => {
    const value = tensorProto("", T.FLOAT, [2], {
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [{ key: "location", value: "c.bin" }],
    });
    const spec = { nodes: [node("Constant", [], ["c"], [attr.t("value", value)])], outputs: [valueInfo("c", T.FLOAT)] };
    const g = load(spec, {}, { "c.bin": le(new Float32Array([4, -4])) }).graph;
    expect(values(g.values.get("c")!.data!)).toEqual([4, -4]);
  });

  test("a string Constant is a clear error", () => {
    expect(importError({ nodes: [node("Constant", [], ["s"], [attr.s("value_string", "hi")], "cs")], outputs: [valueInfo("s", T.STRING)] })).toMatch(
      /Constant node 'cs' has no value edgec can read/,
    );
  });
});

describe("graph inputs", () => {
  const relu = (x: OnnxNs.IValueInfoProto, extra: Partial<ModelSpec> = {}): ModelSpec => ({
    nodes: [node("Relu", ["x"], ["y"])],
    inputs: [x],
    outputs: [valueInfo("y", T.FLOAT)],
    ...extra,
  });

  test("initializers also listed as graph inputs are constants, not inputs", () => {
    const spec = relu(valueInfo("x", T.FLOAT, [2]), {
      nodes: [node("Add", ["x", "b"], ["y"])],
      inputs: [valueInfo("x", T.FLOAT, [2]), valueInfo("b", T.FLOAT, [2])],
      initializers: [tensorProto("b", T.FLOAT, [2], { floatData: [1, 2] })],
    });
    const { graph } = load(spec);
    expect(graph.inputs).toEqual(["x"]);
    expect(values(graph.values.get("b")!.data!)).toEqual([1, 2]);
  });

  test("--input-shape pins symbolic dims", () => {
    const { graph } = load(relu(valueInfo("x", T.FLOAT, ["N", 3, "W"])), { inputShapes: { x: [2, 3, 5] } });
    expect(graph.values.get("x")!.shape).toEqual([2, 3, 5]);
  });

  test("symbolic dims without --input-shape are a clear error", () => {
    expect(importError(relu(valueInfo("x", T.FLOAT, ["N", 3])))).toMatch(/input 'x' \[Nx3\] has symbolic or unknown dims; pin them with --input-shape/);
  });

  test("--input-shape with a wrong rank is a clear error", () => {
    expect(importError(relu(valueInfo("x", T.FLOAT, ["N", 3])), { inputShapes: { x: [1, 3, 4] } })).toMatch(
      /--input-shape x=1x3x4 has rank 3, the model's input has rank 2 \[Nx3\]/,
    );
  });

  test("--input-shape against a fixed dim is a clear error", () => {
    expect(importError(relu(valueInfo("x", T.FLOAT, ["N", 3])), { inputShapes: { x: [1, 4] } })).toMatch(
      /--input-shape x=1x4 does not match the model's fixed shape \[Nx3\] at dim 1/,
    );
  });

  test("--input-shape naming no input is a clear error", () => {
    expect(importError(relu(valueInfo("x", T.FLOAT, [3])), { inputShapes: { z: [3] } })).toMatch(/--input-shape names 'z', but the model's inputs are 'x'/);
  });
});

describe("versions", () => {
  const ok = (irVersion: number, opset: number): ModelSpec => ({
    nodes: [node("Relu", ["x"], ["y"])],
    inputs: [valueInfo("x", T.FLOAT, [2])],
    outputs: [valueInfo("y", T.FLOAT)],
    irVersion,
    opset,
  });

  test("IR version 13 with opset 25 is accepted", () => {
    expect(load(ok(13, 25))).toMatchObject({ irVersion: 13, opset: 25 });
  });

  test("IR version 14 is rejected", () => {
    expect(importError(ok(14, 25))).toMatch(/ONNX IR version 14 is not supported \(edgec reads IR versions 1 to 13\)/);
  });

  test("opset 26 is rejected", () => {
    expect(importError(ok(13, 26))).toMatch(/default-domain opset 26 is not supported \(edgec reads opsets 1 to 25\)/);
  });

  test("no opset import at IR version 3 or later is rejected (a file cut before its opset_import)", () => {
    expect(importError({ ...ok(8, 13), opset: null })).toMatch(/not a valid ONNX model \(IR version 8 requires opset imports and it has none\)/);
  });
});

describe("normalization", () => {
  test("Cast's `to` becomes a DType, from the enum (opset 6+) and from Cast-1's type name", () => {
    const cast = (to: OnnxNs.IAttributeProto, opset: number) =>
      load({ nodes: [node("Cast", ["x"], ["y"], [to])], inputs: [valueInfo("x", T.FLOAT, [2])], outputs: [valueInfo("y", T.INT32)], opset }).graph.nodes[0].attrs.to;
    expect(cast(attr.i("to", T.INT32), 13)).toBe("int32");
    expect(cast(attr.s("to", "INT32"), 1)).toBe("int32");
    expect(() => cast(attr.i("to", T.STRING), 13)).toThrow(/cast to STRING is not supported/);
  });
});

describe("unsupported ops", () => {
  test("every unsupported op is named in one error with its node and opset", () => {
    const msg = importError({
      nodes: [node("FooBar", ["x"], ["a"], [], "first"), node("Relu", ["a"], ["b"]), node("Bazz", ["b"], ["y"], [], "second")],
      inputs: [valueInfo("x", T.FLOAT, [2])],
      outputs: [valueInfo("y", T.FLOAT)],
      opset: 17,
    });
    expect(msg).toMatch(/2 unsupported ops: FooBar \(opset 17\) at node 'first'; Bazz \(opset 17\) at node 'second'/);
  });
});
