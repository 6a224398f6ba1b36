import { isFloat, type DType } from "../../core/dtype.js";
import type { UnOp } from "../../loop/ir.js";
import { C_DIALECT, cLiteral } from "../c/dialect.js";
import type { Dialect } from "../c-like.js";

/** OpenCL C scalar types: fixed widths by definition; float16 is kept as its bits (ushort), as in C. */
const CL_TYPE: Record<DType, string> = {
  float32: "float", float64: "double", float16: "ushort", int8: "char", uint8: "uchar", int16: "short",
  uint16: "ushort", int32: "int", uint32: "uint", int64: "long", uint64: "ulong", bool: "uchar",
};

/** OpenCL's math builtins are overloaded on float and double, so one name serves both. */
const MATH: Partial<Record<UnOp, string>> = {
  abs: "fabs", exp: "exp", log: "log", sqrt: "sqrt", tanh: "tanh", erf: "erf", floor: "floor", ceil: "ceil",
  round: "rint", sin: "sin", cos: "cos",
};

/** C's literal spellings that name <stdint.h> macros, in OpenCL C's own (it has no <stdint.h>). */
function clLiteral(v: number | bigint, d: DType): string {
  return cLiteral(v, d)
    .replace(/^INT64_MIN$/, "LONG_MIN")
    .replace(/^INT64_MAX$/, "LONG_MAX")
    .replace(/^INT32_MIN$/, "INT_MIN")
    .replace(/^INT64_C\((-?\d+)\)$/, "($1L)")
    .replace(/^UINT64_C\((\d+)\)$/, "$1UL");
}

/**
 * OpenCL C 1.2 as a dialect of the shared C renderer: its own type names and overloaded math
 * builtins; fmin/fmax are the builtins, which have fminf's NaN rule (a NaN operand loses); vectors
 * are the built-in floatN types.
 */
export const CL_DIALECT: Dialect = {
  ...C_DIALECT,
  type: (d) => CL_TYPE[d],
  literal: clLiteral,
  unary(op, d, a) {
    if (op === "neg") return `(-${a})`;
    if (op === "not") return `(!${a})`;
    if (op === "nanof") return `(isnan(${a}) ? ${a} : ${d === "float64" ? "0.0" : "0.0f"})`;
    if (!isFloat(d)) return op === "abs" ? `(${a} < 0 ? -${a} : ${a})` : a;
    return `${MATH[op]}(${a})`;
  },
  binary(op, d, a, b) {
    // OpenCL has pow and fmod for floats only; integers go through float, as C's powf and fmodf take them.
    if (op === "pow" || op === "fmod") return isFloat(d) ? `${op}(${a}, ${b})` : `${op}((float)${a}, (float)${b})`;
    if (op === "min" || op === "max") return isFloat(d) ? `f${op}(${a}, ${b})` : `(${a} ${op === "min" ? "<" : ">"} ${b} ? ${a} : ${b})`;
    return `(${a} ${op} ${b})`;
  },
  cast(from, to, a) {
    if (from === to) return a;
    if (to === "bool") return `(uchar)(${a} != 0)`;
    if (from === "float16") return to === "float32" ? `edgec_h2f(${a})` : `(${CL_TYPE[to]})edgec_h2f(${a})`;
    if (to === "float16") return `edgec_f2h(${from === "float32" ? a : `(float)${a}`})`;
    return `(${CL_TYPE[to]})${a}`;
  },
  parallelFor: "",
  group: { memory: "__local", barrier: "barrier(CLK_LOCAL_MEM_FENCE);" },
  vector: {
    type: (lanes) => (lanes === 1 ? "float" : `float${lanes}`),
    load: (ptr, lanes, stride) =>
      lanes === 1 ? `(${ptr})[0]` : stride === 2 ? `(float${lanes})(${Array.from({ length: lanes }, (_, i) => `(${ptr})[${2 * i}]`).join(", ")})` : `vload${lanes}(0, ${ptr})`,
    store: (ptr, val, lanes) => (lanes === 1 ? `(${ptr})[0] = ${val}` : `vstore${lanes}(${val}, 0, ${ptr})`),
    splat: (a, lanes) => (lanes === 1 ? a : `(float${lanes})(${a})`),
    minmax: (op, a, b) => `f${op}(${a}, ${b})`,
    unary: (op, a, lanes) =>
      op === "neg" ? `(-${a})` : op === "nanof" ? (lanes === 1 ? `(isnan(${a}) ? ${a} : 0.0f)` : `select((float${lanes})(0.0f), ${a}, isnan(${a}))`) : `${MATH[op]}(${a})`,
  },
};
