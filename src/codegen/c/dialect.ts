import { DTYPES, isFloat, type DType } from "../../core/dtype.js";
import type { UnOp } from "../../loop/ir.js";
import { float32Literal, type Dialect } from "../c-like.js";

const MATH: Partial<Record<UnOp, string>> = {
  abs: "fabs", exp: "exp", log: "log", sqrt: "sqrt", tanh: "tanh", erf: "erf", floor: "floor", ceil: "ceil",
  round: "nearbyint", sin: "sin", cos: "cos",
};

export function cLiteral(v: number | bigint, d: DType): string {
  if (d === "float32" || d === "float64") {
    const x = Number(v);
    if (Number.isNaN(x)) return "NAN";
    if (!Number.isFinite(x)) return x > 0 ? "INFINITY" : "(-INFINITY)";
    const s = d === "float32" ? `${float32Literal(Math.fround(x))}f` : /[.e]/.test(String(x)) ? String(x) : `${x}.0`;
    return x < 0 || Object.is(x, -0) ? `(${s})` : s;
  }
  if (d === "int64") {
    const b = BigInt(v);
    if (b <= -(2n ** 63n)) return "INT64_MIN";
    if (b >= 2n ** 63n - 1n) return "INT64_MAX";
    return b < -(2n ** 31n) + 1n || b > 2n ** 31n - 1n ? `INT64_C(${b})` : b < 0n ? `(${b})` : `${b}`;
  }
  if (d === "uint64") return `UINT64_C(${BigInt(v)})`;
  if (d === "int32" && Number(v) <= -2147483648) return "INT32_MIN";
  const n = Number(v);
  return n < 0 ? `(${n})` : d === "uint32" ? `${n}u` : `${n}`;
}

/** The C99 dialect of the shared renderer. */
export const C_DIALECT: Dialect = {
  type: (d) => DTYPES[d].c,
  literal: cLiteral,
  unary(op, d, a) {
    if (op === "neg") return `(-${a})`;
    if (op === "not") return `(!${a})`;
    if (!isFloat(d)) {
      if (op === "abs") return `(${a} < 0 ? -${a} : ${a})`;
      return a;
    }
    return `${MATH[op]}${d === "float64" ? "" : "f"}(${a})`;
  },
  binary(op, d, a, b) {
    const f = d === "float64" ? "" : "f";
    if (op === "pow") return `pow${f}(${a}, ${b})`;
    if (op === "fmod") return `fmod${f}(${a}, ${b})`;
    if (op === "min" || op === "max") {
      if (isFloat(d)) return `f${op}${f}(${a}, ${b})`;
      return `(${a} ${op === "min" ? "<" : ">"} ${b} ? ${a} : ${b})`;
    }
    return `(${a} ${op} ${b})`;
  },
  cast(from, to, a) {
    if (from === to) return a;
    if (to === "bool") return `(uint8_t)(${a} != 0)`;
    if (from === "float16") return to === "float32" ? `edgec_h2f(${a})` : `(${DTYPES[to].c})edgec_h2f(${a})`;
    if (to === "float16") return `edgec_f2h(${from === "float32" ? a : `(float)${a}`})`;
    return `(${DTYPES[to].c})${a}`;
  },
  parallelFor: "EDGEC_PARALLEL_FOR",
};
