import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx, type OnnxNs } from "../../src/frontend/onnx/proto.js";

/**
 * Builds small ONNX ModelProto bytes in code, so tests need no model files. Field names follow
 * onnx-proto's camelCase spelling of onnx.proto; element types are TensorProto.DataType numbers.
 */
export const T = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, STRING: 8, BOOL: 9, FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13 } as const;

/** A graph input or output; a string dim is symbolic (dim_param). */
export function valueInfo(name: string, elemType: number, dims?: (number | string)[]): OnnxNs.IValueInfoProto {
  const shape = dims && { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) };
  return { name, type: { tensorType: { elemType, shape } } };
}

export function tensorProto(name: string, dataType: number, dims: number[], fields: OnnxNs.ITensorProto = {}): OnnxNs.ITensorProto {
  return { name, dataType, dims, ...fields };
}

const A = onnx.AttributeProto.AttributeType;
export const attr = {
  f: (name: string, f: number): OnnxNs.IAttributeProto => ({ name, type: A.FLOAT, f }),
  floats: (name: string, floats: number[]): OnnxNs.IAttributeProto => ({ name, type: A.FLOATS, floats }),
  i: (name: string, i: number | bigint): OnnxNs.IAttributeProto => ({ name, type: A.INT, i: longOf(i) }),
  ints: (name: string, ints: (number | bigint)[]): OnnxNs.IAttributeProto => ({ name, type: A.INTS, ints: ints.map(longOf) }),
  s: (name: string, s: string): OnnxNs.IAttributeProto => ({ name, type: A.STRING, s: Buffer.from(s) }),
  t: (name: string, t: OnnxNs.ITensorProto): OnnxNs.IAttributeProto => ({ name, type: A.TENSOR, t }),
};

/** int64 values beyond 2^53 travel as decimal strings, which protobufjs writes exactly. */
function longOf(x: number | bigint): number {
  return (typeof x === "bigint" ? x.toString() : x) as number;
}

export function node(opType: string, inputs: string[], outputs: string[], attribute: OnnxNs.IAttributeProto[] = [], name = ""): OnnxNs.INodeProto {
  return { opType, input: inputs, output: outputs, attribute, name };
}

export interface ModelSpec {
  nodes?: OnnxNs.INodeProto[];
  inputs?: OnnxNs.IValueInfoProto[];
  outputs: OnnxNs.IValueInfoProto[];
  initializers?: OnnxNs.ITensorProto[];
  irVersion?: number;
  /** default-domain opset; null writes no opset import at all */
  opset?: number | null;
}

export function modelBytes(s: ModelSpec): Uint8Array {
  const m = onnx.ModelProto.create({
    irVersion: s.irVersion ?? 8,
    producerName: "onnx-builder",
    opsetImport: s.opset === null ? [] : [{ domain: "", version: s.opset ?? 13 }],
    graph: { name: "g", node: s.nodes ?? [], input: s.inputs ?? [], output: s.outputs, initializer: s.initializers ?? [] },
  });
  return onnx.ModelProto.encode(m).finish();
}

/** A temp dir that the returned `cleanup` removes; `write` puts a file in it and returns its path. */
export function tempDir(prefix = "edgec-test-") {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    write: (name: string, bytes: Uint8Array | string) => {
      const file = join(dir, name);
      writeFileSync(file, bytes);
      return file;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
