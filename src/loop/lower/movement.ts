import { fromNumbers, numel, toNumbers, type Tensor } from "../../core/tensor.js";
import { isFloat } from "../../core/dtype.js";
import {
  blockSize, concatLayout, depthToSpaceMode, dropoutMaskType, fillValue, gatherShape, padAmounts, shapeRange, sliceRanges,
  splitSizes, transposePerm, type PadMode,
} from "../../graph/ops/movement.js";
import {
  add, and, cast, cst, ge, int, load, loadBroadcast, loadFlat, lt, max, min, mod, mul, nest, select, store, storeFlat, sub,
  let_, vr, type Names, type Ref,
} from "../build.js";
import type { Expr, Stmt } from "../ir.js";
import type { Lowering } from "./types.js";
import { fromAt, type At } from "./at.js";

/**
 * Data-movement lowerings: every kernel is a plain copy loop over an output, reading the source
 * element at an index computed from the output index. Values are never converted (the store's
 * dtype equals the load's), so bool, int64 and float16 elements move as raw bits.
 */

/** The first element of a compile-time tensor as an exact literal: bigint for 64-bit ints, raw bits for float16. */
const literal = (t: Tensor): Expr => ({ k: "const", dtype: t.dtype, v: t.data[0] });

/** Flat element-by-element copy: Reshape, Flatten, Squeeze, Unsqueeze and Dropout move no data. */
const flatCopy = (names: Names, x: Ref, out: Ref): Stmt[] =>
  nest(names, [numel(out.shape)], ([i]) => [storeFlat(out, i, loadFlat(x, i))]);

const copyLowering: Lowering = ({ ins: [x], outs: [out], names }) => flatCopy(names, x!, out);

/** Fills every element of `out` with `v`. */
const fill = (names: Names, out: Ref, v: Expr): Stmt[] => nest(names, out.shape, (idx) => [store(out, idx, v)]);

/** Transpose: out[i0..ir] = x at the index whose axis perm[d] is i_d. */
const transposeAt: At = ({ node, ins: [x] }) => {
  const perm = transposePerm(node, x!.shape.length);
  return (idx) => {
    const src = new Array<Expr>(perm.length);
    perm.forEach((p, d) => (src[p] = idx[d]));
    return load(x!, src);
  };
};

/** Concat: one loop nest per input, writing its slab at that input's offset along the axis. */
const concat: Lowering = ({ node, ins, outs: [out], names }) => {
  const xs = ins as Ref[];
  const { axis, offsets } = concatLayout(node, xs.map((x) => x.shape));
  return xs.flatMap((x, k) =>
    nest(names, x.shape, (idx) => [store(out, idx.map((e, d) => (d === axis ? add(e, int(offsets[k])) : e)), load(x, idx))]),
  );
};

/** Concat read at one output index: the input whose slab holds it along the axis (a chain of `?:`). */
const concatAt: At = ({ node, ins }) => {
  const xs = ins as Ref[];
  const { axis, offsets } = concatLayout(node, xs.map((x) => x.shape));
  return (idx) =>
    xs.reduceRight<Expr | undefined>((rest, x, k) => {
      const v = load(x, idx.map((e, d) => (d === axis ? sub(e, int(offsets[k])) : e)));
      return rest ? select(lt(idx[axis], int(offsets[k] + x.shape[axis])), v, rest) : v;
    }, undefined)!;
};

/** Split: one loop nest per requested output, reading its slab at that output's offset along the axis. */
const split: Lowering = ({ node, ins: [x, s], outs, names }) => {
  const { axis, sizes } = splitSizes(node, x!.shape, s?.data ? toNumbers(s.data) : undefined);
  let off = 0;
  return outs.flatMap((out, k) => {
    const base = off;
    off += sizes[k];
    if (!out.buf) return [];
    return nest(names, out.shape, (idx) => [store(out, idx, load(x!, idx.map((e, d) => (d === axis ? add(e, int(base)) : e))))]);
  });
};

/** Slice: source index along each axis is start + i * step (ranges were clamped at compile time). */
const sliceAt: At = ({ node, ins: [x, s, e, a, st] }) => {
  const ints = (r: typeof s) => (r?.data ? toNumbers(r.data) : undefined);
  const { start, step } = sliceRanges(node, x!.shape, ints(s)!, ints(e)!, ints(a), ints(st));
  return (idx) => load(x!, idx.map((v, d) => add(int(start[d]), mul(v, int(step[d])))));
};

/**
 * Gather: indices are read at run time (they may be a graph input), negatives wrapped by adding
 * the axis size; an index still out of range yields 0 instead of an out-of-bounds read.
 */
const gather: Lowering = ({ node, ins: [x, ind], outs: [out], names }) => {
  const { axis } = gatherShape(node, x!.shape, ind!.shape);
  const q = ind!.shape.length;
  const d = x!.shape[axis];
  const it = ind!.dtype;
  return nest(names, out.shape, (idx) => {
    const raw = names.next("k");
    const k = names.next("k");
    const kv = vr(k, it);
    const inRange = and(ge(kv, cst(0, it)), lt(kv, cst(d, it)));
    const src = [...idx.slice(0, axis), cast(kv, "int32"), ...idx.slice(axis + q)];
    return [
      let_(raw, it, load(ind!, idx.slice(axis, axis + q))),
      let_(k, it, select(lt(vr(raw, it), cst(0, it)), add(vr(raw, it), cst(d, it)), vr(raw, it))),
      store(out, idx, select(inRange, load(x!, src), cst(0, out.dtype))),
    ];
  });
};

/** Gather as an expression (for inlining): the index load is repeated instead of kept in a local. */
const gatherAt: At = ({ node, ins: [x, ind] }) => {
  const { axis } = gatherShape(node, x!.shape, ind!.shape);
  const q = ind!.shape.length;
  const d = x!.shape[axis];
  const it = ind!.dtype;
  return (idx) => {
    const raw = load(ind!, idx.slice(axis, axis + q));
    const k = select(lt(raw, cst(0, it)), add(raw, cst(d, it)), raw);
    const src = [...idx.slice(0, axis), cast(k, "int32"), ...idx.slice(axis + q)];
    return select(and(ge(k, cst(0, it)), lt(k, cst(d, it))), load(x!, src), cst(0, x!.dtype));
  };
};

/** Expand: numpy broadcasting read of the input at each output index. */
const expandAt: At = ({ ins: [x] }) => (idx) => loadBroadcast(x!, idx);

/** Tile: source index along each axis is the output index modulo the input size. */
const tileAt: At = ({ ins: [x], outs: [out] }) => (idx) =>
  load(x!, x!.shape.map((d, i) => (d === 1 ? int(0) : d === out.shape[i] ? idx[i] : mod(idx[i], int(d)))));

/**
 * Source index along one axis for padded position i = o - before (o the output index). Offsets
 * added before `%` keep the dividend non-negative, so C's truncating remainder is a true modulo.
 * Reflect is periodic with period 2(d-1) (numpy's reflect, also for pads wider than the axis);
 * its phase goes to a local in `lets` because the result uses it twice.
 */
function padIndex(mode: PadMode, i: Expr, d: number, before: number, after: number, names: Names, lets: Stmt[]): Expr {
  if (before <= 0 && after <= 0) return i;
  switch (mode) {
    case "constant": return i;
    case "edge": return min(max(i, int(0)), int(d - 1));
    case "wrap": return mod(add(i, int(d * Math.ceil(Math.max(before, 0) / d))), int(d));
    case "reflect": {
      if (d === 1) return int(0);
      const p = 2 * (d - 1);
      const m = names.next("m");
      lets.push(let_(m, "int32", mod(add(i, int(p * Math.ceil(Math.max(before, 0) / p))), int(p))));
      return select(lt(vr(m), int(d)), vr(m), sub(int(p), vr(m)));
    }
  }
}

/** Constant-mode Pad as an expression: the fill value outside the input, a guarded read inside. */
const padConstantAt: At = ({ node, ins: [x, p, c, a] }) => {
  const { mode, before, after } = padAmounts(node, x!.shape, toNumbers(p!.data!), a?.data ? toNumbers(a.data) : undefined);
  if (mode !== "constant") throw new Error(`internal: only constant Pad is inlined, not ${mode}`);
  const padValue = c && numel(c.shape) > 0 ? (c.data ? literal(c.data) : loadFlat(c, int(0))) : cst(0, x!.dtype);
  return (idx) => {
    const src = x!.shape.map((_, k) => sub(idx[k], int(before[k])));
    const inside = src.flatMap((i, k) => [...(before[k] > 0 ? [ge(i, int(0))] : []), ...(after[k] > 0 ? [lt(i, int(x!.shape[k]))] : [])]);
    const v = load(x!, src);
    return inside.length ? select(inside.reduce(and), v, padValue) : v;
  };
};

/**
 * Pad: each output element reads the source index given by the mode (reflect, edge, wrap); in
 * constant mode positions outside the input take the fill value, and the guarded `?:` keeps the
 * out-of-range load from being evaluated.
 */
const pad: Lowering = ({ node, ins: [x, p, c, a], outs: [out], names }) => {
  const { mode, before, after } = padAmounts(node, x!.shape, toNumbers(p!.data!), a?.data ? toNumbers(a.data) : undefined);
  const padValue = c && numel(c.shape) > 0 ? (c.data ? literal(c.data) : loadFlat(c, int(0))) : cst(0, x!.dtype);
  return nest(names, out.shape, (idx) => {
    const inside: Expr[] = [];
    const lets: Stmt[] = [];
    const src = x!.shape.map((d, k) => {
      const i = sub(idx[k], int(before[k]));
      if (mode === "constant") {
        if (before[k] > 0) inside.push(ge(i, int(0)));
        if (after[k] > 0) inside.push(lt(i, int(d)));
      }
      return padIndex(mode, i, d, before[k], after[k], names, lets);
    });
    const v = load(x!, src);
    return [...lets, store(out, idx, inside.length ? select(inside.reduce(and), v, padValue) : v)];
  });
};

/**
 * DepthToSpace: loops over (n, c, h, i, w, j) write out[n, c, h*b+i, w*b+j] from channel
 * (i*b+j)*C' + c (DCR) or c*b*b + i*b + j (CRD) at (h, w).
 */
const depthToSpace: Lowering = ({ node, ins: [x], outs: [out], names }) => {
  const b = blockSize(node, "DepthToSpace");
  const crd = depthToSpaceMode(node) === "CRD";
  const [N, C2] = out.shape;
  const [, , H, W] = x!.shape;
  return nest(names, [N, C2, H, b, W, b], ([n, c, h, i, w, j]) => {
    const blk = add(mul(i, int(b)), j);
    const ch = crd ? add(mul(c, int(b * b)), blk) : add(mul(blk, int(C2)), c);
    return [store(out, [n, c, add(mul(h, int(b)), i), add(mul(w, int(b)), j)], load(x!, [n, ch, h, w]))];
  });
};

/** SpaceToDepth: loops over (n, c, h, i, w, j) write out[n, (i*b+j)*C + c, h, w] from x[n, c, h*b+i, w*b+j]. */
const spaceToDepth: Lowering = ({ node, ins: [x], outs: [out], names }) => {
  const b = blockSize(node, "SpaceToDepth");
  const [N, C] = x!.shape;
  const [, , H, W] = out.shape;
  return nest(names, [N, C, H, b, W, b], ([n, c, h, i, w, j]) => [
    store(out, [n, add(mul(add(mul(i, int(b)), j), int(C)), c), h, w], load(x!, [n, c, add(mul(h, int(b)), i), add(mul(w, int(b)), j)])),
  ]);
};

/** Shape and Size: the dims are known at compile time, so the kernel stores constants. */
const shape: Lowering = ({ node, ins: [x], outs: [out] }) => {
  const [s, e] = shapeRange(node, x!.shape.length);
  return x!.shape.slice(s, Math.max(s, e)).map((d, k) => storeFlat(out, int(k), cst(d, "int64")));
};

const size: Lowering = ({ ins: [x], outs: [out] }) => [storeFlat(out, int(0), cst(numel(x!.shape), "int64"))];

const constantOfShape: Lowering = ({ node, outs: [out], names }) => fill(names, out, literal(fillValue(node)));

/** Range: out[i] = start + i * delta, computed in double for floats (like the reference) and in the type for ints. */
const range: Lowering = ({ ins: [s, , d], outs: [out], names }) => {
  const w = isFloat(out.dtype) ? "float64" : out.dtype;
  const [start, delta] = [s!.data!, d!.data!].map((t) => toNumbers(t)[0]);
  return nest(names, out.shape, ([i]) => [storeFlat(out, i, add(cst(start, w), mul(cast(i, w), cst(delta, w))))]);
};

/** Dropout at inference: the data passes through and the optional mask is all ones. */
const dropout: Lowering = ({ node, ins: [x], outs: [out, mask], names }) => [
  ...flatCopy(names, x!, out),
  ...(mask?.buf ? fill(names, mask, literal(fromNumbers(dropoutMaskType(node, x!.dtype), [1], [1]))) : []),
];

export const MOVEMENT_LOWERINGS: Record<string, Lowering> = {
  Reshape: copyLowering,
  Flatten: copyLowering,
  Squeeze: copyLowering,
  Unsqueeze: copyLowering,
  Transpose: fromAt(transposeAt),
  Concat: concat,
  Split: split,
  Slice: fromAt(sliceAt),
  Gather: gather,
  Expand: fromAt(expandAt),
  Tile: fromAt(tileAt),
  Pad: pad,
  DepthToSpace: depthToSpace,
  SpaceToDepth: spaceToDepth,
  Shape: shape,
  Size: size,
  ConstantOfShape: constantOfShape,
  Range: range,
  Dropout: dropout,
};

/** Expression forms of the index-only ops, for inlining into consumers (Pad only in constant mode). */
export const MOVEMENT_AT: Record<string, At> = {
  Transpose: transposeAt,
  Concat: concatAt,
  Slice: sliceAt,
  Gather: gatherAt,
  Expand: expandAt,
  Tile: tileAt,
  Pad: padConstantAt,
};
