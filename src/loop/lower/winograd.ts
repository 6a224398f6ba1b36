import { toNumbers } from "../../core/tensor.js";
import { attrNum } from "../../graph/ir.js";
import { convGeometry } from "../../graph/ops/nn.js";
import { add, and, cst, div, eq, ge, int, le, let_, lt, max, min, mod, mul, nest, or, select, splat, store, sub, threadId, vload, vlet, vr, vstore, vvar, if_ } from "../build.js";
import type { Expr, Stmt } from "../ir.js";
import { vectorizeLanes } from "../vectorize.js";
import { accumulators, panelRows, productLoop } from "./gemm.js";
import { phaseCopy } from "./phases.js";
import { sliceElems, type LowerCtx } from "./types.js";

/**
 * A 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray 2016):
 * each 2×2 block of outputs is Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A from the 4×4 input patch d, so its
 * products over input channels are 16 per output channel (one per position ξ of the 4×4
 * transform) where direct convolution needs 36: 16 matrix products U_ξ·V_ξ of the transformed
 * weights (U, computed and packed at compile time) by the transformed patches (V).
 *
 * The input is first copied, zero-padded, into its four phases (even and odd rows and columns), so
 * that patch element (a, b) of every block lies at one offset from the block's index on a grid of
 * Wq = ⌈OW/2⌉ + 1 blocks per row: vector loads, with no bounds checks. Blocks are taken a tile of
 * NT grid columns at a time (the parallel axis); per tile, a thread transforms the patches into
 * per-thread scratch laid out as the micro-kernel reads them ([ξ][channel][NT]), multiplies for
 * each ξ (register-blocked as in gemm.ts: MR rows of U broadcast, NT/lanes vectors of V), and
 * transforms the 16 products of each output channel back into its 2×2 outputs, which go through
 * the epilogue a vector of an output row at a time where a vector's outputs all lie in one, else
 * one by one. Each tile streams all the transformed weights; the rest of what it
 * touches is the thread's scratch, 16·(C + M)·NT floats (1 MiB per thread for 256 channels in and
 * out under AVX-512).
 */

/** Bᵀ, G and Aᵀ of F(2×2, 3×3). */
const BT = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]];
const G = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]];
const AT = [[1, 1, 1, 0], [0, 1, -1, -1]];

/**
 * Below this many 2×2 blocks the transformed weights (16/9 the size of the weights) are each used
 * by too few blocks, and streaming them costs more than the products save: ResNet-18's 3×3
 * convolutions on 7×7 maps (16 blocks) took 1.55× as long, those on 14×14 maps (49) 0.64–0.66×.
 */
const MIN_BLOCKS = 32;

/**
 * Whether a convolution takes the Winograd lowering: 3×3, stride 1, no dilation or groups, constant
 * weights and bias, one image, at least 32 output channels and at least 48 input channels: the
 * transforms cost about the same per channel whatever the channel count, the products grow with it
 * (SqueezeNet's 3×3 expand convolutions, profiling builds, one thread: 16 input channels 0.97–1.28×
 * the time, 32 about 1.0×, 48 0.90×, 64 0.83×; ResNet-18's, 64 to 256, 0.55–0.68×).
 */
export function winogradFits(c: LowerCtx): boolean {
  const { node, ins: [x, w, b] } = c;
  if (!c.cpu || c.cpu.lanes < 4 || c.pooled || !w?.data || w.at || (b && (!b.data || b.at)) || x!.shape[0] !== 1) return false;
  if (attrNum(node, "group", 1) !== 1) return false;
  const geo = convGeometry(node, x!.shape, w.shape, b?.shape);
  const [C, M] = [x!.shape[1], w.shape[0]];
  const [OH, OW] = geo.out;
  return geo.kernel.every((k) => k === 3) && geo.strides.every((s) => s === 1) && geo.dilations.every((d) => d === 1)
    && C >= 48 && M >= 32 && Math.ceil(OH / 2) * Math.ceil(OW / 2) >= MIN_BLOCKS;
}

export function winogradConv(c: LowerCtx): Stmt[] {
  const { node, ins: [x, w, b], outs: [y], names } = c;
  const cpu = c.cpu!;
  const L = cpu.lanes;
  const geo = convGeometry(node, x!.shape, w!.shape, b?.shape);
  const C = x!.shape[1];
  const M = w!.shape[0];
  const [OH, OW] = geo.out, [ph, pw] = geo.padsBegin;
  const TH = Math.ceil(OH / 2), TW = Math.ceil(OW / 2);
  // The phase grid: block (ty, tx) at q = ty·Wq + tx; patch element (a, b) lies in phase
  // (a mod 2, b mod 2) at q + ⌊a/2⌋·Wq + ⌊b/2⌋. Column TW of each row is computed and dropped.
  const Wq = TW + 1, Hq = TH + 1, plane = Hq * Wq;
  const Q = (TH - 1) * Wq + TW;
  const nv = Q <= L ? 1 : 2, NT = nv * L, tiles = Math.ceil(Q / NT);
  const MR = panelRows(cpu, NT), panels = Math.floor(M / MR), tail = M % MR;
  // Tiles that do not divide among the T threads: each thread's part of the parallel loop (T parts
  // of `per` iterations, taken in order) is ⌊tiles/T⌋ whole tiles and, of each of the `left` tiles
  // left over, the thread's 1/T of the row panels (the last share also the tail rows), so that the
  // parts are the same work. Those tiles' transforms are made T times. ResNet-18's 128-channel
  // convolutions on 28×28 maps have 7 tiles under AVX-512: on two threads one took 4 and the other
  // 3 (0.08 ms apart each); split, 0.93× the time on two threads and 1.02× on one (one alone, A/B).
  const T = cpu.threads ?? 1, whole = Math.floor(tiles / T), left = tiles % T;
  const split = T > 1 && left > 0 && panels % T === 0;
  const PG = panels / T, per = whole + left;

  // U_ξ = G g Gᵀ per (output, input) channel, packed [ξ][row panel][input channel][row of the panel].
  const wd = toNumbers(w!.data!);
  const bias = b ? toNumbers(b.data!) : undefined;
  // The bias follows, one per output channel.
  const u = new Float32Array(16 * M * C + (bias ? M : 0));
  bias?.forEach((v, m) => (u[16 * M * C + m] = v));
  for (let m = 0; m < M; m++)
    for (let ci = 0; ci < C; ci++) {
      const g = (r: number, s: number) => wd[((m * C + ci) * 3 + r) * 3 + s];
      const p0 = m - (m % MR), h = Math.min(MR, M - p0);
      for (let i = 0; i < 4; i++)
        for (let j = 0; j < 4; j++) {
          let v = 0;
          for (let r = 0; r < 3; r++) for (let s = 0; s < 3; s++) v += G[i][r] * g(r, s) * G[j][s];
          u[(i * 4 + j) * M * C + p0 * C + ci * h + (m - p0)] = v;
        }
    }
  const U = c.constant!(`${node.name}_winograd`, { dtype: "float32", shape: [u.length], data: u });

  // The four phases of the zero-padded input, with a tile's worth of zeros after the last, which
  // the ragged last tile's vectors read past its columns.
  const xq = c.shared!(4 * C * plane + NT);
  const copy = phaseCopy(c, x!, xq, { sh: 2, sw: 2, ph, pw, Hq, Wq });
  const tailZeros = nest(names, [NT], ([i]) => [{ k: "store", buf: xq.buf, idx: add(int(4 * C * plane), i), val: cst(0) }], false);

  // Per thread: V [16][C][NT], then the products [16][M][NT].
  const scratch = c.scratch!(16 * (C + M) * NT);
  const main = nest(names, [split ? T * per : tiles], ([it]) => {
    // iteration j of part t: a whole tile, or (shared) part t's share of a tile left over
    const [t, j] = [div(it, int(per)), mod(it, int(per))];
    const shared = lt(int(whole - 1), j);
    const jt = split ? select(shared, add(int(whole * T - whole), j), add(mul(t, int(whole)), j)) : it;
    const mine = and(shared, lt(t, int(T - 1))); // a share that ends before the last channel
    // x in the share [t·step, (t+1)·step) ([t·step, end) for the last), or in [0, end) for a whole tile
    const within = (x: Expr, step: number, end: number): Expr =>
      and(ge(x, select(shared, mul(t, int(step)), int(0))), lt(x, select(mine, add(mul(t, int(step)), int(step)), int(end))));
    const slice = names.next("slice");
    const vAt = (xi: number, ci: Expr, v: number) => add(vr(slice), add(mul(add(int(xi * C), ci), int(NT)), int(v * L)));
    const mAt = (xi: number, m: Expr, v: number) => add(vr(slice), add(mul(add(int(16 * C + xi * M), m), int(NT)), int(v * L)));
    const q0 = mul(jt, int(NT));

    // Bᵀ d B for each input channel, a vector of blocks at a time.
    const input = nest(names, [C], ([ci]) => Array.from({ length: nv }, (_, v) => {
      const d = (a: number, bb: number): Expr => vload(xq.buf, add(mul(add(int(((a % 2) * 2 + (bb % 2)) * C), ci), int(plane)), add(q0, int(v * L + (a >> 1) * Wq + (bb >> 1)))), L);
      return { k: "block", body: transform4(names, L, BT, BT, d, (i, j, val) => vstore(scratch.buf, vAt(i * 4 + j, ci, v), val, L)) } as Stmt;
    }), false);

    // U_ξ · V_ξ, rows (output channels) in panels of MR.
    const product = (xi: number, row0: Expr, mr: number): Stmt[] => {
      const accs = accumulators(names, mr, nv);
      const aAt = (k: Expr, r: number): Expr => ({ k: "load", buf: U.buf, idx: add(add(int(xi * M * C), mul(row0, int(C))), add(mul(k, int(mr)), int(r))), dtype: "float32" });
      return [{
        k: "block",
        body: [
          ...accs.flatMap((rs) => rs.map((n) => vlet(n, splat(cst(0), L), L))),
          productLoop(names, L, accs, C, (k, v) => vload(scratch.buf, vAt(xi, k, v), L), aAt),
          ...accs.flatMap((rs, r) => rs.map((n, v) => vstore(scratch.buf, mAt(xi, add(row0, int(r)), v), vvar(n, L), L))),
        ],
      }];
    };
    const tailRows = (ss: Stmt[]): Stmt[] => (split ? [if_(or(lt(j, int(whole)), eq(t, int(T - 1))), ss)] : ss);
    const products = Array.from({ length: 16 }, (_, xi) => [
      ...(panels ? nest(names, [panels], ([p]) => (split ? [if_(within(p, PG, panels), product(xi, mul(p, int(MR)), MR))] : product(xi, mul(p, int(MR)), MR)), false) : []),
      ...(tail ? tailRows(product(xi, int(panels * MR), tail)) : []),
    ]).flat();

    // Aᵀ m A per output channel, plus the bias, through the epilogue. The 2×2 outputs of the
    // tile's blocks go to a local row by row, a block's two columns side by side (spread into the
    // even and the odd lanes, the others 0 and added: a −0 comes out +0), so that output row
    // 2·gy + i of grid row gy is a run of it. A vector of L/2 blocks whose L outputs all exist and
    // lie in one output row (that of its first block, found once per tile) is stored as one; the
    // others lane by lane, the lanes of each of the `reach` grid rows it can touch apart.
    const half = L / 2, per2 = (2 * NT) / L, reach = Math.ceil((half - 1) / Wq) + 1;
    const first = Array.from({ length: per2 }, () => [names.next("gy"), names.next("gx")]);
    const lanes: Stmt[] = first.flatMap(([gy, gx], u) => [
      let_(gy, "int32", div(add(q0, int(u * half)), int(Wq))),
      let_(gx, "int32", mod(add(q0, int(u * half)), int(Wq))),
    ]);
    const even = Array.from({ length: L }, (_, l) => (l % 2 ? 0 : 1 << l)).reduce((a, b) => a | b, 0);
    const odd = (even << 1) & ((1 << L) - 1);
    const channel = (m: Expr): Stmt[] => {
      const [tile, rows] = [names.next("out"), names.next("rows")];
      const body: Stmt[] = [{ k: "local", name: tile, dtype: "float32", n: 4 * NT }, { k: "local", name: rows, dtype: "float32", n: 4 * NT }];
      for (let v = 0; v < nv; v++) {
        const mv = (i: number, j: number): Expr => vload(scratch.buf, mAt(i * 4 + j, m, v), L);
        body.push({ k: "block", body: transform4(names, L, AT, AT, mv, (i, j, val) => vstore(tile, int((i * 2 + j) * NT + v * L), val, L)) });
      }
      const spread = (at: number, mask: number): Expr => ({ k: "load", buf: tile, idx: int(at), dtype: "float32", lanes: L, spread: { mask, fill: 0 } });
      for (let i = 0; i < 2; i++)
        for (let u = 0; u < per2; u++) body.push(vstore(rows, int(i * 2 * NT + u * L), add(spread(2 * i * NT + u * half, even), spread((2 * i + 1) * NT + u * half, odd)), L));
      const k = names.next("k"), kv = vr(k);
      for (let i = 0; i < 2; i++)
        first.forEach(([gy, gx], u) => {
          for (let p = 0; p < reach; p++) {
            // lane k of the vector is output column k − off2 of row 2·(gy + p) + i; those in [from, to) exist
            const off2 = mul(sub(int(p * Wq), vr(gx)), int(2)), row = add(mul(add(vr(gy), int(p)), int(2)), int(i));
            const sum: Expr = { k: "load", buf: rows, idx: add(int(i * 2 * NT + u * L), kv), dtype: "float32" };
            const val = bias ? add(sum, { k: "load", buf: U.buf, idx: add(int(16 * M * C), m), dtype: "float32" }) : sum;
            const lane: Stmt[] = [store(y, [int(0), m, row, sub(kv, off2)], val)];
            const [from, to] = [max(int(0), off2), min(int(L), add(off2, int(OW)))];
            const scalar: Stmt = { k: "for", v: k, n: L, body: [if_(and(ge(kv, from), lt(kv, to)), lane)] };
            // only the first grid row's piece can be whole: the others start past lane 0
            const vector = p === 0 ? vectorizeLanes(lane, k, int(0), L) : undefined;
            body.push(if_(lt(row, int(OH)), vector ? [if_(le(int(L), to), vector, [scalar])] : [scalar]));
          }
        });
      return body;
    };
    const output = nest(names, [M], ([m]) => {
      const body = channel(m);
      return split ? [if_(within(m, PG * MR, M), body)] : body;
    }, false);
    return [let_(slice, "int32", mul(threadId, int(sliceElems(16 * (C + M) * NT)))), ...input, ...products, ...lanes, ...output];
  });
  return [...copy, ...tailZeros, ...main];
}

/**
 * Z = Lᵀ-side · X · R-side for a 4-wide X read through at(i, j) (vectors): left[i] and right[j]
 * are rows of 0/±1 coefficients, so each output is a sum of a few vectors; put(i, j, value).
 */
function transform4(
  names: { next(tag: string): string },
  L: number,
  left: number[][],
  right: number[][],
  at: (a: number, b: number) => Expr,
  put: (i: number, j: number, v: Expr) => Stmt,
): Stmt[] {
  const out: Stmt[] = [];
  const xs = Array.from({ length: 4 }, (_, a) => Array.from({ length: 4 }, (_, bb) => {
    const n = names.next("d");
    out.push(vlet(n, at(a, bb), L));
    return vvar(n, L);
  }));
  // Every row has a positive coefficient: it goes first, so no term is negated alone.
  const comb = (row: number[], pick: (k: number) => Expr): Expr => {
    const terms = row.map((coef, k) => [coef, k]).filter(([coef]) => coef).sort((p, q) => q[0] - p[0]);
    return terms.slice(1).reduce((e, [coef, k]) => (coef > 0 ? add(e, pick(k)) : sub(e, pick(k))), pick(terms[0][1]));
  };
  const rows = left.map((lrow) => Array.from({ length: 4 }, (_, bb) => {
    const n = names.next("s");
    out.push(vlet(n, comb(lrow, (a) => xs[a][bb]), L));
    return vvar(n, L);
  }));
  rows.forEach((r, i) => right.forEach((rrow, j) => out.push(put(i, j, comb(rrow, (bb) => r[bb])))));
  return out;
}
