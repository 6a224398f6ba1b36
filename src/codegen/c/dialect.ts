import { DTYPES, isFloat, type DType } from "../../core/dtype.js";
import type { UnOp } from "../../loop/ir.js";
import { TARGET_DEFAULTS } from "../../target/schema.js";
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
    if (op === "nanof") return `(${a} != ${a} ? ${a} : ${d === "float64" ? "0.0" : "0.0f"})`;
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
  parallelMinWork: TARGET_DEFAULTS.parallelMinWork,
  vector: {
    type: (lanes) => `edgec_f32x${lanes}`,
    load: (ptr, lanes, stride) => `edgec_vload${lanes}${stride === 2 ? "s2" : ""}(${ptr})`,
    store: (ptr, val, lanes) => `edgec_vstore${lanes}(${ptr}, ${val})`,
    storeLanes: (buf, idx, val, lanes, from, to) => `edgec_vstore${lanes}m(${buf}, ${idx}, ${val}, ${from}, ${to})`,
    storeStrided: (ptr, val, lanes, stride) => `edgec_vscatter${lanes}(${ptr}, ${stride}, ${val})`,
    storePacked: (ptr, val, lanes, mask, n) => `edgec_vpack${lanes}(${ptr}, ${val}, 0x${mask.toString(16)}u, ${n})`,
    loadSpread: (ptr, lanes, mask, n, fill) => `edgec_vspread${lanes}(${ptr}, 0x${mask.toString(16)}u, ${n}, ${fill})`,
    splat: (a, lanes) => `edgec_splat${lanes}(${a})`,
    slide: (a, b, by, lanes) => `__builtin_shufflevector(${a}, ${b}, ${Array.from({ length: lanes }, (_, l) => by + l).join(", ")})`,
    minmax: (op, a, b, lanes) => `edgec_v${op}${lanes}(${a}, ${b})`,
    unary: (op, a, lanes) => (op === "neg" ? `(-${a})` : `edgec_v${op}${lanes}(${a})`),
  },
};

/**
 * GCC/Clang vector extensions for float32 vectors of `lanes` elements. Loads and stores go through
 * memcpy, which compiles to one unaligned vector move and keeps the access free of aliasing and
 * alignment undefined behaviour.
 */
export function cVectorPrelude(lanes: number): string {
  if (lanes === 1) return scalarPrelude();
  // Every narrower width down to 4 lanes too: lowerings use them for rows too short for a full vector.
  const widths: string[] = [];
  for (let w = lanes; w >= 4; w /= 2) widths.push(vectorWidth(w));
  return widths.join("\n");
}

function vectorWidth(lanes: number): string {
  const t = `edgec_f32x${lanes}`, m = `edgec_i32x${lanes}`;
  return [
    `typedef float ${t} __attribute__((vector_size(${lanes * 4})));`,
    `typedef int32_t ${m} __attribute__((vector_size(${lanes * 4})));`,
    minMax(t, m, lanes),
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_vload${lanes}(const float *p) { ${t} v; __builtin_memcpy(&v, p, sizeof v); return v; }`,
    `EDGEC_MAYBE_UNUSED static inline void edgec_vstore${lanes}(float *p, ${t} v) { __builtin_memcpy(p, &v, sizeof v); }`,
    storeLanes(t, lanes),
    `EDGEC_MAYBE_UNUSED static inline void edgec_vscatter${lanes}(float *p, int32_t s, ${t} v) { for (int32_t l = 0; l < ${lanes}; ++l) p[l * s] = v[l]; }`,
    // p[0], p[2], ..., p[2·lanes−2]: the even lanes of p[0..lanes) and the odd lanes of
    // p[lanes−1..2·lanes−1), so nothing past the last element used is read.
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_vload${lanes}s2(const float *p) { return __builtin_shufflevector(edgec_vload${lanes}(p), edgec_vload${lanes}(p + ${lanes - 1}), ${evenThenOdd(lanes)}); }`,
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_splat${lanes}(float s) { ${t} v = {${Array(lanes).fill("s").join(", ")}}; return v; }`,
    packAndSpread(t, lanes),
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_vnanof${lanes}(${t} x) { return (${t})((x != x) & (${m})x); }`,
    vectorExp(t, m, `edgec_splat${lanes}`, lanes),
  ].join("\n");
}

/** Instruction forms of min/max for `lanes`-wide vectors: the macro that enables one, its header, its body over a and b. */
const FAST_MIN_MAX: { lanes: number; guard: string; header: string; body: (op: "min" | "max") => string }[] = [
  { lanes: 16, guard: "__AVX512F__", header: "immintrin.h", body: (op) => `__m512 x = (__m512)a, y = (__m512)b; return (edgec_f32x16)_mm512_mask_${op}_ps(x, _mm512_cmp_ps_mask(y, y, _CMP_ORD_Q), x, y);` },
  { lanes: 8, guard: "__AVX__", header: "immintrin.h", body: (op) => `__m256 x = (__m256)a, y = (__m256)b; return (edgec_f32x8)_mm256_blendv_ps(x, _mm256_${op}_ps(x, y), _mm256_cmp_ps(y, y, _CMP_ORD_Q));` },
  { lanes: 4, guard: "__SSE4_1__", header: "immintrin.h", body: (op) => `__m128 x = (__m128)a, y = (__m128)b; return (edgec_f32x4)_mm_blendv_ps(x, _mm_${op}_ps(x, y), _mm_cmpord_ps(y, y));` },
  { lanes: 4, guard: "__aarch64__", header: "arm_neon.h", body: (op) => `return (edgec_f32x4)v${op}nmq_f32((float32x4_t)a, (float32x4_t)b);` },
];

/**
 * fmin/fmax lane-wise: a NaN operand loses, as in fminf/fmaxf. Portably a compare of a and b, one
 * of b with itself and a bit blend. x86's min/max instructions already pick like `a < b ? a : b`
 * and give b where a is NaN, so only the lanes where b is NaN need a: AVX-512 masks the instruction
 * by b's ordered lanes (two instructions for four: SqueezeNet's first MaxPool, 3×3 stride 2 over
 * a 111×111 map, went from 0.226 to 0.16 ms in a profiling build), AVX and SSE4.1 blend (three).
 * A constant b's compare is loop-invariant (GCC 12 does not fold it, but hoists it out of loops),
 * so a Relu in a loop is one instruction per vector. AArch64's fminnm/fmaxnm are fmin/fmax
 * themselves, as its scalar fminf/fmaxf already compile to (they order −0 below +0, where the
 * portable form returns b for equal operands).
 */
function minMax(t: string, m: string, lanes: number): string {
  const portable = (op: "min" | "max") =>
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_v${op}${lanes}(${t} a, ${t} b) { ${m} k = (a ${op === "min" ? "<" : ">"} b) | (b != b); return (${t})((k & (${m})a) | (~k & (${m})b)); }`;
  const out: string[] = [];
  for (const f of FAST_MIN_MAX.filter((f) => f.lanes === lanes)) {
    const fast = (op: "min" | "max") => `EDGEC_MAYBE_UNUSED static inline ${t} edgec_v${op}${lanes}(${t} a, ${t} b) { ${f.body(op)} }`;
    out.push(`#${out.length ? "elif" : "if"} defined(${f.guard})`, `#include <${f.header}>`, fast("min"), fast("max"));
  }
  return out.length ? [...out, "#else", portable("min"), portable("max"), "#endif"].join("\n") : [portable("min"), portable("max")].join("\n");
}

/**
 * A target without SIMD (vectorBytes 4) gets vectors of one lane: plain floats, so that the loop
 * IR's one-lane vectors and its scalars, which it does not tell apart, mix freely.
 */
function scalarPrelude(): string {
  return [
    "typedef float edgec_f32x1;",
    "EDGEC_MAYBE_UNUSED static inline float edgec_vmin1(float a, float b) { return edgec_fminf(a, b); }",
    "EDGEC_MAYBE_UNUSED static inline float edgec_vmax1(float a, float b) { return edgec_fmaxf(a, b); }",
    "EDGEC_MAYBE_UNUSED static inline float edgec_vload1(const float *p) { return *p; }",
    "EDGEC_MAYBE_UNUSED static inline float edgec_vload1s2(const float *p) { return *p; }",
    "EDGEC_MAYBE_UNUSED static inline void edgec_vstore1(float *p, float v) { *p = v; }",
    "EDGEC_MAYBE_UNUSED static inline float edgec_splat1(float s) { return s; }",
    "EDGEC_MAYBE_UNUSED static inline float edgec_vexp1(float x) { return expf(x); }",
    "EDGEC_MAYBE_UNUSED static inline float edgec_vnanof1(float x) { return x != x ? x : 0.0f; }",
  ].join("\n");
}

/**
 * Lanes from..to of v to p[i + from ..]: one masked store after moving lane `from` to lane 0 where
 * AVX-512 has them, else lane by lane. The address is formed only for lanes stored, as p + i may
 * lie outside the buffer.
 */
function storeLanes(t: string, lanes: number): string {
  // Over every lane, so GCC sees a copy of at most a vector (from..to, it warns of one past it).
  const loop = `for (int32_t l = 0; l < ${lanes}; ++l) if (l >= from && l < to) p[i + l] = v[l];`;
  if (lanes !== 16) return `EDGEC_MAYBE_UNUSED static inline void edgec_vstore${lanes}m(float *p, int32_t i, ${t} v, int32_t from, int32_t to) { ${loop} }`;
  // The register form of compress: a constant index vector instead (permutexvar) is hoisted out of
  // the GEMM's loops by GCC and takes a register its micro-kernel needs.
  return [
    "#if defined(__AVX512F__)",
    "#include <immintrin.h>",
    `EDGEC_MAYBE_UNUSED static inline void edgec_vstore16m(float *p, int32_t i, ${t} v, int32_t from, int32_t to) {`,
    "  if (from < to) {",
    "    __mmask16 n = (__mmask16)((1u << (to - from)) - 1u);",
    "    _mm512_mask_storeu_ps(p + (i + from), n, _mm512_maskz_compress_ps((__mmask16)(n << from), v));",
    "  }",
    "}",
    "#else",
    `EDGEC_MAYBE_UNUSED static inline void edgec_vstore16m(float *p, int32_t i, ${t} v, int32_t from, int32_t to) { ${loop} }`,
    "#endif",
  ].join("\n");
}

/**
 * The lanes of a mask (n of them) packed together into p[0..n) and spread out from p[0..n), the
 * others `fill`: AVX-512's compress and expand (register forms; the memory forms are microcoded on
 * AMD's Zen 4) with a masked store and load, which touch only p[0..n); else lane by lane.
 */
function packAndSpread(t: string, lanes: number): string {
  const portable = [
    `EDGEC_MAYBE_UNUSED static inline void edgec_vpack${lanes}(float *p, ${t} v, uint32_t mask, int32_t n) { int32_t o = 0; (void)n; for (int32_t l = 0; l < ${lanes}; ++l) if (mask >> l & 1u) p[o++] = v[l]; }`,
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_vspread${lanes}(const float *p, uint32_t mask, int32_t n, float fill) { ${t} v = edgec_splat${lanes}(fill); int32_t o = 0; (void)n; for (int32_t l = 0; l < ${lanes}; ++l) if (mask >> l & 1u) v[l] = p[o++]; return v; }`,
  ];
  if (lanes !== 16) return portable.join("\n");
  return [
    "#if defined(__AVX512F__)",
    "#include <immintrin.h>",
    `EDGEC_MAYBE_UNUSED static inline void edgec_vpack16(float *p, ${t} v, uint32_t mask, int32_t n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), _mm512_maskz_compress_ps((__mmask16)mask, (__m512)v)); }`,
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_vspread16(const float *p, uint32_t mask, int32_t n, float fill) { return (${t})_mm512_mask_expand_ps(_mm512_set1_ps(fill), (__mmask16)mask, _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p)); }`,
    "#else",
    ...portable,
    "#endif",
  ].join("\n");
}

/** Shuffle indices picking p[0], p[2], ... from (a = p[0..n), b = p[n−1..2n−1)): a's even lanes, then b's odd ones. */
function evenThenOdd(n: number): string {
  const idx: number[] = [];
  for (let i = 0; i < n; i += 2) idx.push(i);
  for (let i = 1; i < n; i += 2) idx.push(n + i);
  return idx.join(", ");
}

/**
 * expf lane-wise (Cephes' expf): x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7 polynomial, 2^n
 * built in the exponent bits (as 2^(n−1)·2 so n = 128 still fits). Where 2^n would not be a normal
 * float the result is expf's limit: above ln(FLT_MAX) +inf, below −86.6 zero (expf gives at most
 * 2.5e−38 there). NaN stays NaN.
 */
function vectorExp(t: string, m: string, splat: string, lanes: number): string {
  const sel = (mask: string, a: string, b: string) => `(${t})((${mask} & (${m})${a}) | (~${mask} & (${m})${b}))`;
  return [
    `EDGEC_MAYBE_UNUSED static inline ${t} edgec_vexp${lanes}(${t} x) {`,
    `  ${m} big = x > ${splat}(88.7228394f), small = x < ${splat}(-86.6f), nan = x != x;`,
    `  ${t} c = ${sel("(big | small | nan)", `${splat}(0.0f)`, "x")};`,
    `  ${t} fx = c * ${splat}(1.44269504088896341f) + ${splat}(0.5f);`,
    `  ${m} n = __builtin_convertvector(fx, ${m});`,
    `  n += (${m})(__builtin_convertvector(n, ${t}) > fx);`,
    `  ${t} nf = __builtin_convertvector(n, ${t});`,
    `  ${t} r = c - nf * ${splat}(0.693359375f) - nf * ${splat}(-2.12194440e-4f);`,
    `  ${t} p = ${splat}(1.9875691500e-4f);`,
    ...["1.3981999507e-3f", "8.3334519073e-3f", "4.1665795894e-2f", "1.6666665459e-1f", "5.0000001201e-1f"].map((k) => `  p = p * r + ${splat}(${k});`),
    `  p = p * r * r + r + ${splat}(1.0f);`,
    `  ${t} y = p * (${t})((n + 126) << 23) * ${splat}(2.0f);`,
    `  return ${sel("big", `${splat}(INFINITY)`, sel("small", `${splat}(0.0f)`, sel("nan", "x", "y")))};`,
    "}",
  ].join("\n");
}
