/** Element types edgec knows, with their ONNX enum value, byte size and C spelling. */
export type DType =
  | "float32" | "float16" | "float64"
  | "int8" | "uint8" | "int16" | "uint16" | "int32" | "uint32" | "int64" | "uint64"
  | "bool";

export type TypedArray =
  | Float32Array | Float64Array | Uint16Array
  | Int8Array | Uint8Array | Int16Array | Int32Array | Uint32Array
  | BigInt64Array | BigUint64Array;

interface DTypeInfo {
  onnx: number;
  bytes: number;
  c: string;
  /** Storage in JS: float16 keeps raw bits in a Uint16Array, bool one byte per element. */
  array: new (n: number) => TypedArray;
}

export const DTYPES: Record<DType, DTypeInfo> = {
  float32: { onnx: 1, bytes: 4, c: "float", array: Float32Array },
  uint8: { onnx: 2, bytes: 1, c: "uint8_t", array: Uint8Array },
  int8: { onnx: 3, bytes: 1, c: "int8_t", array: Int8Array },
  uint16: { onnx: 4, bytes: 2, c: "uint16_t", array: Uint16Array },
  int16: { onnx: 5, bytes: 2, c: "int16_t", array: Int16Array },
  int32: { onnx: 6, bytes: 4, c: "int32_t", array: Int32Array },
  int64: { onnx: 7, bytes: 8, c: "int64_t", array: BigInt64Array },
  bool: { onnx: 9, bytes: 1, c: "uint8_t", array: Uint8Array },
  float16: { onnx: 10, bytes: 2, c: "uint16_t", array: Uint16Array },
  float64: { onnx: 11, bytes: 8, c: "double", array: Float64Array },
  uint32: { onnx: 12, bytes: 4, c: "uint32_t", array: Uint32Array },
  uint64: { onnx: 13, bytes: 8, c: "uint64_t", array: BigUint64Array },
};

const BY_ONNX = new Map<number, DType>(Object.entries(DTYPES).map(([k, v]) => [v.onnx, k as DType]));

/** ONNX TensorProto.DataType → DType, or undefined for types edgec does not handle. */
export function dtypeFromOnnx(code: number): DType | undefined {
  return BY_ONNX.get(code);
}

export const ONNX_TYPE_NAMES: Record<number, string> = {
  0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
  8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
  15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
  20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1",
};

export const isFloat = (d: DType) => d === "float32" || d === "float16" || d === "float64";
export const isInt = (d: DType) => !isFloat(d) && d !== "bool";
export const isSigned = (d: DType) => d.startsWith("int") || isFloat(d);
export const is64 = (d: DType) => d === "int64" || d === "uint64";

/** Inclusive value range of an integer dtype, as doubles (saturating conversions use it). */
export function intRange(d: DType): [number, number] {
  switch (d) {
    case "uint8": return [0, 255];
    case "int8": return [-128, 127];
    case "uint16": return [0, 65535];
    case "int16": return [-32768, 32767];
    case "int32": return [-2147483648, 2147483647];
    case "uint32": return [0, 4294967295];
    case "int64": return [-9223372036854775808, 9223372036854775807];
    case "uint64": return [0, 18446744073709551615];
    case "bool": return [0, 1];
    default: return [-Infinity, Infinity];
  }
}

export function float16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Round-to-nearest-even float → float16 bits. */
export function numberToFloat16(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}
