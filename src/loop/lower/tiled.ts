import { attrNum } from "../../graph/ir.js";
import { convGeometry, gemmDims, matmulShape } from "../../graph/ops/nn.js";
import { add, and, cast, cst, div, ge, if_, int, let_, load, loadBroadcast, loadFlat, lt, mod, mul, select, set, store, sub, unflat, vr, type Ref } from "../build.js";
import type { Expr, GridDim, Stmt } from "../ir.js";
import type { LowerCtx } from "./types.js";

/**
 * GPU lowerings of Conv, Gemm and MatMul as matrix products tiled through work-group memory:
 *   y(b, r, j) = out(b, r, j, init(b, r) + Σ_k A(b, r, k) · B(b, k, j)).
 * Each work-group computes a TS×TS tile of y, one element per work-item. For each step of TS along
 * k its work-items copy a TS×TS tile of A and one of B into group memory, one element of each per
 * work-item (zero past the matrices' edges), wait at a barrier and accumulate from group memory:
 * each element of A and B leaves global memory once per tile that needs it, not once per output.
 * A convolution is the product of its weights [M][C·KH·KW] with its input gathered im2col-style,
 * each element of B read from the input where it lies (zero in the padding).
 */
interface TiledSpec {
  /** independent products (a flat batch index) */
  batch: number;
  rows: number;
  cols: number;
  depth: number;
  /** A's and B's elements, read only inside the matrices */
  a: (b: Expr, r: Expr, k: Expr) => Expr;
  b: (b: Expr, k: Expr, j: Expr) => Expr;
  /** the accumulator's starting value per row (a convolution's bias) */
  init?: (b: Expr, r: Expr) => Expr;
  /** stores the finished sum of (r, j), through any epilogue */
  out: (b: Expr, r: Expr, j: Expr, v: Expr) => Stmt;
}

const f32 = (e: Expr) => cast(e, "float32");
const all = (conds: Expr[]) => (conds.length ? conds.reduce((x, y) => and(x, y)) : undefined);
const guard = (conds: Expr[], v: Expr) => {
  const c = all(conds);
  return c ? select(c, v, cst(0)) : v;
};

function tiledGemm(c: LowerCtx, s: TiledSpec): Stmt[] {
  const TS = c.gpu!.tile;
  const n = c.names;
  const [rg, cg, ty, tx, row, col, acc, kt, ka, kb, kk, as, bs] = ["rg", "cg", "ty", "tx", "row", "col", "acc", "kt", "ka", "kb", "kk", "As", "Bs"].map((p) => n.next(p));
  const dims: GridDim[] = [
    { group: rg, groups: Math.ceil(s.rows / TS), item: ty, items: TS },
    { group: cg, groups: Math.ceil(s.cols / TS), item: tx, items: TS },
  ];
  let b: Expr = int(0);
  if (s.batch > 1) {
    const bg = n.next("bg");
    dims.unshift({ group: bg, groups: s.batch, item: n.next("bi"), items: 1 });
    b = vr(bg);
  }
  const r = vr(row), j = vr(col), k0 = mul(vr(kt), int(TS));
  const rowIn = s.rows % TS ? [lt(r, int(s.rows))] : [];
  const colIn = s.cols % TS ? [lt(j, int(s.cols))] : [];
  const kIn = (k: Expr) => (s.depth % TS ? [lt(k, int(s.depth))] : []);
  const at = (y: Expr, x: Expr) => add(mul(y, int(TS)), x);
  const tile = (buf: string, idx: Expr): Expr => ({ k: "load", buf, idx, dtype: "float32" });
  // Work-item (ty, tx) copies A's (row, k0 + tx) and B's (k0 + ty, col).
  const step: Stmt[] = [
    let_(ka, "int32", add(k0, vr(tx))),
    let_(kb, "int32", add(k0, vr(ty))),
    { k: "store", buf: as, idx: at(vr(ty), vr(tx)), val: guard([...rowIn, ...kIn(vr(ka))], f32(s.a(b, r, vr(ka)))) },
    { k: "store", buf: bs, idx: at(vr(ty), vr(tx)), val: guard([...kIn(vr(kb)), ...colIn], f32(s.b(b, vr(kb), j))) },
    { k: "barrier" },
    { k: "for", v: kk, n: TS, body: [set(acc, add(vr(acc, "float32"), mul(tile(as, at(vr(ty), vr(kk))), tile(bs, at(vr(kk), vr(tx))))))] },
    { k: "barrier" },
  ];
  const done = all([...rowIn, ...colIn]);
  const out = s.out(b, r, j, vr(acc, "float32"));
  return [{
    k: "grid",
    dims,
    body: [
      { k: "local", name: as, dtype: "float32", n: TS * TS, scope: "group" },
      { k: "local", name: bs, dtype: "float32", n: TS * TS, scope: "group" },
      let_(row, "int32", add(mul(vr(rg), int(TS)), vr(ty))),
      let_(col, "int32", add(mul(vr(cg), int(TS)), vr(tx))),
      let_(acc, "float32", s.init ? guard(rowIn, f32(s.init(b, r))) : cst(0)),
      { k: "for", v: kt, n: Math.ceil(s.depth / TS), body: step },
      done ? if_(done, [out]) : out,
    ],
  }];
}

const isF32 = (...rs: (Ref | undefined)[]) => rs.every((r) => !r || r.dtype === "float32");

/** Whether a product is worth tiling: at least one tile of depth, and not a sliver in either direction. */
const tiles = (c: LowerCtx, rows: number, cols: number, depth: number) => {
  const TS = c.gpu!.tile;
  return depth >= TS && rows >= TS / 2 && cols >= TS / 2;
};

/** A 2-D float32 convolution of one group (group 1) as a tiled product, or undefined. */
export function tiledConv(c: LowerCtx): Stmt[] | undefined {
  const { node, ins: [x, w, bias], outs: [y] } = c;
  if (!c.gpu || !isF32(x, w, bias, y) || x!.shape.length !== 4 || attrNum(node, "group", 1) !== 1) return undefined;
  const geo = convGeometry(node, x!.shape, w!.shape, bias?.shape);
  const [N, C, H, W] = x!.shape;
  const M = w!.shape[0];
  const [KH, KW] = geo.kernel, [sh, sw] = geo.strides, [dh, dw] = geo.dilations, [ph, pw] = geo.padsBegin;
  const [OH, OW] = geo.out;
  const K = C * KH * KW;
  if (!tiles(c, M, OH * OW, K)) return undefined;
  return tiledGemm(c, {
    batch: N,
    rows: M,
    cols: OH * OW,
    depth: K,
    a: (_, m, k) => loadFlat(w!, add(mul(m, int(K)), k)),
    b: (b, k, j) => {
      const ci = div(k, int(KH * KW)), kh = mod(div(k, int(KW)), int(KH)), kw = mod(k, int(KW));
      const ih = add(sub(mul(div(j, int(OW)), int(sh)), int(ph)), mul(kh, int(dh)));
      const iw = add(sub(mul(mod(j, int(OW)), int(sw)), int(pw)), mul(kw, int(dw)));
      const inside = [ge(ih, int(0)), lt(ih, int(H)), ge(iw, int(0)), lt(iw, int(W))];
      return select(all(inside)!, f32(load(x!, [b, ci, ih, iw])), cst(0));
    },
    init: bias ? (_, m) => load(bias, [m]) : undefined,
    out: (b, m, j, v) => store(y, [b, m, div(j, int(OW)), mod(j, int(OW))], v),
  });
}

/** Gemm in float32 (A, B optionally transposed; alpha, beta·C broadcast) as a tiled product, or undefined. */
export function tiledGemmOp(c: LowerCtx): Stmt[] | undefined {
  const { node, ins: [a, b, cc], outs: [y] } = c;
  if (!c.gpu || !isF32(a, b, cc, y)) return undefined;
  const { M, N, K } = gemmDims(node, a!.shape, b!.shape);
  if (!tiles(c, M, N, K)) return undefined;
  const ta = attrNum(node, "transA", 0), tb = attrNum(node, "transB", 0);
  const alpha = attrNum(node, "alpha", 1), beta = attrNum(node, "beta", 1);
  return tiledGemm(c, {
    batch: 1,
    rows: M,
    cols: N,
    depth: K,
    a: (_, r, k) => load(a!, ta ? [k, r] : [r, k]),
    b: (_, k, j) => load(b!, tb ? [j, k] : [k, j]),
    out: (_, r, j, v) => {
      let o = alpha === 1 ? v : mul(cst(alpha), v);
      if (cc && beta !== 0) {
        const cv = f32(loadBroadcast(cc, [r, j]));
        o = add(o, beta === 1 ? cv : mul(cst(beta), cv));
      }
      return store(y, [r, j], o);
    },
  });
}

/** MatMul of two float32 operands of rank >= 2 (batch dims broadcast) as tiled products, or undefined. */
export function tiledMatMul(c: LowerCtx): Stmt[] | undefined {
  const { node, ins: [a, b], outs: [y] } = c;
  if (!c.gpu || !isF32(a, b, y) || a!.shape.length < 2 || b!.shape.length < 2) return undefined;
  const { batch, M, N, K } = matmulShape(node, a!.shape, b!.shape);
  if (!tiles(c, M, N, K)) return undefined;
  const batchIdx = (r: Ref, flatB: Expr) => {
    const idx = unflat(batch, flatB);
    const bs = r.shape.slice(0, -2);
    return bs.map((d, i) => (d === 1 ? int(0) : idx[i + batch.length - bs.length]));
  };
  return tiledGemm(c, {
    batch: batch.reduce((p, d) => p * d, 1),
    rows: M,
    cols: N,
    depth: K,
    a: (bi, r, k) => load(a!, [...batchIdx(a!, bi), r, k]),
    b: (bi, k, j) => load(b!, [...batchIdx(b!, bi), k, j]),
    out: (bi, r, j, v) => store(y, [...unflat(batch, bi), r, j], v),
  });
}
