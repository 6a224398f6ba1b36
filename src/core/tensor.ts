import { DTYPES, type DType, type TypedArray, float16ToNumber, numberToFloat16, intRange, isFloat } from "./dtype.js";

/** A host-side tensor value: constants, folded results, test inputs and outputs. */
export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

export const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function zeros(dtype: DType, shape: number[]): Tensor {
  return { dtype, shape: [...shape], data: new DTYPES[dtype].array(numel(shape)) };
}

/** Elements as doubles (int64 through Number, float16 decoded); the interpreter computes on these. */
export function toNumbers(t: Tensor): number[] {
  const out = new Array<number>(t.data.length);
  if (t.dtype === "float16") for (let i = 0; i < out.length; i++) out[i] = float16ToNumber(t.data[i] as number);
  else for (let i = 0; i < out.length; i++) out[i] = Number(t.data[i]);
  return out;
}

/** Builds a tensor from doubles, converting like C casts do (truncation toward zero, saturating at the range ends). */
export function fromNumbers(dtype: DType, shape: number[], values: ArrayLike<number>): Tensor {
  const t = zeros(dtype, shape);
  const [lo, hi] = intRange(dtype);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (dtype === "float16") t.data[i] = numberToFloat16(v);
    else if (isFloat(dtype)) t.data[i] = v;
    else if (dtype === "bool") t.data[i] = v ? 1 : 0;
    else {
      const c = Number.isNaN(v) ? 0 : Math.min(Math.max(Math.trunc(v), lo), hi);
      if (dtype === "int64") t.data[i] = c >= hi ? 0x7fffffffffffffffn : BigInt(c);
      else if (dtype === "uint64") t.data[i] = c >= hi ? 0xffffffffffffffffn : BigInt(c);
      else t.data[i] = c;
    }
  }
  return t;
}

export const scalar = (dtype: DType, v: number) => fromNumbers(dtype, [], [v]);

export const shapeStr = (shape: readonly number[] | undefined) => (shape ? `[${shape.join("x")}]` : "[?]");
