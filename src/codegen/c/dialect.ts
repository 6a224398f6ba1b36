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
      if (isFloat(d)) return `edgec_f${op}${f}(${a}, ${b})`;
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
  vector: {
    type: (lanes) => `edgec_f32x${lanes}`,
    load: (ptr, lanes) => `edgec_vload${lanes}(${ptr})`,
    store: (ptr, val, lanes) => `edgec_vstore${lanes}(${ptr}, ${val})`,
    splat: (a, lanes) => `edgec_splat${lanes}(${a})`,
    minmax: (op, a, b, lanes) => `edgec_v${op}${lanes}(${a}, ${b})`,
  },
};

/**
 * GCC/Clang vector extensions for float32 vectors of `lanes` elements. Loads and stores go through
 * memcpy, which compiles to one unaligned vector move and keeps the access free of aliasing and
 * alignment undefined behaviour.
 */
export function cVectorPrelude(lanes: number): string {
  const t = `edgec_f32x${lanes}`, m = `edgec_i32x${lanes}`;
  // fmin/fmax lane-wise as a compare and a bit blend (a NaN operand loses, as in fminf/fmaxf).
  const pick = (cmp: string) => `{ ${m} k = (a ${cmp} b) | (b != b); return (${t})((k & (${m})a) | (~k & (${m})b)); }`;
  return [
    `typedef float ${t} __attribute__((vector_size(${lanes * 4})));`,
    `typedef int32_t ${m} __attribute__((vector_size(${lanes * 4})));`,
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_vmin${lanes}(${t} a, ${t} b) ${pick("<")}`,
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_vmax${lanes}(${t} a, ${t} b) ${pick(">")}`,
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_vload${lanes}(const float *p) { ${t} v; __builtin_memcpy(&v, p, sizeof v); return v; }`,
    `EDGEC_MAYBE_UNUSED static inline void edgec_vstore${lanes}(float *p, ${t} v) { __builtin_memcpy(p, &v, sizeof v); }`,
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_splat${lanes}(float s) { ${t} v = {${Array(lanes).fill("s").join(", ")}}; return v; }`,
  ].join("\n");
}
