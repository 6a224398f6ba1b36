import type { Tensor } from "../../core/tensor.js";
import {
  add, and, cst, div, ge, int, le, let_, lt, min, mod, mul, nest, select, set, splat, store, sub, threadId, vlet, vload, vr, vstore, vvar, if_, type Names, type Ref,
} from "../build.js";
import { mentionsVar, touched, withMask, type Expr, type LaneRange, type Stmt } from "../ir.js";
import { vectorizeLanes } from "../vectorize.js";
import { sliceElems, type CpuShape, type LowerCtx } from "./types.js";

/**
 * A float32 matrix product per batch index b,
 *   y[yIndex(b, r, j)] = post(b, r, j, init(b, r) + Σ_k A(b, r, k) · B(b, k, j)),
 * as register-blocked micro-kernels: the output is cut into tiles of MR rows × NT columns (NT a
 * whole number of vectors), each tile's MR·NT/lanes accumulators stay in registers across the k
 * loop, which per step loads NT/lanes vectors of B and broadcasts MR scalars of A. B is read packed,
 * one column tile at a time as a contiguous [depth][NT] panel (zero beyond the last column): packed
 * at compile time when B is constant, else gathered by `packB` into per-thread scratch at the start
 * of each tile. Column tiles (and batch) are the parallel axis.
 */
export interface GemmSpec {
  batch: number[];
  rows: number;
  cols: number;
  depth: number;
  /** the broadcast operand, one scalar per (row, k) */
  a: (b: Expr[], row: Expr, k: Expr) => Expr;
  /** A's element (row, k) when A is a compile-time constant: then it is packed in panels of MR rows */
  aConst?: (row: number, k: number) => number;
  /**
   * statements that write A's rows row0..row0+h−1 (a panel) over the whole depth through
   * put(k, r, value), r < h: A is then packed at run time, once, into scratch all threads share,
   * laid out as aConst's panels (batch must be one image)
   */
  packA?: (row0: Expr, h: number, put: (k: Expr, r: Expr, v: Expr) => Stmt) => Stmt[];
  /** B's element (k, j) when B is a compile-time constant */
  bConst?: (k: number, j: number) => number;
  /**
   * statements that write B's column tile starting at j0 through put(k, j, value), for j < NT;
   * `full` says every column of the tile exists (no check against the column count needed)
   */
  packB?: (b: Expr[], j0: Expr, put: (k: Expr, j: Expr, v: Expr) => Stmt, full: boolean) => Stmt[];
  /** the accumulator's starting value per row (a convolution's bias) */
  init?: (b: Expr[], row: Expr) => Expr;
  /** the output and the index of (row, j) in it; its elements are contiguous along j, unless colOk or strided */
  y: Ref;
  /** y's elements are not contiguous along j (a product computed transposed): whole tiles are scattered, a ragged one goes element by element through the tile */
  strided?: boolean;
  yAt: (b: Expr[], row: Expr, j: Expr) => Expr[];
  /** the columns that exist, when some do not (computed and dropped): then every store goes through the tile */
  colOk?: (j: Expr) => Expr;
  /**
   * whether columns j..j+n−1 all exist and lie next to each other in y, and the index of column
   * j + l there, when yAt alone does not show it: such a run is stored as one vector
   */
  run?: { ok: (j: Expr, n: number) => Expr; at: (b: Expr[], row: Expr, j: Expr, l: Expr) => Expr[] };
  /**
   * the columns are a grid of rows `width` wide of which the first `valid` exist (colOk says the
   * same), and `at` gives the index in y of (row, the grid row, a column of it): a vector of
   * columns that is not stored whole then finds its first column's grid row and column once, not
   * each element's with a division
   */
  grid?: { width: number; valid: number; at: (b: Expr[], row: Expr, gridRow: Expr, col: Expr) => Expr[] };
  /** a scalar step between the sum and the store (Gemm's alpha and C) */
  post?: (b: Expr[], row: Expr, j: Expr, v: Expr) => Expr;
  /** the product runs inside the caller's parallel loop (one band of a pooled convolution): its tiles in order, on one thread */
  serial?: boolean;
  /**
   * y may be the memory packB reads (a convolution in place): tiles-outer, whose tile is packed
   * whole before its outputs are stored, and never rows-outer, which would pack all of B first
   */
  inPlace?: boolean;
}

/**
 * Register blocking for a CPU: two vectors of columns, as many rows as registers allow, at most 8
 * (a network's channels come in eights), or at most 14 when A is packed at run time (`tall`: a
 * transposed convolution, whose rows are pixels): there each panel streams all of B, the
 * weights, from cache, so taller panels stream them fewer times (ResNet-18's layer4 3×3
 * convolutions on 7×7 maps, 14 rows against 8: 0.87× the time, one thread; 14 is what was
 * measured, and leaves registers for the compiler even with one vector of columns).
 */
function blocking(cpu: CpuShape, cols: number, tall = false): { mr: number; nv: number } {
  const nv = cols <= cpu.lanes ? 1 : 2;
  return { mr: Math.max(1, Math.min(tall ? 14 : 8, Math.floor((cpu.registers - nv - 1) / nv))), nv };
}

/** Columns per tile (NT) for a product with `cols` columns: what a packB callback fills per tile. */
export const tileColumns = (cpu: CpuShape, cols: number) => cpu.lanes * blocking(cpu, cols).nv;

/** Rows per panel (MR) for a product with `cols` columns (`tall`: A packed at run time). */
export const panelRows = (cpu: CpuShape, cols: number, tall = false) => blocking(cpu, cols, tall).mr;

/** B's column tiles laid out as the micro-kernel reads them: [tiles][depth][NT], zero padded. */
function packConst(s: GemmSpec, nt: number): Tensor {
  const tiles = Math.ceil(s.cols / nt);
  const data = new Float32Array(tiles * s.depth * nt);
  for (let t = 0; t < tiles; t++)
    for (let k = 0; k < s.depth; k++)
      for (let j = 0; j < nt && t * nt + j < s.cols; j++) data[(t * s.depth + k) * nt + j] = s.bConst!(k, t * nt + j);
  return { dtype: "float32", shape: [data.length], data };
}

/** A's rows in panels as the micro-kernel reads them: panel by panel, [depth][rows of the panel]. */
function packRows(s: GemmSpec, mr: number): Tensor {
  const data = new Float32Array(s.rows * s.depth);
  for (let r0 = 0; r0 < s.rows; r0 += mr) {
    const h = Math.min(mr, s.rows - r0);
    for (let k = 0; k < s.depth; k++) for (let r = 0; r < h; r++) data[r0 * s.depth + k * h + r] = s.aConst!(r0 + r, k);
  }
  return { dtype: "float32", shape: [data.length], data };
}

/**
 * Products with few column tiles and constant rows (a late convolution: a small map, many weights)
 * run rows-outer: the columns are packed once, for all threads, and each thread takes groups of
 * row panels, walking the depth in blocks so that a block of a tile's packed columns stays in cache
 * across a group's panels. Tiles-outer splits the few tiles between threads, and each thread then
 * reads all the weights: ResNet-18's last 3×3 convolutions (9.4 MB of weights, two tiles) ran 1.4×
 * faster on two threads than on one that way, and 1.8× rows-outer.
 */
const ROWS_OUTER_TILES = 4;
/** At most this many row groups: the parallel axis of a rows-outer product. */
const ROW_GROUPS = 8;

/** The depth block of a rows-outer product: the largest divisor of the depth in 64..320, else all of it. */
function depthBlock(depth: number): number {
  for (let kc = Math.min(320, depth); kc >= 64; kc--) if (depth % kc === 0) return kc;
  return depth;
}

/** A stretch of the depth that a micro-kernel accumulates over: k0 .. k0+n−1. */
interface Stretch {
  k0: Expr;
  n: number;
  /** the index of the packed columns' vector v at depth k0 + k */
  bAt: (k: Expr, v: number) => Expr;
  /** when the accumulators carry on from an earlier stretch, and where that one left them */
  resume?: { when: Expr; from: (r: number, v: number) => Expr };
  /** when they are left for a later stretch instead of going through the epilogue, and where */
  suspend?: { when: Expr; to: (r: number, v: number) => Expr };
}

/** Names for the mr×nv vector accumulators of a register block, row by row. */
export const accumulators = (names: Names, mr: number, nv: number): string[][] =>
  Array.from({ length: mr }, (_, r) => Array.from({ length: nv }, (_, v) => names.next(`acc${r}_${v}`)));

/**
 * The micro-kernel's loop over k < n: each step loads nv vectors of B (bAt) and, per row r,
 * broadcasts A's scalar aAt(k, r) and multiply-adds it into that row's accumulators.
 */
export function productLoop(names: Names, L: number, accs: string[][], n: number, bAt: (k: Expr, v: number) => Expr, aAt: (k: Expr, r: number) => Expr): Stmt {
  const k = names.next("k");
  const kv = vr(k);
  const bv = accs[0].map(() => names.next("b"));
  const step: Stmt[] = bv.map((b, v) => vlet(b, bAt(kv, v), L));
  accs.forEach((rs, r) => {
    const av = names.next("a");
    step.push(vlet(av, splat(aAt(kv, r), L), L));
    rs.forEach((acc, v) => step.push(set(acc, add(vvar(acc, L), mul(vvar(av, L), vvar(bv[v], L))))));
  });
  return { k: "for", v: k, n, body: step };
}

export function gemmKernel(c: LowerCtx, s: GemmSpec): Stmt[] {
  const cpu = c.cpu!;
  const L = cpu.lanes;
  const { mr: MR, nv } = blocking(cpu, s.cols, !!s.packA);
  const NT = L * nv;
  const tiles = Math.ceil(s.cols / NT);
  const ragged = s.cols % NT !== 0;
  // The ragged last tile multiplies only the vectors that hold columns: a 14×14 map's 196 pixels
  // leave 4 columns past six tiles of 32, one vector's work instead of two.
  const nvLast = ragged ? Math.ceil((s.cols % NT) / L) : nv;
  const panels = Math.floor(s.rows / MR), tail = s.rows % MR;
  if (s.packA && s.batch.some((d) => d !== 1)) throw new Error(`internal: ${c.node.name}: A packed at run time needs a batch of one`);
  if (s.inPlace && (!s.packB || s.packA || s.bConst)) throw new Error(`internal: ${c.node.name}: a product in place must pack its columns, tile by tile`);
  const aPacked = s.aConst ? c.constant!(`${c.node.name}_rows`, packRows(s, MR)) : s.packA ? c.shared!(s.rows * s.depth) : undefined;
  // A's panels packed at run time, a panel per thread, before any tile reads them.
  const packA = (row0: Expr, h: number): Stmt[] => s.packA!(row0, h, (k, r, v) => ({ k: "store", buf: aPacked!.buf, idx: add(add(mul(row0, int(s.depth)), mul(k, int(h))), r), val: v }));
  const aPre = !s.packA ? [] : [...(panels ? nest(c.names, [panels], ([p]) => packA(mul(p, int(MR)), MR)) : []), ...(tail ? packA(int(panels * MR), tail) : [])];
  const rowsOuter = !s.serial && !s.inPlace && !!s.aConst && !!s.packB && s.batch.every((d) => d === 1) && tiles <= ROWS_OUTER_TILES && panels >= 2;
  const packed = s.bConst ? c.constant!(`${c.node.name}_packed`, packConst(s, NT)) : rowsOuter ? c.shared!(tiles * s.depth * NT) : c.scratch!(s.depth * NT);
  // Rows-outer: the depth in blocks, and row groups of `per` panels, whose accumulators wait between
  // blocks in per-thread scratch, [panel][row][tile][NT].
  const KC = rowsOuter ? depthBlock(s.depth) : s.depth, blocks = s.depth / KC;
  const per = rowsOuter ? Math.ceil(panels / Math.min(ROW_GROUPS, panels)) : 0;
  const carry = rowsOuter && blocks > 1 ? c.scratch!(per * MR * tiles * NT) : undefined;
  // The last, ragged tile checks its columns; the full ones before it do not, so their packing and
  // epilogue stay plain vector code.
  const split = (j0: Expr, f: (full: boolean) => Stmt[]): Stmt[] => (ragged ? [if_(le(add(j0, int(NT)), int(s.cols)), f(true), f(false))] : f(true));

  /**
   * The mr×NT accumulators of rows row0.. and the tile at j0 over one stretch of the depth, then the
   * epilogue (or the next stretch); `tile` says when the caller knows it is a full one or the last,
   * ragged one, which takes only its first nvLast vectors.
   */
  const microKernel = (b: Expr[], j0: Expr, row0: Expr, mr: number, d: Stretch, tile?: "full" | "last"): Stmt[] => {
    const accs = accumulators(c.names, mr, tile === "last" ? nvLast : nv);
    const row = (r: number) => add(row0, int(r));
    const each = (f: (n: string, r: number, v: number) => Stmt): Stmt[] => accs.flatMap((rs, r) => rs.map((n, v) => f(n, r, v)));
    const out = each((n, r) => vlet(n, splat(s.init ? s.init(b, row(r)) : cst(0), L), L));
    if (d.resume) out.push(if_(d.resume.when, each((n, r, v) => set(n, vload(carry!.buf, d.resume!.from(r, v), L)))));
    out.push(productLoop(c.names, L, accs, d.n, (k, v) => vload(packed.buf, d.bAt(k, v), L), (k, r) => {
      const depth = add(d.k0, k);
      return aPacked
        ? { k: "load", buf: aPacked.buf, idx: add(mul(row0, int(s.depth)), add(mul(depth, int(mr)), int(r))), dtype: "float32" }
        : s.a(b, row(r), depth);
    }));
    /**
     * The epilogue on the accumulators themselves, a vector at a time (scattered when y is strided),
     * the last tile's partial vectors as masked stores; undefined when it does not vectorize, or when
     * a partial vector would read memory past its columns. Each vector's epilogue is vectorized from
     * one lane's, whose value is a load along the lane from the accumulator's name (no store touches
     * it), and that load's vector is then bound to the accumulator. MobileNetV2's 1×1 convolutions
     * with their Clip on 6×6 maps took twice as long as the convolution and the Clip apart when the 4
     * columns past the first tile went through a stack tile one by one.
     */
    const epilogueInRegisters = (full: boolean): Stmt[] | undefined => {
      const out: Stmt[] = [];
      const l = c.names.next("l");
      const last = (tiles - 1) * NT;
      for (const [r, rs] of accs.entries())
        for (const [v, n] of rs.entries()) {
          const present = full ? L : Math.min(L, s.cols - last - v * L);
          if (present <= 0) continue;
          const x = c.names.next("e"), j = add(j0, add(int(v * L), vr(l)));
          const lane: Stmt[] = [let_(x, "float32", { k: "load", buf: n, idx: vr(l), dtype: "float32" }), store(s.y, s.yAt(b, row(r), j), s.post ? s.post(b, row(r), j, vr(x, "float32")) : vr(x, "float32"))];
          // One lane has no scatter (the scalar prelude has none): a strided y then keeps the tile.
          const vec = vectorizeLanes(lane, l, int(0), L, !!s.strided && L > 1);
          if (!vec || (present < L && loadsAlong(lane.slice(1), l))) return undefined;
          out.push(vlet(x, vvar(n, L), L), ...(present < L ? withMask(vec.slice(1), { from: int(0), to: int(present) }) : vec.slice(1)));
        }
      return out;
    };
    /**
     * A vector of a grid's columns from grid row gr, column gc on (L ≤ width, so at most one grid row
     * ends inside it): the lanes up to that row's last column that exists, and those from the start
     * of the next, each one run of the output, with where lane l of it goes.
     */
    const gridRuns = (g: NonNullable<GemmSpec["grid"]>, rowIdx: Expr, gr: string, gc: string): { dest: (l: Expr) => Expr[]; lanes: LaneRange }[] => {
      const next = sub(int(g.width), vr(gc));
      return [
        { dest: (l) => g.at(b, rowIdx, vr(gr), add(vr(gc), l)), lanes: { from: int(0), to: min(int(L), sub(int(g.valid), vr(gc))) } },
        { dest: (l) => g.at(b, rowIdx, add(vr(gr), int(1)), add(vr(gc), add(l, int(-g.width)))), lanes: { from: next, to: min(int(L), add(next, int(g.valid))) } },
      ];
    };
    /**
     * The epilogue on the accumulators of a product on a grid (see GemmSpec.grid), when it reads no
     * memory by column, grid row or grid column: each vector of columns that lies in one grid row is
     * stored as a run, the others as the lanes up to the end of their grid row and those from the
     * start of the next, each under a mask; the grid row and column of a vector's first column are
     * found once for all its rows. Through the stack tile instead, MNASNet's stem took 0.160 ms, not
     * 0.154, and SqueezeNet 1.1's first convolution and pool 0.352, not 0.321 (profiling builds).
     */
    const gridInRegisters = (g: NonNullable<GemmSpec["grid"]>, full: boolean): Stmt[] | undefined => {
      if (s.strided || L === 1 || L > g.width) return undefined;
      const out: Stmt[] = [];
      const last = (tiles - 1) * NT;
      for (let v = 0; v < nv; v++) {
        const present = full ? L : Math.min(L, s.cols - last - v * L);
        if (present <= 0) continue;
        const start = add(j0, int(v * L));
        const [gr, gc] = [c.names.next("grow"), c.names.next("gcol")];
        const upTo = (to: Expr) => (present < L ? min(to, int(present)) : to);
        out.push(let_(gr, "int32", div(start, int(g.width))), let_(gc, "int32", mod(start, int(g.width))));
        for (const [r, rs] of accs.entries()) {
          const n = rs[v], x = c.names.next("e"), l = c.names.next("l");
          const vector = (dest: Expr[]): Stmt[] | undefined => {
            const val = s.post ? s.post(b, row(r), add(start, vr(l)), vr(x, "float32")) : vr(x, "float32");
            const lane: Stmt[] = [let_(x, "float32", { k: "load", buf: n, idx: vr(l), dtype: "float32" }), store(s.y, dest, val)];
            // The other half's value is computed even when it stores no lane: a load by grid row
            // (an epilogue's per-row constant) would read row gr + 1, which may not exist.
            return loadsAlong(lane.slice(1), l, gr, gc) ? undefined : vectorizeLanes(lane, l, int(0), L)?.slice(1);
          };
          const whole = s.run && present === L ? vector(s.run.at(b, row(r), start, vr(l))) : undefined;
          const runs = gridRuns(g, row(r), gr, gc).map(({ dest, lanes }) => {
            const vec = vector(dest(vr(l)));
            return vec && withMask(vec, { from: lanes.from, to: upTo(lanes.to) });
          });
          if (runs.some((run) => !run) || (s.run && present === L && !whole)) return undefined;
          const split = runs.flatMap((run) => run!);
          out.push(vlet(x, vvar(n, L), L), ...(whole ? [if_(s.run!.ok(start, L), whole, split)] : split));
        }
      }
      return out;
    };
    // The accumulators to memory: from the registers (through the epilogue, if any), or through a stack tile.
    const writeOut = (full: boolean): Stmt[] => {
      const out: Stmt[] = [];
      // No masked scatter: a strided y's ragged tile keeps the tile.
      const inRegisters = (!s.colOk && (full || !s.strided) ? epilogueInRegisters(full) : undefined) ?? (s.grid ? gridInRegisters(s.grid, full) : undefined);
      if (inRegisters) return inRegisters;
      // Through a stack tile, so the epilogue is a loop over columns that vectorizes.
      const tile = c.names.next("tile");
      out.push({ k: "local", name: tile, dtype: "float32", n: mr * NT });
      accs.forEach((rs, r) => {
        rs.forEach((n, v) => out.push(vstore(tile, int(r * NT + v * L), vvar(n, L), L)));
        for (let v = rs.length; v < nv; v++) out.push(vstore(tile, int(r * NT + v * L), splat(cst(0), L), L));
      });
      const r = c.names.next("r"), jv = c.names.next("jv"), l = c.names.next("l");
      const rv = vr(r), lv = vr(l);
      const j = add(j0, add(mul(vr(jv), int(L)), lv));
      const x: Expr = { k: "load", buf: tile, idx: add(add(mul(rv, int(NT)), mul(vr(jv), int(L))), lv), dtype: "float32" };
      const val = s.post ? s.post(b, add(row0, rv), j, x) : x;
      const st = store(s.y, s.yAt(b, add(row0, rv), j), val);
      // A vector of columns that all exist is stored whole: through yAt when the store stays affine
      // in the lane, else as a run (see GemmSpec.run); only the others go column by column.
      const start = add(j0, mul(vr(jv), int(L)));
      const inside = full ? [] : [le(add(start, int(L)), int(s.cols))];
      const plain = s.colOk || s.strided ? undefined : vectorizeLanes([st], l, int(0), L);
      const run = !plain && s.run ? vectorizeLanes([store(s.y, s.run.at(b, add(row0, rv), start, lv), val)], l, int(0), L) : undefined;
      const vector = plain ?? run;
      const fits = run ? [...inside, s.run!.ok(start, L)] : inside;
      const columns = (): Stmt[] => {
        const conds = [...(full ? [] : [lt(j, int(s.cols))]), ...(s.colOk ? [s.colOk(j)] : [])];
        const scalar: Stmt[] = conds.length ? [if_(conds.reduce((a, b) => and(a, b)), [st])] : [st];
        return vectorizeLanes(scalar, l, int(0), L) ?? [{ k: "for", v: l, n: L, body: scalar }];
      };
      // On a grid, the vector's first column's grid row and column, once: at most one grid row ends
      // inside the vector (L ≤ width), and the lanes past it are on the next row.
      const gridLanes = (g: NonNullable<GemmSpec["grid"]>): Stmt[] => {
        const [gr, gc] = [c.names.next("grow"), c.names.next("gcol")];
        // The lanes up to the end of the grid row, and those from the start of the next, are each one
        // run of the output: a store of those lanes each, when the epilogue reads only the tile.
        const upTo = (to: Expr) => (full ? to : min(to, sub(int(s.cols), start)));
        const runs = gridRuns(g, add(row0, rv), gr, gc).map(({ dest, lanes }) => {
          const vec = L > 1 ? vectorizeLanes([store(s.y, dest(lv), val)], l, int(0), L) : undefined;
          return vec && [...touched(vec).reads].every((buf) => buf === tile) ? withMask(vec, { from: lanes.from, to: upTo(lanes.to) }) : undefined;
        });
        let lanes: Stmt[];
        if (runs.every((run) => run)) lanes = runs.flatMap((run) => run!);
        else {
          // Else column by column, each finding its row from the first column's.
          const cl = add(vr(gc), lv), wraps = ge(cl, int(g.width));
          const col = select(wraps, add(cl, int(-g.width)), cl);
          const at = g.at(b, add(row0, rv), add(vr(gr), select(wraps, int(1), int(0))), col);
          const ok = [lt(col, int(g.valid)), ...(full ? [] : [lt(add(start, lv), int(s.cols))])].reduce((a, b) => and(a, b));
          lanes = [{ k: "for", v: l, n: L, body: [if_(ok, [store(s.y, at, val)])] }];
        }
        // A reduction stitched into the epilogue may not read the row.
        return [...(mentionsVar(lanes, gr) ? [let_(gr, "int32", div(start, int(g.width)))] : []), let_(gc, "int32", mod(start, int(g.width))), ...lanes];
      };
      const others = () => (s.grid && L <= s.grid.width ? gridLanes(s.grid) : columns());
      const lanes = !vector ? others() : fits.length ? [if_(fits.reduce((a, b) => and(a, b)), vector, others())] : vector;
      out.push({ k: "for", v: r, n: mr, body: [{ k: "for", v: jv, n: nv, body: lanes }] });
      return out;
    };
    const epilogue = tile ? writeOut(tile === "full") : split(j0, writeOut);
    out.push(...(d.suspend ? [if_(d.suspend.when, each((n, r, v) => vstore(carry!.buf, d.suspend!.to(r, v), vvar(n, L), L)), epilogue)] : epilogue));
    return [{ k: "block", body: out }];
  };

  // The parallel loop's work is the product's multiply-adds, half a unit each: its vector
  // statements undercount what a thread saves, and left dscnn_kws's 1×1 convolutions (64 by 64
  // channels, 125 pixels, 5 µs each; 512K multiply-adds) to one thread of two. At a whole unit
  // each, tiny_transformer_encoder's products of 128K–256K ran no faster on two threads and 1.12×
  // as long on one (then measured with an OpenMP region on one thread too, since gone).
  const work = (s.batch.reduce((a, d) => a * d, 1) * s.rows * s.cols * s.depth) / 2;
  if (!rowsOuter) {
    return [...aPre, ...withWork(nest(c.names, [...s.batch, tiles], (idx) => {
      const b = idx.slice(0, -1), jt = idx[idx.length - 1];
      const j0 = mul(jt, int(NT));
      // This thread's slice of scratch, found once per tile.
      const slice = s.bConst ? undefined : c.names.next("slice");
      const base = slice ? vr(slice) : mul(jt, int(s.depth * NT));
      const put = (k: Expr, j: Expr, v: Expr): Stmt => ({ k: "store", buf: packed.buf, idx: add(base, add(mul(k, int(NT)), j)), val: v });
      const packB = s.packB;
      const whole: Stretch = { k0: int(0), n: s.depth, bAt: (k, v) => add(base, add(mul(k, int(NT)), int(v * L))) };
      const body = [...(slice ? [let_(slice, "int32", mul(threadId, int(sliceElems(s.depth * NT))))] : []), ...(packB ? split(j0, (full) => packB(b, j0, put, full)) : [])];
      const kernels = (tile?: "full" | "last"): Stmt[] => [
        ...(panels ? nest(c.names, [panels], ([rt]) => microKernel(b, j0, mul(rt, int(MR)), MR, whole, tile), false) : []),
        ...(tail ? microKernel(b, j0, int(panels * MR), tail, whole, tile) : []),
      ];
      body.push(...(nvLast < nv ? split(j0, (full) => kernels(full ? "full" : "last")) : kernels()));
      return body;
    }, !s.serial), work)];
  }

  const b = s.batch.map(() => int(0));
  const at = (jt: Expr, k: Expr) => mul(add(mul(jt, int(s.depth)), k), int(NT));
  // Every tile's columns into the shared scratch, a tile per thread.
  const pack = nest(c.names, [tiles], ([jt]) => {
    const j0 = mul(jt, int(NT));
    return split(j0, (full) => s.packB!(b, j0, (k, j, v) => ({ k: "store", buf: packed.buf, idx: add(at(jt, k), j), val: v }), full));
  });
  const groups = Math.ceil(panels / per);
  const [g, kb, p, jt] = ["g", "kb", "p", "jt"].map((n) => c.names.next(n));
  const cBase = c.names.next("carry");
  const panel = add(mul(vr(g), int(per)), vr(p));
  const cAt = (r: number, v: number) => add(vr(cBase), add(mul(add(mul(add(mul(vr(p), int(MR)), int(r)), int(tiles)), vr(jt)), int(NT)), int(v * L)));
  const stretch: Stretch = {
    k0: mul(vr(kb), int(KC)),
    n: KC,
    bAt: (k, v) => add(at(vr(jt), add(mul(vr(kb), int(KC)), k)), int(v * L)),
    ...(carry ? { resume: { when: lt(int(0), vr(kb)), from: cAt }, suspend: { when: lt(vr(kb), int(blocks - 1)), to: cAt } } : {}),
  };
  const inGroup = microKernel(b, mul(vr(jt), int(NT)), mul(panel, int(MR)), MR, stretch);
  // Tiles outside panels: a panel's values that do not change with the tile (its bias) would be
  // hoisted out of an inner tile loop by GCC and held across the product, whose B vectors it then
  // spilled to the stack (SqueezeNet 1.1's 1×1 convolutions at 64×64, 7×7 maps: 2× their time).
  // A block of a tile's packed columns stays in cache across the group's panels instead.
  const grouped: Stmt = {
    k: "for", v: g, n: groups, parallel: true, work,
    body: [
      ...(carry ? [let_(cBase, "int32", mul(threadId, int(sliceElems(per * MR * tiles * NT))))] : []),
      { k: "for", v: kb, n: blocks, body: [{ k: "for", v: jt, n: tiles, body: [{ k: "for", v: p, n: per, body: panels % per ? [if_(lt(panel, int(panels)), inGroup)] : inGroup }] }] },
    ],
  };
  // The rows past the last whole panel: the full depth at once, a tile per thread.
  const rest = tail ? nest(c.names, [tiles], ([t]) => microKernel(b, mul(t, int(NT)), int(panels * MR), tail, { k0: int(0), n: s.depth, bAt: (k, v) => add(at(t, k), int(v * L)) })) : [];
  return [...pack, grouped, ...rest];
}

/** `ss` with its parallel loops stating `work`. */
const withWork = (ss: Stmt[], work: number): Stmt[] => ss.map((s) => (s.k === "for" && s.parallel ? { ...s, work } : s));

/** Whether `ss` loads at an index that moves with any of variables `vs` (with the first, a vector load once vectorized along it). */
function loadsAlong(ss: Stmt[], ...vs: string[]): boolean {
  let found = false;
  JSON.stringify(ss, (_, x) => ((found ||= x?.k === "load" && vs.some((v) => mentionsVar(x.idx, v))), x));
  return found;
}
