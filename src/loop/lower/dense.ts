import { toNumbers } from "../../core/tensor.js";
import { attrNum } from "../../graph/ir.js";
import { convGeometry, gemmDims, matmulShape } from "../../graph/ops/nn.js";
import {
  add, and, cast, cst, div, ge, int, let_, load, loadBroadcast, loadFlat, lt, mod, mul, nest, select, set, store, vr,
  if_, type Ref,
} from "../build.js";
import type { Expr, Stmt } from "../ir.js";
import { vectorizeLanes } from "../vectorize.js";
import { gemmKernel, tileColumns, type GemmSpec } from "./gemm.js";
import { NN_LOWERINGS } from "./nn.js";
import type { LowerCtx, Lowering } from "./types.js";

/**
 * Fast float32 lowerings of the compute-heavy ops for CPUs with vectors: convolution as a packed
 * GEMM (1×1 convolutions read the input as the B matrix directly, larger kernels gather it
 * im2col-style one tile at a time), depthwise convolution as direct loops whose interior needs no
 * bounds checks, and Gemm/MatMul on the same micro-kernels. Anything else (other types, ranks,
 * grouped convolutions, no vector shape) takes the plain lowering.
 */

const isF32 = (...rs: (Ref | undefined)[]) => rs.every((r) => !r || r.dtype === "float32");
const f32 = (e: Expr) => cast(e, "float32");

/** Output positions o in [lo, hi) whose taps o·s − p + k·d stay inside [0, size) for every k. */
function interior(size: number, out: number, k: number, s: number, p: number, d: number): [number, number] {
  const lo = Math.min(out, Math.max(0, Math.ceil(p / s)));
  const hi = Math.max(lo, Math.min(out, Math.floor((size - 1 + p - (k - 1) * d) / s) + 1));
  return [lo, hi];
}

function gemmConv(c: LowerCtx): Stmt[] {
  const { node, ins: [x, w, b], outs: [y] } = c;
  const geo = convGeometry(node, x!.shape, w!.shape, b?.shape);
  const [N, C, H, W] = x!.shape;
  const M = w!.shape[0];
  const [KH, KW] = geo.kernel, [sh, sw] = geo.strides, [dh, dw] = geo.dilations, [ph, pw] = geo.padsBegin;
  const [OH, OW] = geo.out;
  const P = OH * OW, K = C * KH * KW;
  const pointwise = KH === 1 && KW === 1 && sh === 1 && sw === 1 && ph === 0 && pw === 0 && OH === H && OW === W;
  // The weights are the broadcast operand, row m = output channel m: already row-major [M][K].
  const wData = w!.data && !w!.at ? toNumbers(w!.data) : undefined;
  // Each column's top-left input row and column, worked out once per tile into two small locals
  // instead of divided out per element (tables of them, one entry per output pixel, would double
  // the weights of a convolution with few channels on a large image); columns past the last (a
  // ragged tile) get a row no tap reaches, so they read as padding.
  const nt = ntOf(c, P);
  const corners = (j0: Expr, full: boolean): { rows0: string; cols0: string; fill: Stmt[] } => {
    const rows0 = c.names.next("rows0"), cols0 = c.names.next("cols0");
    const fill = nest(c.names, [nt], ([j]) => {
      const p = add(j0, j);
      const row = add(mul(div(p, int(OW)), int(sh)), int(-ph));
      return [
        { k: "store", buf: rows0, idx: j, val: full ? row : select(lt(p, int(P)), row, int(-(1 << 20))) },
        { k: "store", buf: cols0, idx: j, val: add(mul(mod(p, int(OW)), int(sw)), int(-pw)) },
      ];
    }, false);
    return { rows0, cols0, fill: [{ k: "local", name: rows0, dtype: "int32", n: nt }, { k: "local", name: cols0, dtype: "int32", n: nt }, ...fill] };
  };
  const spec: GemmSpec = {
    batch: [N],
    rows: M,
    cols: P,
    depth: K,
    a: (_, m, k) => f32(loadFlat(w!, add(mul(m, int(K)), k))),
    aConst: wData ? (m, k) => wData[m * K + k] : undefined,
    packB: ([n], j0, put, full) => {
      const at = pointwise ? undefined : corners(j0, full);
      return [...(at?.fill ?? []), ...nest(c.names, [C, KH, KW], ([ci, kh, kw]) => {
        const k = add(mul(add(mul(ci, int(KH)), kh), int(KW)), kw);
        return nest(c.names, [nt], ([j]) => {
          const p = add(j0, j);
          let v: Expr, ok: Expr | undefined;
          if (pointwise) {
            v = loadFlat(x!, add(mul(add(mul(n, int(C)), ci), int(P)), p));
            if (!full) ok = lt(p, int(P));
          } else {
            const ih = add({ k: "load", buf: at!.rows0, idx: j, dtype: "int32" }, mul(kh, int(dh)));
            const iw = add({ k: "load", buf: at!.cols0, idx: j, dtype: "int32" }, mul(kw, int(dw)));
            const conds: Expr[] = [];
            if (ph > 0 || !full) conds.push(ge(ih, int(0)));
            if ((OH - 1) * sh - ph + (KH - 1) * dh >= H) conds.push(lt(ih, int(H)));
            if (pw > 0) conds.push(ge(iw, int(0)));
            if ((OW - 1) * sw - pw + (KW - 1) * dw >= W) conds.push(lt(iw, int(W)));
            ok = conds.length ? conds.reduce((a2, b2) => and(a2, b2)) : undefined;
            v = load(x!, [n, ci, ih, iw]);
          }
          return [put(k, j, ok ? select(ok, f32(v), cst(0)) : f32(v))];
        }, false);
      }, false)];
    },
    init: b ? (_, m) => f32(load(b, [m])) : undefined,
    y,
    yAt: ([n], m, j) => [n, m, div(j, int(OW)), mod(j, int(OW))],
  };
  return gemmKernel(c, spec);
}

const ntOf = (c: LowerCtx, cols: number) => tileColumns(c.cpu!, cols);

/**
 * Depthwise 2-D convolution (one filter per channel), per output row: the columns whose taps all
 * fall inside the input run without bounds checks in a loop the C compiler vectorizes; the rows and
 * columns near the padding check each tap. The filter taps are read once per channel into locals.
 */
function depthwise(c: LowerCtx): Stmt[] {
  const { node, ins: [x, w, b], outs: [y], names } = c;
  const geo = convGeometry(node, x!.shape, w!.shape, b?.shape);
  const [, , H, W] = x!.shape;
  const [KH, KW] = geo.kernel, [sh, sw] = geo.strides, [dh, dw] = geo.dilations, [ph, pw] = geo.padsBegin;
  const [OH, OW] = geo.out;
  const [rowLo, rowHi] = interior(H, OH, KH, sh, ph, dh);
  const [colLo, colHi] = interior(W, OW, KW, sw, pw, dw);
  return nest(names, [x!.shape[0], x!.shape[1]], ([n, ch]) => {
    const taps = Array.from({ length: KH * KW }, () => names.next("w"));
    const head: Stmt[] = taps.map((t, i) => let_(t, "float32", load(w!, [ch, int(0), int(Math.floor(i / KW)), int(i % KW)])));
    const bias = names.next("bias");
    head.push(let_(bias, "float32", b ? load(b, [ch]) : cst(0)));
    const row = (oh: Expr, checkRows: boolean): Stmt[] => {
      const cols = (from: number, to: number, checkCols: boolean): Stmt[] => {
        if (to <= from) return [];
        // Unchecked columns go a vector at a time when the taps of neighbouring columns are
        // neighbours, or every other element (stride 2, loaded as two vectors and shuffled): full-width vectors, then halves down to 4 lanes for what is left, so narrow
        // maps (14 or 7 columns under 16-lane AVX-512) still run mostly in vectors.
        for (let L = c.cpu!.lanes; !checkCols && sw <= 2 && L >= 4; L /= 2) {
          if (to - from < L) continue;
          const i = names.next("ow"), l = names.next("l");
          const body = pixel(add(int(from), add(mul(vr(i), int(L)), vr(l))), false);
          const vec = vectorizeLanes(body, l, int(0), L);
          const whole = Math.floor((to - from) / L) * L;
          if (vec) return [{ k: "for", v: i, n: whole / L, body: vec }, ...cols(from + whole, to, false)];
        }
        const i = names.next("ow");
        return [{ k: "for", v: i, n: to - from, body: pixel(add(int(from), vr(i)), checkCols) }];
      };
      const pixel = (ow: Expr, checkCols: boolean): Stmt[] => {
        const acc = names.next("acc");
        const body: Stmt[] = [let_(acc, "float32", vr(bias, "float32"))];
        for (let kh = 0; kh < KH; kh++)
          for (let kw = 0; kw < KW; kw++) {
            const ih = add(mul(oh, int(sh)), int(kh * dh - ph));
            const iw = add(mul(ow, int(sw)), int(kw * dw - pw));
            const conds: Expr[] = [];
            if (checkRows) conds.push(ge(ih, int(0)), lt(ih, int(H)));
            if (checkCols) conds.push(ge(iw, int(0)), lt(iw, int(W)));
            const st = set(acc, add(vr(acc, "float32"), mul(f32(load(x!, [n, ch, ih, iw])), vr(taps[kh * KW + kw], "float32"))));
            body.push(conds.length ? if_(conds.reduce((a2, b2) => and(a2, b2)), [st]) : st);
          }
        body.push(store(y, [n, ch, oh, ow], vr(acc, "float32")));
        return [{ k: "block", body }];
      };
      return [...cols(0, colLo, true), ...cols(colLo, colHi, false), ...cols(colHi, OW, true)];
    };
    const rows = (from: number, to: number, check: boolean): Stmt[] => {
      if (to <= from) return [];
      const i = names.next("oh");
      return [{ k: "for", v: i, n: to - from, body: row(add(int(from), vr(i)), check) }];
    };
    return [...head, ...rows(0, rowLo, true), ...rows(rowLo, rowHi, false), ...rows(rowHi, OH, true)];
  });
}

const conv: Lowering = (c) => {
  const { node, ins: [x, w, b], outs: [y] } = c;
  if (c.cpu && isF32(x, w, b, y) && x!.shape.length === 4) {
    const group = attrNum(node, "group", 1);
    if (group === 1) return gemmConv(c);
    if (group === x!.shape[1] && w!.shape[0] === group) return depthwise(c);
  }
  return NN_LOWERINGS.Conv(c);
};

/** Gemm: A·B with A, B optionally transposed, then alpha and beta·C (broadcast) per element. */
const gemm: Lowering = (c) => {
  const { node, ins: [a, b, cc], outs: [y] } = c;
  if (!c.cpu || !isF32(a, b, cc, y)) return NN_LOWERINGS.Gemm(c);
  const { M, N, K } = gemmDims(node, a!.shape, b!.shape);
  const ta = attrNum(node, "transA", 0), tb = attrNum(node, "transB", 0);
  const alpha = attrNum(node, "alpha", 1), beta = attrNum(node, "beta", 1);
  const bData = b!.data && !b!.at ? toNumbers(b!.data) : undefined;
  const bAt = (k: Expr, j: Expr) => f32(load(b!, tb ? [j, k] : [k, j]));
  const nt = ntOf(c, N);
  const withC = cc && beta !== 0;
  return gemmKernel(c, {
    batch: [],
    rows: M,
    cols: N,
    depth: K,
    a: (_, r, k) => f32(load(a!, ta ? [k, r] : [r, k])),
    bConst: bData ? (k, j) => bData[tb ? j * K + k : k * N + j] : undefined,
    packB: bData ? undefined : (_, j0, put, full) => nest(c.names, [K, nt], ([k, j]) => {
      const col = add(j0, j);
      return [put(k, j, full ? bAt(k, col) : select(lt(col, int(N)), bAt(k, col), cst(0)))];
    }, false),
    y,
    yAt: (_, r, j) => [r, j],
    post: alpha !== 1 || withC ? (_, r, j, v) => {
      let out = alpha === 1 ? v : mul(cst(alpha), v);
      if (withC) {
        const cv = f32(loadBroadcast(cc!, [r, j]));
        out = add(out, beta === 1 ? cv : mul(cst(beta), cv));
      }
      return out;
    } : undefined,
  });
};

/** MatMul of two operands of rank >= 2 (batch dims broadcast): one GEMM per batch index. */
const matmul: Lowering = (c) => {
  const { node, ins: [a, b], outs: [y] } = c;
  if (!c.cpu || !isF32(a, b, y) || a!.shape.length < 2 || b!.shape.length < 2) return NN_LOWERINGS.MatMul(c);
  const { batch, M, N, K } = matmulShape(node, a!.shape, b!.shape);
  const batchIdx = (r: Ref, idx: Expr[]) => {
    const bs = r.shape.slice(0, -2);
    return bs.map((d, i) => (d === 1 ? int(0) : idx[i + batch.length - bs.length]));
  };
  const bData = b!.data && !b!.at && b!.shape.length === 2 ? toNumbers(b!.data) : undefined;
  const nt = ntOf(c, N);
  return gemmKernel(c, {
    batch,
    rows: M,
    cols: N,
    depth: K,
    a: (bi, r, k) => f32(load(a!, [...batchIdx(a!, bi), r, k])),
    bConst: bData ? (k, j) => bData[k * N + j] : undefined,
    packB: bData ? undefined : (bi, j0, put, full) => nest(c.names, [K, nt], ([k, j]) => {
      const col = add(j0, j);
      const v = f32(load(b!, [...batchIdx(b!, bi), k, col]));
      return [put(k, j, full ? v : select(lt(col, int(N)), v, cst(0)))];
    }, false),
    y,
    yAt: (bi, r, j) => [...bi, r, j],
  });
};

export const DENSE_LOWERINGS: Record<string, Lowering> = { Conv: conv, Gemm: gemm, MatMul: matmul };
