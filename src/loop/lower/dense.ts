import { numel, toNumbers, type Tensor } from "../../core/tensor.js";
import { attrNum } from "../../graph/ir.js";
import { convGeometry, gemmDims, matmulShape, poolGeometry, windowsInMap, type Window } from "../../graph/ops/nn.js";
import {
  add, and, cast, cst, div, flat, ge, gt, int, le, let_, load, loadBroadcast, loadFlat, lt, max, min, mod, mul, nest, select, set, splat, store, sub, threadId, unflat, vr,
  vstore, if_, type Names, type Ref,
} from "../build.js";
import { lanesIn, mapVectorStores, touched, withMask, type Expr, type Stmt } from "../ir.js";
import { vectorizeLanes } from "../vectorize.js";
import { gemmKernel, panelRows, tileColumns, type GemmSpec } from "./gemm.js";
import { NN_LOWERINGS } from "./nn.js";
import { tiledConv, tiledGemmOp, tiledMatMul } from "./tiled.js";
import { inside, phaseCopy, phasesRead } from "./phases.js";
import { slideTaps } from "./slide.js";
import { sliceElems, type LowerCtx, type Lowering } from "./types.js";
import { winogradConv, winogradFits } from "./winograd.js";

/**
 * Fast float32 lowerings of the compute-heavy ops for CPUs with vectors: convolution as a packed
 * GEMM (1×1 convolutions read the input as the B matrix directly, larger kernels gather it
 * im2col-style one tile at a time; 3×3 ones with many channels by Winograd's transform,
 * winograd.ts), depthwise convolution as direct loops whose interior needs no bounds checks, and
 * Gemm/MatMul on the same micro-kernels. Anything else (other types, ranks, grouped convolutions,
 * no vector shape) takes the plain lowering. On a GPU, Conv, Gemm and MatMul are products tiled
 * through work-group memory where they are large enough (tiled.ts).
 */

const isF32 = (...rs: (Ref | undefined)[]) => rs.every((r) => !r || r.dtype === "float32");
const f32 = (e: Expr) => cast(e, "float32");

/** Output positions o in [lo, hi) whose taps o·s − p + k·d stay inside [0, size) for every k. */
function interior(size: number, out: number, k: number, s: number, p: number, d: number): [number, number] {
  const lo = Math.min(out, Math.max(0, Math.ceil(p / s)));
  const hi = Math.max(lo, Math.min(out, Math.floor((size - 1 + p - (k - 1) * d) / s) + 1));
  return [lo, hi];
}

/**
 * Runs of output columns within one image row, on a grid of `width` columns per row of which the
 * first `OW` exist; none when a vector is wider than a row (the test could never hold).
 */
function runs(width: number, OW: number, lanes: number): GemmSpec["run"] {
  if (OW < lanes) return undefined;
  return { ok: (j, n) => le(add(mod(j, int(width)), int(n)), int(OW)), at: ([n], m, j, l) => [n, m, div(j, int(width)), add(mod(j, int(width)), l)] };
}

/** A 1×1 convolution with stride 1 and no padding: its input, as it is, is the GEMM's B. */
const isPointwise = (geo: Window) =>
  geo.kernel.every((k) => k === 1) && geo.strides.every((s) => s === 1) && geo.padsBegin.every((p) => p === 0) && geo.padsEnd.every((p) => p === 0);

/** A convolution's weights as the GEMM's broadcast operand: row m = output channel m, already row-major [M][K]. */
function convRows(w: Ref & { data?: Tensor }, M: number, K: number): Pick<GemmSpec, "rows" | "depth" | "a" | "aConst"> {
  const data = w.data && !w.at ? toNumbers(w.data) : undefined;
  return { rows: M, depth: K, a: (_, m, k) => f32(loadFlat(w, add(mul(m, int(K)), k))), aConst: data ? (m, k) => data[m * K + k] : undefined };
}

/** A convolution as a GEMM: what runs before it (a copy of the input), the product, and its columns per output row. */
interface ConvPlan {
  pre: Stmt[];
  spec: GemmSpec;
  grid: number;
}

function gemmConv(c: LowerCtx): ConvPlan {
  const { node, ins: [x, w, b], outs: [y] } = c;
  const geo = convGeometry(node, x!.shape, w!.shape, b?.shape);
  const [N, C, H, W] = x!.shape;
  const M = w!.shape[0];
  const [KH, KW] = geo.kernel, [sh, sw] = geo.strides, [dh, dw] = geo.dilations, [ph, pw] = geo.padsBegin;
  const [OH, OW] = geo.out;
  const P = OH * OW, K = C * KH * KW;
  const pointwise = isPointwise(geo);
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
    cols: P,
    ...convRows(w!, M, K),
    packB: ([n], j0, put, full) => {
      const at = pointwise ? undefined : corners(j0, full);
      const tapIndex = (ci: Expr, kh: Expr, kw: Expr) => add(mul(add(mul(ci, int(KH)), kh), int(KW)), kw);
      /** Column j of the tile for tap (ci, kh, kw), gathered element by element with bounds checks. */
      const gather = (ci: Expr, kh: Expr, kw: Expr, j: Expr): Stmt[] => {
        const k = tapIndex(ci, kh, kw);
        const p = add(j0, j);
        let v: Expr, ok: Expr | undefined;
        if (pointwise) {
          // Through the spatial axes rather than one flat index: an inlined producer (a Slice of the
          // channels) then reads p where it lies instead of dividing a flat index back into axes.
          v = load(x!, [n, ci, ...unflat(x!.shape.slice(2), p)]);
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
      };
      const L = c.cpu!.lanes;
      const gathered = () => [...(at?.fill ?? []), ...nest(c.names, [C, KH, KW], ([ci, kh, kw]) => nest(c.names, [nt], ([j]) => gather(ci, kh, kw, j), false), false)];
      if (pointwise || L === 1 || sw > 2 || OW < L) return gathered();
      // A vector of columns in one output row, whose taps all lie inside the input, reads them with
      // one (stride-sw) vector load: a first layer's few channels make this copy as costly as the
      // product itself. The others are gathered; all are when the input has no vector form (a
      // fused producer that is not one).
      let vectors = false;
      const mixed = [...at!.fill, ...nest(c.names, [nt / L], ([jv]) => {
        const [p0, oh, ow0] = ["p0", "oh", "ow0"].map((s) => c.names.next(s));
        const head = [
          let_(p0, "int32", add(j0, mul(jv, int(L)))),
          let_(oh, "int32", div(vr(p0), int(OW))),
          let_(ow0, "int32", mod(vr(p0), int(OW))),
        ];
        return [...head, ...nest(c.names, [C, KH, KW], ([ci, kh, kw]) => {
          const ih = add(sub(mul(vr(oh), int(sh)), int(ph)), mul(kh, int(dh)));
          const iw0 = add(sub(mul(vr(ow0), int(sw)), int(pw)), mul(kw, int(dw)));
          const inside = [le(add(vr(ow0), int(L)), int(OW)), ...(full ? [] : [le(add(vr(p0), int(L)), int(P))]), ge(ih, int(0)), lt(ih, int(H)), ge(iw0, int(0)), lt(add(iw0, int((L - 1) * sw)), int(W))];
          const l = c.names.next("l");
          const lane = add(mul(jv, int(L)), vr(l));
          const run = (row: Expr, col0: Expr) => vectorizeLanes([put(tapIndex(ci, kh, kw), lane, f32(load(x!, [n, ci, row, add(col0, mul(vr(l), int(sw)))])))], l, int(0), L);
          const vector = run(ih, iw0);
          const scalar: Stmt[] = [{ k: "for", v: l, n: L, body: gather(ci, kh, kw, lane) }];
          vectors ||= !!vector;
          // A vector that crosses into the next output row: its first r lanes from this input row
          // and the rest from sh rows down, each one vector load stored under a mask of its lanes.
          // Each load reads only memory between the starts of rows ih and ih + sh + 1, so only an
          // input in memory as it is (not an inlined producer, whose rows may lie elsewhere); the
          // lanes outside a load's row are the ones its mask drops.
          const r = sub(int(OW), vr(ow0)), next = add(mul(kw, int(dw)), int(-pw));
          const across = !x!.at && L <= OW && (L - 1) * sw < W ? run(add(ih, int(sh)), sub(next, mul(r, int(sw)))) : undefined;
          if (!vector) return scalar;
          if (!across) return [if_(inside.reduce((a2, b2) => and(a2, b2)), vector, scalar)];
          const crosses = [lt(r, int(L)), ...(full ? [] : [le(add(vr(p0), int(L)), int(P))]), ge(ih, int(0)), lt(add(ih, int(sh)), int(H)), ge(iw0, int(0)), lt(add(iw0, mul(sub(r, int(1)), int(sw))), int(W)), ge(next, int(0)), lt(add(next, mul(sub(int(L - 1), r), int(sw))), int(W))];
          const split = [...withMask(vector, { from: int(0), to: r }), ...withMask(across, { from: r, to: int(L) })];
          return [if_(inside.reduce((a2, b2) => and(a2, b2)), vector, [if_(crosses.reduce((a2, b2) => and(a2, b2)), split, scalar)])];
        }, false)];
      }, false)];
      return vectors ? mixed : gathered();
    },
    init: b ? (_, m) => f32(load(b, [m])) : undefined,
    y,
    yAt: ([n], m, j) => [n, m, div(j, int(OW)), mod(j, int(OW))],
    // A fused epilogue's loads index each pixel by (row, column): a run of columns in one row keeps
    // that index affine, so the epilogue vectorizes.
    run: runs(OW, OW, c.cpu!.lanes),
  };
  return { pre: [], spec, grid: OW };
}

const ntOf = (c: LowerCtx, cols: number) => tileColumns(c.cpu!, cols);

/**
 * A convolution of one image as the transposed product: rows are output pixels, columns output
 * channels, so a small map (7×7: 49 pixels) does not leave most of a tile of columns empty. The
 * weights are the constant B, packed at compile time; the input is gathered im2col-style into
 * panels of pixels once, and the results lie a map apart along the columns: whole tiles are
 * scattered from the registers, the ragged last one goes to the output one by one through the tile.
 */
function transposedConv(c: LowerCtx): ConvPlan {
  const { node, ins: [x, w, b], outs: [y], names } = c;
  const geo = convGeometry(node, x!.shape, w!.shape, b?.shape);
  const [, C, H, W] = x!.shape;
  const M = w!.shape[0];
  const [KH, KW] = geo.kernel, [sh, sw] = geo.strides, [dh, dw] = geo.dilations, [ph, pw] = geo.padsBegin;
  const [OH, OW] = geo.out;
  const P = OH * OW, K = C * KH * KW;
  const weights = toNumbers(w!.data!);
  // The taps read from a zero-padded copy of the input (only the rows and columns some tap reads),
  // or from the input itself when none falls outside it: a tap is then one load at a pixel's offset
  // plus the tap's, with no bounds checks.
  const Hp = (OH - 1) * sh + (KH - 1) * dh + 1, Wp = (OW - 1) * sw + (KW - 1) * dw + 1;
  // A same-size convolution packs its panels flat (see flatConv), with no padded copy.
  const flat = readsFlat(c);
  const copy = !flat && (ph > 0 || pw > 0 || Hp > H || Wp > W || !!x!.at);
  const [HS, WS] = copy ? [Hp, Wp] : [H, W];
  const src: Ref = copy ? c.shared!(C * Hp * Wp) : x!;
  // Row by row in vectors: the padding's columns zeroed, the input's copied, rows outside it zeroed.
  const L = c.cpu!.lanes;
  const lo = Math.min(Wp, pw), hi = Math.max(lo, Math.min(Wp, pw + W));
  const pre = !copy ? [] : nest(names, [C, Hp], ([ci, i]) => {
    const ih = add(i, int(-ph));
    const to = (j: Expr, val: Expr): Stmt[] => [{ k: "store", buf: src.buf, idx: add(mul(add(mul(ci, int(Hp)), i), int(Wp)), j), val }];
    const zeros = (from: number, n: number) => vectorRun(names, n, L, (j) => to(j, cst(0)), false, from);
    const row = [...zeros(0, lo), ...vectorRun(names, hi, L, (j) => to(j, f32(load(x!, [int(0), ci, ih, add(j, int(-pw))]))), false, lo), ...zeros(hi, Wp)];
    return [if_(and(ge(ih, int(0)), lt(ih, int(H))), row, zeros(0, Wp))];
  });
  const spec: GemmSpec = {
    batch: [1],
    rows: P,
    cols: M,
    depth: K,
    a: () => cst(0),
    bConst: (k, j) => weights[j * K + k],
    packA: flat ? (row0, h, put) => flatTaps(c, int(0), row0, h, put, true) : (row0, h, put) => runTaps(row0, h, put) ?? gatheredTaps(row0, h, put),
    y,
    yAt: (_, p, m) => [int(0), m, div(p, int(OW)), mod(p, int(OW))],
    strided: true,
    post: b ? (_, _p, m, v) => add(v, f32(load(b, [m]))) : undefined,
  };
  return { pre, spec, grid: OW };

  /** Tap (ci, kh, kw)'s row of a panel, and its offset in the source from a pixel's top-left tap. */
  function tapIndex(ci: Expr, kh: Expr, kw: Expr): Expr {
    return add(mul(add(mul(ci, int(KH)), kh), int(KW)), kw);
  }
  function tapOffset(ci: Expr, kh: Expr, kw: Expr): Expr {
    return add(add(mul(ci, int(HS * WS)), mul(kh, int(dh * WS))), mul(kw, int(dw)));
  }

  /**
   * A panel's pixels output row by output row: the run of them in one row reads each tap sw apart
   * along one row of the source, a (stride-sw) vector load stored under a mask of the run's lanes,
   * where the load stays inside the source (else element by element). Copied element by element
   * through a table of offsets, ResNet-18's layer3 stride-2 convolution spent 0.10 ms of its 0.73
   * on one thread packing its panels. Rows narrower than 4 pixels keep that table.
   */
  function runTaps(row0: Expr, h: number, put: (k: Expr, r: Expr, v: Expr) => Stmt): Stmt[] | undefined {
    if (L === 1 || sw > 2 || OW < 4) return undefined;
    const rows = Math.min(h, Math.ceil((h - 1) / OW) + 1), nv = Math.ceil(Math.min(h, OW) / L), size = C * HS * WS;
    let vectors = true;
    const out = nest(names, [rows], ([s]) => {
      const [oy, rf, rt] = ["oy", "rf", "rt"].map((t) => names.next(t));
      const head = [
        let_(oy, "int32", add(div(row0, int(OW)), s)),
        let_(rf, "int32", max(int(0), sub(mul(vr(oy), int(OW)), row0))),
        let_(rt, "int32", min(int(h), sub(mul(add(vr(oy), int(1)), int(OW)), row0))),
      ];
      const taps = nest(names, [C, KH, KW], ([ci, kh, kw]) => {
        const k = tapIndex(ci, kh, kw);
        const base = add(tapOffset(ci, kh, kw), add(mul(vr(oy), int(sh * WS)), mul(sub(add(row0, vr(rf)), mul(vr(oy), int(OW))), int(sw))));
        return nest(names, [nv], ([jv]) => {
          const l = names.next("l"), first = mul(jv, int(L)), n = sub(sub(vr(rt), vr(rf)), first);
          const lane = (e: Expr) => [put(k, add(add(vr(rf), first), e), f32({ k: "load", buf: src.buf, idx: add(base, mul(add(first, e), int(sw))), dtype: src.dtype }))];
          const vector = vectorizeLanes(lane(vr(l)), l, int(0), L);
          if (!vector) vectors = false;
          const scalar: Stmt[] = [{ k: "for", v: l, n: L, body: [if_(lt(vr(l), n), lane(vr(l)))] }];
          const fits = le(add(add(base, mul(first, int(sw))), int((L - 1) * sw)), int(size - 1));
          return [if_(gt(n, int(0)), vector ? [if_(fits, withMask(vector, { from: int(0), to: min(int(L), n) }), scalar)] : scalar)];
        }, false);
      }, false);
      return [...head, if_(lt(vr(rf), vr(rt)), taps)];
    }, false);
    return vectors ? out : undefined;
  }

  function gatheredTaps(row0: Expr, h: number, put: (k: Expr, r: Expr, v: Expr) => Stmt): Stmt[] {
    // Each pixel's top-left tap, once per panel.
    const off = names.next("off");
    const corner: Stmt[] = [
      { k: "local", name: off, dtype: "int32", n: h },
      ...nest(names, [h], ([r]) => {
        const p = add(row0, r);
        return [{ k: "store", buf: off, idx: r, val: add(mul(div(p, int(OW)), int(sh * WS)), mul(mod(p, int(OW)), int(sw))) }];
      }, false),
    ];
    return [...corner, ...nest(names, [C, KH, KW], ([ci, kh, kw]) => {
      const at = (r: Expr): Expr => add(tapOffset(ci, kh, kw), { k: "load", buf: off, idx: r, dtype: "int32" });
      return nest(names, [h], ([r]) => [put(tapIndex(ci, kh, kw), r, f32({ k: "load", buf: src.buf, idx: at(r), dtype: src.dtype }))], false);
    }, false)];
  }
}

/**
 * Whether a convolution runs transposed (see transposedConv): one image, constant weights, a map
 * computed whole if a banded pool ends it (a band's product must be on the grid), and less work by
 * this estimate, in vector multiply-adds: the products over their useful lanes (the
 * plain product's columns are pixels, on the phase grid when it shifts; a panel of pixels past
 * the last whole one costs at least two rows' work, as its loads of the weights do not shrink with
 * it), the transposed one's packing and stores element by element (about two each: a first layer
 * of 40 taps per output ran 1.4× slower transposed). Under a stitched reduction the transposed
 * product's stores are vector adds into the channels' partial results, and the plain one sums each
 * vector of pixels across its lanes (SqueezeNet 1.1's last convolution, 1000 channels on a 13×13
 * map, into its global average pool: transposed that way). It must win by 5%.
 */
const transposes = (c: LowerCtx, shifted: boolean): boolean => {
  const [x, w] = c.ins;
  if (x!.shape[0] !== 1 || !w!.data || w!.at || (c.pooled && !poolsWhole(c))) return false;
  const geo = convGeometry(c.node, x!.shape, w!.shape, c.ins[2]?.shape);
  const [OH, OW] = geo.out, P = OH * OW, M = w!.shape[0], K = w!.shape[1] * geo.kernel[0] * geo.kernel[1], L = c.cpu!.lanes;
  const Wq = OW + Math.floor(((geo.kernel[1] - 1) * geo.dilations[1]) / geo.strides[1]);
  const cols = shifted ? (OH - 1) * Wq + OW : P;
  const padded = (n: number, per: number) => Math.ceil(n / per) * per;
  const plain = (M * padded(cols, ntOf(c, cols)) * K + cols * K) / L + (c.stitched ? M * cols : (M * cols) / L);
  const mr = panelRows(c.cpu!, M, true), tail = P % mr;
  const transposed = ((P - tail + (tail ? Math.max(tail, 2) : 0)) * padded(M, ntOf(c, M)) * K) / L + P * K + (c.stitched ? (2 * P * M) / L : 2 * P * M);
  return transposed < 0.95 * plain;
};

/** One output of a per-channel window op: its start, the step per tap, from the tap's value. */
interface WindowFold {
  /** statements once per (image, channel): the depthwise filter's taps read into locals */
  head: (n: Expr, ch: Expr) => Stmt[];
  init: Expr;
  step: (acc: Expr, x: Expr, kh: number, kw: number) => Expr;
  /** a second accumulator's start and how the two end as one, where the fold allows two (a sum) */
  pair?: { init: Expr; combine: (a: Expr, b: Expr) => Expr };
}

/** The most outputs a window op computes on its padded grid at once, in a stack array. */
const MAX_WIDE = 4096;
/** The most vectors of outputs a window op stores packed (see windowOp): each is its own code. */
const MAX_PACKED = 32;

/** `ss` with its vector stores packing the lanes of `mask`. */
const packed = (ss: Stmt[], mask: number): Stmt[] => mapVectorStores(ss, (s) => ({ ...s, pack: mask }));

/**
 * The size, in float32, up to which a window op always copies a channel, and the most a block of
 * copies takes per thread (16 KiB, half of a 32 KiB L1); larger copies are taken one channel at a
 * time, and only where the direct loops would run too much scalar code.
 */
const MAX_COPY = 4096;

/**
 * body(i) for i = 0..n−1 in vectors: full width while they fit, then halves down to 4 lanes, and,
 * with `overlap`, one last vector that ends at n and overlaps the one before (its elements done
 * twice, alike), as wide as covers what is left (13 left of 16 lanes: one vector, not 8 + 4 + 4);
 * scalar for what is left otherwise, or when the body has no vector form. That last vector may
 * reach below `from`: with `overlap`, the whole run from 0 must be the caller's.
 */
function vectorRun(names: Names, n: number, lanes: number, body: (i: Expr) => Stmt[], overlap: boolean, from = 0): Stmt[] {
  const left = n - from;
  if (left <= 0) return [];
  for (let L = lanes; L >= 4; L /= 2) {
    if (left < L && !(overlap && n >= L && (L === 4 || left > L / 2))) continue;
    const l = names.next("l");
    if (left < L) return vectorizeLanes(body(add(int(n - L), vr(l))), l, int(0), L) ?? scalarRun(names, n, body, from);
    const i = names.next("i");
    const vec = vectorizeLanes(body(add(int(from), add(mul(vr(i), int(L)), vr(l)))), l, int(0), L);
    if (!vec) break;
    const whole = Math.floor(left / L) * L;
    return [{ k: "for", v: i, n: whole / L, body: vec }, ...vectorRun(names, n, lanes, body, overlap, from + whole)];
  }
  return scalarRun(names, n, body, from);
}

function scalarRun(names: Names, n: number, body: (i: Expr) => Stmt[], from: number): Stmt[] {
  const i = names.next("i");
  return [{ k: "for", v: i, n: n - from, body: body(add(int(from), vr(i))) }];
}

/**
 * A per-channel 2-D window op on float32 [N, C, H, W] (depthwise convolution, max pooling), per
 * output row: the columns whose taps all fall inside the input run without bounds checks, a vector
 * of columns at a time when the taps of neighbouring columns are neighbours, or every other element
 * (stride 2, loaded as two vectors and shuffled): full-width vectors, then halves down to 4 lanes
 * for what is left, so narrow maps (14 or 7 columns under 16-lane AVX-512) still run mostly in
 * vectors. The rows and columns near the padding check each tap.
 *
 * Where a channel's copy fits in MAX_COPY, or the above would leave more than a quarter of the
 * outputs to scalar code (a 5×5 window on a 7×7 map has 3 columns clear of the padding), or any
 * under a fused epilogue that calls libm, each channel is first copied into per-thread scratch with
 * its padding written out (`pad`: what a tap outside the input reads), split into its stride
 * phases, and every row then runs in unit-stride vectors with no checks; a row that is not a whole
 * number of vectors ends with one that overlaps the one before (see vectorRun). MobileNetV2,
 * MNASNet 1.0 and EfficientNet-B0 on one thread, sum of per-kernel times, before → after copying
 * whenever it fits, by phases, a block of channels at a time: 0.92×, 0.94×, 0.96× (min of three
 * interleaved profiling runs each).
 */
function windowOp(c: LowerCtx, geo: Window, fold: WindowFold, pad: number): Stmt[] {
  const { ins: [x], outs: [y], names } = c;
  const [, , H, W] = x!.shape;
  const [KH, KW] = geo.kernel, [sh, sw] = geo.strides, [dh, dw] = geo.dilations, [ph, pw] = geo.padsBegin;
  const [OH, OW] = geo.out;
  const interiorRows = interior(H, OH, KH, sh, ph, dh), interiorCols = interior(W, OW, KW, sw, pw, dw);
  const vectorCols = sw <= 2 && c.cpu!.lanes >= 4 ? Math.floor((interiorCols[1] - interiorCols[0]) / 4) * 4 : 0;
  // A fused epilogue with a libm call (a SiLU) costs several times the window in scalar code. One
  // that reads memory must see each output once, no overlapping vectors: it may fold into memory (a
  // stitched pool), or read a residual whose memory the output takes over in place.
  const probe = store(y, y.shape.map(() => int(0)), cst(0));
  const overlap = touched([probe]).reads.size === 0;
  const costlyEpilogue = !!y.put && /"op":"(exp|log|tanh|erf|sqrt|\/)"/.test(JSON.stringify(probe));
  const scalarOutputs = OH * OW - (interiorRows[1] - interiorRows[0]) * vectorCols;
  // The padded copy as its sh·sw stride phases (see phaseCopy), each Hq rows of Wq columns: tap
  // (kh, kw) of output (oh, ow) reads phase (kh·dh mod sh, kw·dw mod sw) at row oh + ⌊kh·dh/sh⌋,
  // column ow + ⌊kw·dw/sw⌋, so neighbouring outputs read neighbouring elements at any stride.
  const Hq = OH + Math.floor(((KH - 1) * dh) / sh), Wq = OW + Math.floor(((KW - 1) * dw) / sw), phaseElems = Hq * Wq;
  // A convolution in place (convInPlace) reads only the copies: its output overwrites its input.
  const inPlace = attrNum(c.node, "inPlace", 0) === 1;
  const padded = sw <= 2 && c.cpu!.lanes >= 4 && OW >= 4 && (inPlace || sh * sw * phaseElems <= MAX_COPY || scalarOutputs > (OH * OW) / 4 || (costlyEpilogue && scalarOutputs > 0));
  if (inPlace && !padded) throw new Error(`internal: '${c.node.name}' is marked in place but its windows would read the input itself`);
  // Rows narrower than a vector: the outputs on the phase grid, q = oh·Wq + ow, read their taps at
  // q plus a constant, so whole vectors run across rows; they go to a stack array (the columns past
  // OW computed and dropped), then row by row out.
  const L = c.cpu!.lanes;
  const Q = (OH - 1) * Wq + OW;
  const wide = padded && OW < L && Q >= L && Q <= MAX_WIDE;
  // Where vectors pack and spread lanes by a mask (AVX-512), a stride-1 window whose grid rows are
  // narrower than a vector copies each channel onto the grid a vector at a time (the padding's
  // lanes spread apart, taking `pad`) and stores each vector of outputs straight out, the dropped
  // columns' lanes packed away, instead of copying rows of narrow vectors in and out (profiling
  // builds, one thread: dscnn_kws's 3×3 depthwise layers on 25×5 maps 0.0029 → 0.0020 ms,
  // ShuffleNetV2's on 7×7 maps 0.0096 → 0.0030). A grid row of a whole vector (14×14 maps under a
  // 3×3 window, 16 lanes) has a vector per row either way: there it ran slower, 0.0048 → 0.0054.
  // The epilogue may read no memory: it sees a vector's lanes at consecutive output indices from the
  // vector's first output on, not where each lane's output lies. The vectors are unrolled, each
  // with its own masks.
  const packs = wide && Wq < L && sh === 1 && sw === 1 && !!c.cpu!.compress && overlap && !x!.at && x!.dtype === "float32" && Q <= MAX_PACKED * L;
  const [rowLo, rowHi] = padded ? [0, OH] : interiorRows;
  const [colLo, colHi] = padded ? [0, OW] : interiorCols;
  // A thread takes `block` channels at a time, each with its own copy: it writes their padding,
  // copies what falls inside the input (whole vectors per row, the last overlapping the one before),
  // then computes them. Copying a channel just before computing it made every wide load wait on the
  // narrow stores of the copy (no store forwarding): MobileNetV2's 7×7 depthwise layers ran 1.47×
  // slower that way.
  const [N, C] = x!.shape;
  // L elements of slack after each copy: what slideTaps's last load reaches past the taps.
  const region = sliceElems(sh * sw * phaseElems + L);
  const block = padded ? [8, 4, 2, 1].find((d) => C % d === 0 && d * region <= MAX_COPY) ?? 1 : 1;
  const scratch = padded ? c.scratch!(block * region) : undefined;
  const slice = padded ? names.next("slice") : "";
  const offset = (kh: number, kw: number) => (((kh * dh) % sh) * sw + ((kw * dw) % sw)) * phaseElems + Math.floor((kh * dh) / sh) * Wq + Math.floor((kw * dw) / sw);
  const tapAt = (base: Expr, kh: number, kw: number, q: Expr): Expr => ({ k: "load", buf: scratch!.buf, idx: add(add(base, q), int(offset(kh, kw))), dtype: "float32" });
  // The taps of an output on the padded copy go into two accumulators in turn where the fold
  // allows (a depthwise sum), so that a vector of outputs is two chains of dependent multiply-adds
  // instead of one of KH·KW: a 5×5 window on a 7×7 map has five vectors of outputs, too few chains
  // to keep the FMA units busy.
  const pair = fold.pair && KH * KW >= 8 ? fold.pair : undefined;
  // Slides (slideTaps) pay where unaligned vectors span cache lines (8 lanes and more; NEON's 4
  // load as fast), where the vectors they load are aligned (across rows, not along them), and while
  // those vectors, the taps and the accumulators fit in registers: MNASNet's 5×5 windows, 4 vectors
  // loaded on 7×7 maps, ran 1.4× faster, 6 on 14×14 maps 1.13× slower (min of 8 interleaved runs,
  // one accumulator; with two, the 7×7 ones fill AVX-512's 32 registers and took 0.053 ms each
  // against 0.067 with one).
  const loaded = new Set(Array.from({ length: KH * KW }, (_, i) => offset(Math.floor(i / KW), i % KW)).flatMap((t) => (t % L ? [Math.floor(t / L), Math.floor(t / L) + 1] : [t / L])));
  const slides = wide && L >= 8 && KH * KW + loaded.size + (pair ? 3 : 2) <= c.cpu!.registers;
  // Phases no tap reads (dilation a multiple of the stride) are not copied.
  const copy = (n: Expr, ch: Expr, base: Expr): Stmt[] => {
    const out: Stmt[] = [];
    for (const a of phasesRead(KH, dh, sh))
      for (const b of phasesRead(KW, dw, sw)) {
        const [lo, hi] = inside(W, pw, b, sw, Wq), [rlo, rhi] = inside(H, ph, a, sh, Hq);
        if (hi === lo || rhi === rlo) continue;
        out.push(...nest(names, [rhi - rlo], ([i]) => {
          const r = add(int(rlo), i);
          return vectorRun(names, hi - lo, L, (k) => {
            const col = add(int(lo), k);
            const at = add(base, add(mul(r, int(Wq)), add(col, int((a * sw + b) * phaseElems))));
            return [{ k: "store", buf: scratch!.buf, idx: at, val: f32(load(x!, [n, ch, add(mul(r, int(sh)), int(a - ph)), add(mul(col, int(sw)), int(b - pw))])) }];
          }, true);
        }, false));
      }
    return out;
  };
  /** The channel onto its grid (stride 1: one phase), whole vectors up to the slack's end, each spread from the next elements of the input. */
  const spreadCopy = (n: Expr, ch: Expr, base: Expr): Stmt[] => {
    const out: Stmt[] = [];
    for (let v = 0, taken = 0; v * L < phaseElems + L; v++) {
      let mask = 0;
      for (let l = 0; l < L; l++) {
        const g = v * L + l, r = Math.floor(g / Wq) - ph, col = (g % Wq) - pw;
        if (g < phaseElems && r >= 0 && r < H && col >= 0 && col < W) mask |= 1 << l;
      }
      const from = add(flat(x!.shape, [n, ch, int(0), int(0)]), int(taken));
      const val: Expr = mask ? { k: "load", buf: x!.buf, idx: from, dtype: "float32", lanes: L, spread: { mask, fill: pad } } : splat(cst(pad), L);
      out.push(vstore(scratch!.buf, add(base, int(v * L)), val, L));
      taken += lanesIn(mask);
    }
    return out;
  };
  const foldTaps = (acc: string, tap: (kh: number, kw: number) => Expr): Stmt[] => {
    const other = pair ? names.next("acc") : acc;
    const out: Stmt[] = [let_(acc, "float32", fold.init), ...(pair ? [let_(other, "float32", pair.init)] : [])];
    for (let kh = 0; kh < KH; kh++)
      for (let kw = 0; kw < KW; kw++) {
        const into = (kh * KW + kw) % 2 ? other : acc;
        out.push(set(into, fold.step(vr(into, "float32"), tap(kh, kw), kh, kw)));
      }
    if (pair) out.push(set(acc, pair.combine(vr(acc, "float32"), vr(other, "float32"))));
    return out;
  };
  const compute = (n: Expr, ch: Expr, base: Expr): Stmt[] => {
    const row = (oh: Expr, checkRows: boolean): Stmt[] => {
      const cols = (from: number, to: number, checkCols: boolean): Stmt[] => {
        if (to <= from) return [];
        if (!checkCols) return vectorRun(names, to, L, (ow) => pixel(ow, false), padded && overlap, from);
        const i = names.next("ow");
        return [{ k: "for", v: i, n: to - from, body: pixel(add(int(from), vr(i)), true) }];
      };
      const pixel = (ow: Expr, checkCols: boolean): Stmt[] => {
        const acc = names.next("acc");
        if (padded) return [{ k: "block", body: [...foldTaps(acc, (kh, kw) => tapAt(base, kh, kw, add(mul(oh, int(Wq)), ow))), store(y, [n, ch, oh, ow], vr(acc, "float32"))] }];
        const body: Stmt[] = [let_(acc, "float32", fold.init)];
        for (let kh = 0; kh < KH; kh++)
          for (let kw = 0; kw < KW; kw++) {
            const ih = add(mul(oh, int(sh)), int(kh * dh - ph));
            const iw = add(mul(ow, int(sw)), int(kw * dw - pw));
            const conds: Expr[] = [];
            if (checkRows) conds.push(ge(ih, int(0)), lt(ih, int(H)));
            if (checkCols) conds.push(ge(iw, int(0)), lt(iw, int(W)));
            const v = f32(load(x!, [n, ch, ih, iw]));
            const st = set(acc, fold.step(vr(acc, "float32"), v, kh, kw));
            body.push(conds.length ? if_(conds.reduce((a2, b2) => and(a2, b2)), [st]) : st);
          }
        body.push(store(y, [n, ch, oh, ow], vr(acc, "float32")));
        return [{ k: "block", body }];
      };
      return [...cols(0, colLo, true), ...cols(colLo, colHi, false), ...cols(colHi, OW, true)];
    };
    const wideRows = (): Stmt[] => {
      const grid = names.next("grid");
      const sums = vectorRun(names, Q, L, (q) => {
        const acc = names.next("acc");
        const body = [...foldTaps(acc, (kh, kw) => tapAt(base, kh, kw, q)), { k: "store", buf: grid, idx: q, val: vr(acc, "float32") } as Stmt];
        return [{ k: "block", body }];
      }, true);
      const i = names.next("oh");
      const oh = vr(i);
      const stores = vectorRun(names, OW, L, (ow) => [store(y, [n, ch, oh, ow], { k: "load", buf: grid, idx: add(mul(oh, int(Wq)), ow), dtype: "float32" })], overlap);
      return [{ k: "local", name: grid, dtype: "float32", n: Q }, ...sums, { k: "for", v: i, n: OH, body: stores }];
    };
    const rows = (from: number, to: number, check: boolean): Stmt[] => {
      if (to <= from) return [];
      const i = names.next("oh");
      return [{ k: "for", v: i, n: to - from, body: row(add(int(from), vr(i)), check) }];
    };
    /**
     * Vectors of grid outputs, the last ending at Q (overlapping the one before, as the slack
     * allows no more), each stored packed: the lanes of existing columns, from the first one's
     * output on. Undefined when the epilogue does not vectorize.
     */
    const packedRows = (): Stmt[] | undefined => {
      const out: Stmt[] = [];
      for (let v = 0; v * L < Q; v++) {
        const q0 = Math.min(v * L, Q - L);
        let mask = 0;
        for (let l = 0; l < L; l++) if ((q0 + l) % Wq < OW) mask |= 1 << l;
        const before = Math.floor(q0 / Wq) * OW + Math.min(q0 % Wq, OW);
        const l = names.next("l"), acc = names.next("acc");
        const body = foldTaps(acc, (kh, kw) => tapAt(base, kh, kw, add(int(q0), vr(l))));
        // The outputs as one run from the first stored: an index past the row is the next row's.
        body.push(store(y, [n, ch, int(0), add(int(before), vr(l))], vr(acc, "float32")));
        const vec = vectorizeLanes(body, l, int(0), L);
        if (!vec) return undefined;
        out.push({ k: "block", body: packed(vec, mask) });
      }
      return out;
    };
    const windows = wide ? (packs && packedRows()) || wideRows() : [...rows(0, rowLo, true), ...rows(rowLo, rowHi, false), ...rows(rowHi, OH, true)];
    return [...fold.head(n, ch), ...(slides ? slideTaps(windows, scratch!.buf, names) : windows)];
  };
  // Its work is its taps, one per tap of each output as scalar loops count them: vectors of them
  // undercount what a thread saves, and left MobileNetV2's 7×7 layers to one thread.
  const loops = nest(names, [N, C / block], ([n, cb]) => {
    if (!padded) return compute(n, cb, int(0));
    const each = (f: typeof copy): Stmt => {
      const j = names.next("c");
      return { k: "for", v: j, n: block, body: f(n, add(mul(cb, int(block)), vr(j)), add(vr(slice), mul(vr(j), int(region)))) };
    };
    return [
      let_(slice, "int32", mul(threadId, int(block * region))),
      ...(packs ? [] : vectorRun(names, block * region, L, (i) => [{ k: "store", buf: scratch!.buf, idx: add(vr(slice), i), val: cst(pad) }], true)),
      each(packs ? spreadCopy : copy),
      each(compute),
    ];
  });
  return loops.map((s) => (s.k === "for" ? { ...s, work: N * C * OH * OW * KH * KW } : s));
}

/** Depthwise 2-D convolution (one filter per channel): its taps and bias are read once per channel into locals. */
function depthwise(c: LowerCtx): Stmt[] {
  const { node, ins: [x, w, b], names } = c;
  const geo = convGeometry(node, x!.shape, w!.shape, b?.shape);
  const [KH, KW] = geo.kernel;
  const taps = Array.from({ length: KH * KW }, () => names.next("w"));
  const bias = names.next("bias");
  return windowOp(c, geo, {
    head: (_, ch) => [
      ...taps.map((t, i) => let_(t, "float32", load(w!, [ch, int(0), int(Math.floor(i / KW)), int(i % KW)]))),
      let_(bias, "float32", b ? load(b, [ch]) : cst(0)),
    ],
    init: vr(bias, "float32"),
    step: (acc, v, kh, kw) => add(acc, mul(v, vr(taps[kh * KW + kw], "float32"))),
    pair: { init: cst(0), combine: add },
  }, 0);
}

/**
 * A max pool's two passes over a map of `size` rows and columns, for one pooled row at a time (max
 * is separable): `fold(slot, oq, tap)` folds pooled row oq's window rows column by column, in
 * whole vectors, into the scratch row `rowAt(slot)` (the map's width and a vector of slack: a
 * strided vector load of a row's last outputs reads a lane past its end, and drops it);
 * `pool(slot, put, overlap)` then takes each output's columns from that row. Per vector of outputs
 * that is KH + KW loads, not KH·KW strided ones. A tap outside the map reads the nearest row or
 * column of it (the caller checks windowsInMap). The caller folds a set of rows before it pools any: a load that
 * straddles stores still in flight waits for them (no store forwarding), and SqueezeNet 1.1's first
 * convolution and pool, folding each row and pooling it at once, took 0.337 ms against 0.279 in
 * one pass (0.265 folding first; profiling builds, one thread).
 */
function separableMax(c: LowerCtx, geo: Window, [H, W]: [number, number], folded: string, rowAt: (slot: Expr) => Expr) {
  const { names } = c;
  const L = c.cpu!.lanes;
  const [KH, KW] = geo.kernel, [sh, sw] = geo.strides, [ph, pw] = geo.padsBegin, [, OW] = geo.out;
  const clamp = (e: Expr, hi: number) => min(max(e, int(0)), int(hi));
  const fold = (slot: Expr, oq: Expr, tap: (row: Expr, col: Expr) => Expr): Stmt[] => {
    const rows = Array.from({ length: KH }, () => names.next("row"));
    const tail = nest(names, [L], ([l]) => [{ k: "store", buf: folded, idx: add(rowAt(slot), add(int(W), l)), val: cst(0) }], false);
    // A row's last vector may overlap the one before (its elements done twice, alike) rather than end in scalar code.
    return [...rows.map((r, kh) => let_(r, "int32", clamp(add(mul(oq, int(sh)), int(kh - ph)), H - 1))), ...tail, ...vectorRun(names, W, L, (col) => {
      const acc = names.next("acc");
      const body: Stmt[] = [let_(acc, "float32", tap(vr(rows[0]), col))];
      for (let kh = 1; kh < KH; kh++) body.push(set(acc, max(vr(acc, "float32"), tap(vr(rows[kh]), col))));
      body.push({ k: "store", buf: folded, idx: add(rowAt(slot), col), val: vr(acc, "float32") });
      return [{ k: "block", body }];
    }, true)];
  };
  const [lo, hi] = interior(W, OW, KW, sw, pw, 1);
  /** `overlap`: the last vector of outputs may overlap the one before (put reads no memory). */
  const pool = (slot: Expr, put: (ow: Expr, v: Expr) => Stmt, overlap: boolean): Stmt[] => {
    const pixel = (ow: Expr, edge: boolean): Stmt[] => {
      const acc = names.next("acc");
      const body: Stmt[] = [let_(acc, "float32", cst(-Infinity))];
      for (let kw = 0; kw < KW; kw++) {
        const iw = add(mul(ow, int(sw)), int(kw - pw));
        body.push(set(acc, max(vr(acc, "float32"), { k: "load", buf: folded, idx: add(rowAt(slot), edge ? clamp(iw, W - 1) : iw), dtype: "float32" })));
      }
      body.push(put(ow, vr(acc, "float32")));
      return [{ k: "block", body }];
    };
    const edge = (from: number, to: number): Stmt[] => {
      if (to <= from) return [];
      const ow = names.next("ow");
      return [{ k: "for", v: ow, n: to - from, body: pixel(add(int(from), vr(ow)), true) }];
    };
    return [...edge(0, lo), ...vectorRun(names, hi - lo, L, (ow) => pixel(add(ow, int(lo)), false), overlap), ...edge(hi, OW)];
  };
  return { fold, pool };
}

/**
 * A max pool on a map too large for windowOp's padded copy (see MAX_COPY), rows at least a vector
 * wide and stride at most 2: separable (see separableMax), each thread folding a block of up to
 * POOL_ROWS pooled rows of a channel into its scratch before it pools them, straight from the
 * input, with no copy. A 3×3 stride-2 pool of a 64×111×111 map (SqueezeNet 1.1's first, unfused):
 * 0.099 ms in windowOp's strided loads, 0.062 so (onnxruntime's NCHWc pool 0.040; profiling
 * builds, one thread).
 */
function separableMaxPool(c: LowerCtx, geo: Window): Stmt[] | undefined {
  const { ins: [x], outs: [y], names } = c;
  const [N, C, H, W] = x!.shape;
  const [KH, KW] = geo.kernel, [sh, sw] = geo.strides, [OH, OW] = geo.out;
  const L = c.cpu!.lanes;
  const phases = sh * sw * (OH + Math.floor((KH - 1) / sh)) * (OW + Math.floor((KW - 1) / sw));
  if (L < 4 || sw > 2 || OW < L || phases <= MAX_COPY || !windowsInMap(geo, [H, W])) return undefined;
  const rows = Math.min(OH, POOL_ROWS), width = W + L;
  const scratch = c.scratch!(rows * width);
  const slice = names.next("slice");
  const { fold, pool } = separableMax(c, geo, [H, W], scratch.buf, (slot) => add(vr(slice), mul(slot, int(width))));
  // The epilogue sees each output once when it reads memory (a residual taken over in place).
  const overlap = touched([store(y, y.shape.map(() => int(0)), cst(0))]).reads.size === 0;
  const loops = nest(names, [N, C, Math.ceil(OH / rows)], ([n, ch, block]) => {
    const each = (f: (slot: Expr, oh: Expr) => Stmt[]) => nest(names, [rows], ([r]) => {
      const oh = add(mul(block, int(rows)), r);
      return OH % rows ? [if_(lt(oh, int(OH)), f(r, oh))] : f(r, oh);
    }, false);
    return [
      let_(slice, "int32", mul(threadId, int(sliceElems(rows * width)))),
      ...each((slot, oh) => fold(slot, oh, (row, col) => f32(load(x!, [n, ch, row, col])))),
      ...each((slot, oh) => pool(slot, (ow, v) => store(y, [n, ch, oh, ow], v), overlap)),
    ];
  });
  return loops.map((s) => (s.k === "for" ? { ...s, work: N * C * OH * OW * KH * KW } : s));
}

/** Pooled rows a standalone separable max pool folds before it pools them (see separableMaxPool). */
const POOL_ROWS = 8;

/** 2-D max pooling: taps outside the input never win, as if they were −∞. */
const maxPool: Lowering = (c) => {
  const { node, ins: [x], outs } = c;
  if (!c.cpu || outs[1]?.buf || !isF32(x, outs[0]) || x!.shape.length !== 4) return NN_LOWERINGS.MaxPool(c);
  const geo = poolGeometry(node, x!.shape);
  return separableMaxPool(c, geo) ?? windowOp(c, geo, { head: () => [], init: cst(-Infinity), step: (acc, v) => max(acc, v) }, -Infinity);
};

/**
 * A convolution as a GEMM over a zero-padded, phase-split copy of its input (implicit GEMM). With
 * strides sh × sw the padded input splits into sh·sw phases, phase (a, b) holding the rows ≡ a
 * (mod sh) and columns ≡ b (mod sw): xq[a][b][n][ci][r][c] = xpad[n][ci][r·sh + a][c·sw + b]. Tap
 * (kh, kw) reads one phase, (kh·dh mod sh, kw·dw mod sw), at one offset, (⌊kh·dh/sh⌋, ⌊kw·dw/sw⌋), for
 * every output pixel. Output pixels are counted on the phase grid, Wq = OW + ⌊(KW−1)·dw/sw⌋ columns
 * per row of which the first OW exist, so tap (ci, kh, kw) of column j reads its phase at
 * j + ⌊kh·dh/sh⌋·Wq + ⌊kw·dw/sw⌋: a tile's consecutive columns read consecutive elements, and
 * packing B is vector copies where im2col gathers element by element with bounds checks (half the
 * time of a 3×3 convolution). The price is the copy and the dropped columns, computed and not
 * stored. A stride-1 input without padding, in memory, is its own copy.
 */
function shiftedConv(c: LowerCtx): ConvPlan {
  const { node, ins: [x, w, b], outs: [y], names } = c;
  const geo = convGeometry(node, x!.shape, w!.shape, b?.shape);
  const [N, C, H, W] = x!.shape;
  const M = w!.shape[0];
  const [KH, KW] = geo.kernel, [sh, sw] = geo.strides, [dh, dw] = geo.dilations, [ph, pw] = geo.padsBegin;
  const [OH, OW] = geo.out;
  const Hq = OH + Math.floor(((KH - 1) * dh) / sh), Wq = OW + Math.floor(((KW - 1) * dw) / sw);
  const slab = N * C * Hq * Wq;
  const P = (OH - 1) * Wq + OW, K = C * KH * KW, L = c.cpu!.lanes, nt = ntOf(c, P);
  const copy = sh > 1 || sw > 1 || Hq !== H || Wq !== W || !!x!.at;
  const xq: Ref = copy ? c.shared!(sh * sw * slab) : x!;
  // Phases no tap reads (a 1×1 stride-2 convolution reads one of four) are not copied.
  const rowPhases = phasesRead(KH, dh, sh), colPhases = phasesRead(KW, dw, sw);
  const pad = copy ? phaseCopy(c, x!, xq, { sh, sw, ph, pw, Hq, Wq }, (a, bq) => rowPhases.has(a) && colPhases.has(bq)) : [];
  // A tap's phase and offset along one axis.
  const split = (k: Expr, d: number, s: number): [Expr, Expr] => (s === 1 ? [int(0), mul(k, int(d))] : [mod(mul(k, int(d)), int(s)), div(mul(k, int(d)), int(s))]);
  const spec: GemmSpec = {
    batch: [N],
    cols: P,
    ...convRows(w!, M, K),
    packB: ([n], j0, put, full) =>
      nest(names, [C, KH, KW], ([ci, kh, kw]) => {
        const k = add(mul(add(mul(ci, int(KH)), kh), int(KW)), kw);
        const [pa, oa] = split(kh, dh, sh), [pb, ob] = split(kw, dw, sw);
        const phase = add(mul(pa, int(sw)), pb);
        const plane = add(mul(add(mul(phase, int(N)), n), int(C)), ci);
        const from = add(add(mul(plane, int(Hq * Wq)), add(mul(oa, int(Wq)), ob)), j0);
        const tap = (j: Expr) => ({ k: "load", buf: xq.buf, idx: add(from, j), dtype: "float32" }) as Expr;
        // The last, ragged tile stops at the last column: past it lies the end of the phase.
        if (!full) return nest(names, [nt], ([j]) => [put(k, j, select(lt(add(j0, j), int(P)), tap(j), cst(0)))], false);
        const jv = names.next("jv"), l = names.next("l");
        const j = add(mul(vr(jv), int(L)), vr(l));
        const body = [put(k, j, tap(j))];
        return [{ k: "for", v: jv, n: nt / L, body: vectorizeLanes(body, l, int(0), L) ?? [{ k: "for", v: l, n: L, body }] }];
      }, false),
    init: b ? (_, m) => f32(load(b, [m])) : undefined,
    y,
    yAt: ([n], m, j) => [n, m, div(j, int(Wq)), mod(j, int(Wq))],
    colOk: Wq > OW ? (j) => lt(mod(j, int(Wq)), int(OW)) : undefined,
    run: runs(Wq, OW, L),
    grid: { width: Wq, valid: OW, at: ([n], m, r, col) => [n, m, r, col] },
  };
  return { pre: pad, spec, grid: Wq };
}

/**
 * A stride-1 convolution whose output has its input's size ("same" padding), read from the input as
 * it is: tap (kh, kw) of the output pixel at flat index p is element p + (kh − ph)·W + (kw − pw) of
 * its channel, so a tile's columns read consecutive elements, vector loads, with neither the phase
 * grid's padded copy nor its dropped columns. A lane whose tap lies outside the map has read a
 * neighbouring row or channel instead, and is zeroed after the copies: per tap column, the few
 * columns at each row's ends; per tap row, the rows above the first or below the last. Only loads
 * that would leave the tensor (the first channel's top rows, the last's bottom ones) are gathered
 * with bounds checks. The rest is gemmConv's product, whose columns are the output's pixels.
 */
function flatConv(c: LowerCtx): ConvPlan {
  const plan = gemmConv(c);
  const nt = ntOf(c, c.ins[0]!.shape[2] * c.ins[0]!.shape[3]);
  plan.spec.packB = ([n], j0, put, full) => flatTaps(c, n, j0, nt, put, full);
  return plan;
}

/**
 * Every tap of output pixels j0 .. j0+width−1 of image n of a convolution that reads its input
 * flat (see flatConv), through put(tap, j, value): vector copies, masked past `width`, then the
 * lanes whose tap lies outside the map zeroed; past the last pixel too unless `full`.
 */
function flatTaps(c: LowerCtx, n: Expr, j0: Expr, width: number, put: (k: Expr, j: Expr, v: Expr) => Stmt, full: boolean): Stmt[] {
  const { ins: [x, w], names } = c;
  const geo = convGeometry(c.node, x!.shape, w!.shape);
  const [N, C, H, W] = x!.shape;
  const [KH, KW] = geo.kernel, [ph, pw] = geo.padsBegin;
  const P = H * W, L = c.cpu!.lanes, nv = Math.ceil(width / L), total = N * C * P;
  const tap = (ci: Expr, kh: Expr, kw: Expr) => add(mul(add(mul(ci, int(KH)), kh), int(KW)), kw);
  /** Lanes from..to of vector jv, clamped to the vector and to `width`. */
  const lanesOf = (jv: Expr, from: Expr, to: Expr) => {
    const base = mul(jv, int(L)), clamp = (e: Expr) => max(int(0), min(int(L), sub(e, base)));
    return { from: clamp(from), to: clamp(width % L ? min(to, int(width)) : to) };
  };
  /** Zeros into columns from ≤ j < to of tap k, a masked vector store each. */
  const zeros = (k: Expr, from: Expr, to: Expr): Stmt[] => nest(names, [nv], ([jv]) => {
    const l = names.next("l"), lanes = lanesOf(jv, from, to);
    return [if_(lt(lanes.from, lanes.to), withMask(vectorizeLanes([put(k, add(mul(jv, int(L)), vr(l)), cst(0))], l, int(0), L)!, lanes))];
  }, false);
  const copies = nest(names, [C, KH, KW], ([ci, kh, kw]) => {
    const from = add(add(mul(add(mul(n, int(C)), ci), int(P)), j0), add(mul(sub(kh, int(ph)), int(W)), sub(kw, int(pw))));
    const at = (j: Expr) => ({ k: "load", buf: x!.buf, idx: add(from, j), dtype: "float32" }) as Expr;
    const jv = names.next("jv"), l = names.next("l");
    const copy = vectorizeLanes([put(tap(ci, kh, kw), add(mul(vr(jv), int(L)), vr(l)), at(add(mul(vr(jv), int(L)), vr(l))))], l, int(0), L)!;
    const vector: Stmt[] = [{ k: "for", v: jv, n: nv, body: width % L ? withMask(copy, lanesOf(vr(jv), int(0), int(width))) : copy }];
    const scalar = nest(names, [width], ([j]) => [put(tap(ci, kh, kw), j, select(and(ge(add(from, j), int(0)), lt(add(from, j), int(total))), at(j), cst(0)))], false);
    return [if_(and(ge(from, int(0)), le(add(from, int(nv * L)), int(total))), vector, scalar)];
  }, false);
  const fixes: Stmt[] = [];
  // Row starts that may lie within reach of the columns, relative to the first.
  const starts = Math.ceil((width + KW) / W) + 1;
  for (let kw = 0; kw < KW; kw++) {
    const d = kw - pw;
    if (d === 0) continue;
    fixes.push(...nest(names, [starts, Math.abs(d)], ([r, t]) => {
      const s = sub(mul(add(div(j0, int(W)), r), int(W)), j0);
      const pos = d < 0 ? add(s, t) : sub(s, add(t, int(1)));
      return [if_(and(ge(pos, int(0)), lt(pos, int(width))), nest(names, [C, KH], ([ci, kh]) => [put(tap(ci, kh, int(kw)), pos, cst(0))], false))];
    }, false));
  }
  for (let kh = 0; kh < KH; kh++) {
    const d = kh - ph;
    if (d === 0) continue;
    // Columns whose tap row is above the first row (p < −d·W) or below the last (p ≥ (H − d)·W).
    const [from, to] = d < 0 ? [int(0), sub(int(-d * W), j0)] : [sub(int((H - d) * W), j0), int(width)];
    const reaches = d < 0 ? lt(j0, int(-d * W)) : gt(add(j0, int(width)), int((H - d) * W));
    fixes.push(if_(reaches, nest(names, [C, KW], ([ci, kw]) => zeros(tap(ci, int(kh), kw), from, to), false)));
  }
  // A ragged tile's columns past the last are zero, as gemmConv's packing leaves them.
  if (!full) fixes.push(...nest(names, [C * KH * KW], ([k]) => zeros(k, sub(int(P), j0), int(width)), false));
  return [...copies, ...fixes];
}

/** Whether a convolution can read its input as it is on its output's pixels (see flatConv). */
const readsFlat = (c: LowerCtx): boolean => {
  const [x, w] = c.ins;
  const geo = convGeometry(c.node, x!.shape, w!.shape);
  return !x!.at && c.cpu!.lanes > 1 && geo.strides.every((s) => s === 1) && geo.dilations.every((d) => d === 1)
    && geo.out[0] === x!.shape[2] && geo.out[1] === x!.shape[3];
};

/**
 * The phase grid for every convolution but a plain 1×1 one (which reads its input as it is), while
 * its dropped columns are at most a third and it has at least 4 vectors' worth of taps per output
 * or rows at least 4 vectors wide: the dropped columns' work, and the stores of vectors that
 * straddle two rows of the grid (as two masked stores, or column by column under an epilogue that
 * reads other tensors), cost more than im2col saves on a convolution of a few channels on a narrow
 * map (dscnn_kws's first layer, 40 taps, rows 5 wide: 1.27× the time of the whole network). On wide
 * rows they are rare, and im2col's strided runs that cross a row are gathered element by element
 * (the first layers of MNASNet, MobileNetV2 and SqueezeNet 1.1 at 224×224, 27 taps, rows 111 and 112
 * wide: those networks 0.97–0.99× the time, as the README says).
 */
const shifts = (c: LowerCtx): boolean => {
  const geo = convGeometry(c.node, c.ins[0]!.shape, c.ins[1]!.shape, c.ins[2]?.shape);
  const [KH, KW] = geo.kernel, [, sw] = geo.strides, [OW] = geo.out.slice(1);
  const dropped = Math.floor(((KW - 1) * geo.dilations[1]) / sw);
  return !isPointwise(geo) && 3 * dropped <= OW + dropped && (c.ins[0]!.shape[1] * KH * KW >= 4 * c.cpu!.lanes || OW >= 4 * c.cpu!.lanes);
};

const conv: Lowering = (c) => {
  const { node, ins: [x, w, b], outs: [y] } = c;
  if (c.cpu && isF32(x, w, b, y) && x!.shape.length === 4) {
    const group = attrNum(node, "group", 1);
    if (group === 1) {
      if (winogradFits(c)) return winogradConv(c);
      // In place (convInPlace, a 1×1 convolution): tiles of pixels, each packed before its outputs
      // are stored, never the transposed product, which would copy all of the input first.
      const inPlace = attrNum(node, "inPlace", 0) === 1;
      const shifted = !!c.shared && !inPlace && shifts(c);
      const flat = shifted && readsFlat(c);
      const plan = c.shared && !inPlace && transposes(c, shifted && !flat) ? transposedConv(c) : flat ? flatConv(c) : shifted ? shiftedConv(c) : gemmConv(c);
      if (inPlace && (!isPointwise(convGeometry(node, x!.shape, w!.shape)) || plan.pre.length || c.pooled)) throw new Error(`internal: Conv '${node.name}' is marked in place but is not a plain 1×1 product`);
      return c.pooled ? pooledConv(c, plan) : [...plan.pre, ...gemmKernel(c, { ...plan.spec, inPlace })];
    }
    if (group === x!.shape[1] && w!.shape[0] === group) return depthwise(c);
  }
  if (c.pooled) throw new Error(`internal: Conv '${node.name}' has a banded pool but no GEMM lowering`);
  return tiledConv(c) ?? NN_LOWERINGS.Conv(c);
};

/**
 * A map computed whole into scratch, or a band of its rows, stays within this (about a core's L2
 * cache) so that it is pooled from cache: on squeezenet1_1 (224×224) 256 KiB bands made the first
 * convolution and pool 1.2× slower than apart, 1 MiB ones as fast (profiling builds, one thread).
 */
const BAND_BYTES = 1024 * 1024;

/** Whether a convolution's banded pool reads its whole map from scratch (see pooledConv), so that any form of its product can fill it. */
const poolsWhole = (c: LowerCtx): boolean => numel(c.outs[0].shape) * 4 <= BAND_BYTES;

/**
 * A convolution whose epilogue ends in a max pool (LowerCtx.pooled). Its map never goes to the
 * arena: when the whole map fits in BAND_BYTES, the product (through the epilogue) fills it in
 * shared scratch, split between threads as usual, and a loop over pooled rows (split between
 * threads the same way when the map is large) pools it from cache. Otherwise a parallel loop over
 * bands of Q pooled rows, each computing the BR convolution rows its windows read (the product over
 * those columns only) into per-thread scratch, then pooling them. Bands overlap where windows do (a
 * 3×3 stride-2 pool recomputes a row per band) and each band's product ends in a ragged column
 * tile, so Q is the one with the fewest column tiles in all. The last band is moved up to end at
 * the map's last row, so every row a band computes exists. A tap outside the map reads the nearest
 * row or column of it instead: max is idempotent and select-fusion only bands pools whose windows
 * each overlap the map, so that value is one the window holds anyway.
 */
function pooledConv(c: LowerCtx, { pre, spec, grid }: ConvPlan): Stmt[] {
  const { names } = c;
  const { node: pool, y, through } = c.pooled!;
  const [N, M, OH, OW] = c.outs[0].shape;
  const geo = poolGeometry(pool, [N, M, OH, OW]);
  const [KH] = geo.kernel, [sh] = geo.strides, [ph] = geo.padsBegin, [PH] = geo.out;
  const threads = Math.max(1, c.cpu!.threads ?? 1);
  const whole = poolsWhole(c);
  const rowsFor = (q: number) => Math.min(OH, (q - 1) * sh + KH);
  // Bands of Q pooled rows, a whole number of them per thread: the fewest column tiles in all, each
  // band within BAND_BYTES and the threads' bands together within the map they replace (else the
  // smallest bands). A band's product must have the map's tile width, which packB fills.
  const budget = Math.min(BAND_BYTES, (N * M * OH * OW * 4) / threads);
  const cols = (q: number) => (rowsFor(q) - 1) * grid + OW;
  const tiles = (q: number) => Math.ceil(PH / q) * Math.ceil(cols(q) / ntOf(c, spec.cols));
  const fits = (q: number) => M * rowsFor(q) * OW * 4 <= budget;
  const better = (q: number, than: number) => !than || (fits(q) !== fits(than) ? fits(q) : fits(q) ? tiles(q) < tiles(than) : q < than);
  let Q = 0;
  for (let parts = threads; !whole; parts += threads) {
    const q = Math.ceil(PH / Math.min(parts, PH));
    if (ntOf(c, cols(q)) === ntOf(c, spec.cols) && better(q, Q)) Q = q;
    if (q === 1) break;
  }
  Q ||= PH;
  const BR = rowsFor(Q), bands = Math.ceil(PH / Q), elems = sliceElems(M * BR * OW);
  const band = c.shared!(whole ? N * M * OH * OW : threads * elems);
  const [i, n, q0, r0, slice, fslice] = ["band", "n", "q0", "r0", "slice", "fslice"].map((v) => names.next(v));
  // Each thread folds (see fold) a band's pooled rows of a channel, or a pooled row of a block of
  // `block` channels of a whole map, into rows of `width` of a region of its own: stores to the
  // buffer the loads read would keep the fold from vectorizing.
  const L = c.cpu!.lanes, width = OW + L;
  const block = [8, 4, 2, 1].find((d) => M % d === 0)!;
  const foldedElems = sliceElems((whole ? block : Q) * width);
  const folded = c.shared!(threads * foldedElems).buf;
  const rowAt = (slot: Expr): Expr => add(vr(fslice), mul(slot, int(width)));
  const bindFolded = let_(fslice, "int32", mul(threadId, int(foldedElems)));
  // Row r of the map is row r − r0 of the band: written (r·OW + col) − r0·OW, so that a flat pixel
  // index split into row and column folds back into one (see build.ts) and a vector stays affine.
  const at = (b: Expr, m: Expr, row: Expr, col: Expr) =>
    whole ? add(mul(add(mul(b, int(M)), m), int(OH * OW)), add(mul(row, int(OW)), col)) : add(vr(slice), add(mul(m, int(BR * OW)), sub(add(mul(row, int(OW)), col), mul(vr(r0), int(OW)))));
  const sink: Ref = { buf: band.buf, dtype: "float32", shape: [N, M, OH, OW], put: (idx, val) => ({ k: "store", buf: band.buf, idx: at(idx[0], idx[1], idx[2], idx[3]), val }) };
  const clamp = (e: Expr, hi: number) => min(max(e, int(0)), int(hi));
  const { fold: foldRow, pool: poolRow } = separableMax(c, geo, [OH, OW], folded, rowAt);
  const tap = (b: Expr, m: Expr) => (row: Expr, col: Expr): Expr => ({ k: "load", buf: band.buf, idx: at(b, m, row, col), dtype: "float32" });
  const fold = (slot: Expr, b: Expr, m: Expr, oq: Expr) => foldRow(slot, oq, tap(b, m));
  const poolFolded = (slot: Expr, b: Expr, m: Expr, oq: Expr) => poolRow(slot, (ow, v) => store(y, [b, m, oq, ow], v), true);
  if (whole) {
    // Rows outermost and split between threads like the plain product's columns, so that each
    // thread pools about the rows it computed, from its own cache (a transposed product's threads
    // split the channels instead, so there a thread pools rows the other computed too); its work
    // is the map's elements, so that maps of 128K elements and more are pooled in parallel on the
    // default parallelMinWork (a serial pool read half of SqueezeNet's 55×55 maps from the other
    // core's cache; pooling its 31×31 maps at 64×64 in parallel made it slower).
    const pooling = nest(names, [N, PH, M / block], ([b, oq, mb]) => {
      const m = (j: Expr) => add(mul(mb, int(block)), j);
      return [bindFolded, ...nest(names, [block], ([j]) => fold(j, b, m(j), oq), false), ...nest(names, [block], ([j]) => poolFolded(j, b, m(j), oq), false)];
    }).map((s) => (s.k === "for" ? { ...s, work: N * M * OH * OW } : s));
    return [...pre, ...gemmKernel(c, { ...spec, y: through(sink) }), ...pooling];
  }

  const off = mul(vr(r0), int(grid)), nb = [vr(n)];
  const product: GemmSpec = {
    ...spec,
    batch: [],
    cols: (BR - 1) * grid + OW,
    serial: true,
    a: (_, r, k) => spec.a(nb, r, k),
    packB: spec.packB && ((_, j0, put, full) => spec.packB!(nb, add(j0, off), put, full)),
    init: spec.init && ((_, r) => spec.init!(nb, r)),
    y: through(sink),
    yAt: (_, r, j) => spec.yAt(nb, r, add(j, off)),
    colOk: spec.colOk && ((j) => spec.colOk!(add(j, off))),
    run: spec.run && { ok: (j, k) => spec.run!.ok(add(j, off), k), at: (_, r, j, l) => spec.run!.at(nb, r, add(j, off), l) },
    grid: spec.grid && { ...spec.grid, at: (_, r, row, col) => spec.grid!.at(nb, r, add(row, vr(r0)), col) },
    post: spec.post && ((_, r, j, v) => spec.post!(nb, r, add(j, off), v)),
  };
  const pooling = nest(names, [M], ([m]) => {
    const rows = (f: typeof fold) => nest(names, [Q], ([q]) => {
      const oq = add(vr(q0), q);
      return PH % Q ? [if_(lt(oq, int(PH)), f(q, vr(n), m, oq))] : f(q, vr(n), m, oq);
    }, false);
    return [...rows(fold), ...rows(poolFolded)];
  }, false);
  return [
    ...pre,
    {
      k: "for", v: i, n: N * bands, parallel: true,
      body: [
        let_(n, "int32", div(vr(i), int(bands))),
        let_(q0, "int32", mul(mod(vr(i), int(bands)), int(Q))),
        let_(r0, "int32", clamp(sub(mul(vr(q0), int(sh)), int(ph)), OH - BR)),
        let_(slice, "int32", mul(threadId, int(elems))),
        bindFolded,
        ...gemmKernel(c, product),
        ...pooling,
      ],
    },
  ];
}

/** Gemm: A·B with A, B optionally transposed, then alpha and beta·C (broadcast) per element. */
const gemm: Lowering = (c) => {
  const { node, ins: [a, b, cc], outs: [y] } = c;
  if (!c.cpu || !isF32(a, b, cc, y)) return tiledGemmOp(c) ?? NN_LOWERINGS.Gemm(c);
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
  if (!c.cpu || !isF32(a, b, y) || a!.shape.length < 2 || b!.shape.length < 2) return tiledMatMul(c) ?? NN_LOWERINGS.MatMul(c);
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

export const DENSE_LOWERINGS: Record<string, Lowering> = { Conv: conv, Gemm: gemm, MatMul: matmul, MaxPool: maxPool };
