import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { DTYPES, dtypeFromOnnx, ONNX_TYPE_NAMES, type DType, type TypedArray } from "../../core/dtype.js";
import { EdgecError } from "../../core/diag.js";
import { numel, zeros, type Tensor } from "../../core/tensor.js";
import { big, num, onnx, type OnnxNs } from "./proto.js";

/**
 * TensorProto and .npy ↔ Tensor. Handles every TensorProto encoding: raw_data (little-endian),
 * the typed *_data fields (float16/int8/bool bits packed in int32_data, uint32/uint64 in uint64_data)
 * and external data files resolved next to the model.
 */
export function tensorFromProto(p: OnnxNs.ITensorProto, where: string, modelDir?: string): Tensor {
  const code = p.dataType ?? 0;
  const dtype = dtypeFromOnnx(code);
  if (!dtype) throw new EdgecError(`${where}: tensor '${p.name ?? ""}' has data type ${ONNX_TYPE_NAMES[code] ?? code}, which edgec does not support`);
  const shape = (p.dims ?? []).map(num);
  const t = zeros(dtype, shape);
  const n = numel(shape);
  let bytes: Uint8Array | undefined;
  if (p.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const kv = Object.fromEntries((p.externalData ?? []).map((e) => [e.key, e.value]));
    if (!kv.location || !modelDir) throw new EdgecError(`${where}: tensor '${p.name}' has external data but no location`);
    const file = join(modelDir, kv.location);
    let buf: Buffer;
    try {
      buf = readFileSync(file);
    } catch {
      throw new EdgecError(`${where}: external data file '${file}' of tensor '${p.name}' cannot be read`);
    }
    const off = Number(kv.offset ?? 0);
    const len = kv.length !== undefined ? Number(kv.length) : n * DTYPES[dtype].bytes;
    bytes = buf.subarray(off, off + len);
  } else if (p.rawData && p.rawData.length) bytes = p.rawData;
  if (bytes) {
    const need = n * DTYPES[dtype].bytes;
    if (bytes.length !== need) throw new EdgecError(`${where}: tensor '${p.name ?? ""}' holds ${bytes.length} bytes, its shape [${shape.join("x")}] needs ${need}`);
    new Uint8Array(t.data.buffer, t.data.byteOffset, need).set(bytes);
    return t;
  }
  const typed: ArrayLike<unknown> | null | undefined =
    dtype === "float32" ? p.floatData
    : dtype === "float64" ? p.doubleData
    : dtype === "int64" ? p.int64Data
    : dtype === "uint32" || dtype === "uint64" ? p.uint64Data
    : p.int32Data;
  const src = typed ?? [];
  if (n === 0) return t;
  if (src.length !== n) throw new EdgecError(`${where}: tensor '${p.name ?? ""}' has ${src.length} values, its shape [${shape.join("x")}] needs ${n}`);
  for (let i = 0; i < n; i++) {
    const v = src[i] as never;
    t.data[i] = DTYPES[dtype].array === BigInt64Array || DTYPES[dtype].array === BigUint64Array ? big(v) : num(v);
  }
  return t;
}

export function tensorToProto(t: Tensor, name = ""): Uint8Array {
  const raw = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const p = onnx.TensorProto.create({ name, dataType: DTYPES[t.dtype].onnx, dims: t.shape, rawData: raw });
  return onnx.TensorProto.encode(p).finish();
}

export function readTensorFile(file: string): Tensor & { name?: string } {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch {
    throw new EdgecError(`${file}: cannot read tensor file`);
  }
  if (file.endsWith(".npy")) return readNpy(buf, file);
  let p: OnnxNs.TensorProto;
  try {
    p = onnx.TensorProto.decode(buf);
  } catch (e) {
    throw new EdgecError(`${file}: not an ONNX TensorProto (${(e as Error).message})`);
  }
  return { ...tensorFromProto(p, file, dirname(file)), name: p.name || undefined };
}

const NPY: Record<string, DType> = {
  f4: "float32", f2: "float16", f8: "float64", i1: "int8", u1: "uint8", i2: "int16", u2: "uint16",
  i4: "int32", u4: "uint32", i8: "int64", u8: "uint64", b1: "bool",
};

function readNpy(buf: Buffer, file: string): Tensor {
  if (buf.length < 10 || buf.toString("latin1", 0, 6) !== "\x93NUMPY") throw new EdgecError(`${file}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString("latin1", start, start + hlen);
  const descr = /'descr':\s*'([<>|=])(\w\d)'/.exec(header);
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeM = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !shapeM) throw new EdgecError(`${file}: unreadable .npy header`);
  const dtype = NPY[descr[2]];
  if (!dtype || descr[1] === ">") throw new EdgecError(`${file}: .npy dtype '${descr[1]}${descr[2]}' is not supported`);
  if (fortran) throw new EdgecError(`${file}: Fortran-ordered .npy arrays are not supported`);
  const shape = shapeM[1].split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const t = zeros(dtype, shape);
  const need = t.data.byteLength;
  const body = buf.subarray(start + hlen);
  if (body.length < need) throw new EdgecError(`${file}: .npy data is truncated (${body.length} of ${need} bytes)`);
  new Uint8Array(t.data.buffer).set(body.subarray(0, need));
  return t;
}

export function npyBytes(t: Tensor): Uint8Array {
  const code = Object.entries(NPY).find(([, d]) => d === t.dtype)![0];
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(", ")})`;
  let header = `{'descr': '${code.startsWith("b") || code.endsWith("1") ? "|" : "<"}${code}', 'fortran_order': False, 'shape': ${shape}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += " ".repeat(pad % 64) + "\n";
  const head = Buffer.alloc(10);
  head.write("\x93NUMPY", 0, "latin1");
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  return Buffer.concat([head, Buffer.from(header, "latin1"), Buffer.from(bytesOf(t.data))]);
}

export const bytesOf = (a: TypedArray) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
