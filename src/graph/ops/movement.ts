import type { DType } from "../../core/dtype.js";
import { fromNumbers, numel, strides, toNumbers, zeros, type Tensor } from "../../core/tensor.js";
import { attrInts, attrNum, attrStr, type Node, type Value } from "../ir.js";
import { broadcastShapes, constInts, normAxis, opFail, shapeOf, type OpDef, type TypeShape } from "./types.js";

/**
 * Data-movement and shape ops. Each output element is a copy of one input element (or a fill
 * value), so `eval` copies raw elements by index: int64 stays exact and float16 keeps its bits.
 * The parameter helpers below (reshape target, slice ranges, split sizes, pads...) are exported
 * because the lowerings in loop/lower/movement.ts use the same arithmetic.
 */

type Elems = { [i: number]: number | bigint; length: number };

/** Calls `fn(idx, k)` for every multi-index of `shape` in row-major order (k = flat index). */
function forEachIndex(shape: readonly number[], fn: (idx: number[], k: number) => void): void {
  const total = numel(shape);
  const idx = shape.map(() => 0);
  for (let k = 0; k < total; k++) {
    fn(idx, k);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

const dot = (idx: readonly number[], st: readonly number[]) => idx.reduce((a, v, d) => a + v * st[d], 0);

/**
 * A tensor of `shape` whose element at each index is `x`'s element at flat index `src(idx)`, or
 * `fill` where `src` returns -1 (zero when there is no fill).
 */
function remap(x: Tensor, shape: number[], src: (idx: number[]) => number, fill?: number | bigint): Tensor {
  const out = zeros(x.dtype, shape);
  const o = out.data as Elems, xs = x.data as Elems;
  forEachIndex(shape, (idx, k) => {
    const s = src(idx);
    if (s >= 0) o[k] = xs[s];
    else if (fill !== undefined) o[k] = fill;
  });
  return out;
}

const withShape = (x: Tensor, shape: number[]): Tensor => ({ dtype: x.dtype, shape, data: x.data.slice() });

const same = (x: Value | undefined, shape: number[], n: Node): TypeShape => ({ dtype: x?.dtype ?? opFail(n, "has no data input"), shape });

// ---- parameter helpers shared with the lowerings ----

/** Reshape's output shape: 0 copies the input dim (unless allowzero), one -1 takes the rest. */
export function reshapeShape(n: Node, inShape: number[], target: number[]): number[] {
  const allowzero = attrNum(n, "allowzero", 0) !== 0;
  const out = target.map((d, i) => {
    if (d === 0 && !allowzero) {
      if (i >= inShape.length) opFail(n, `shape entry ${i} is 0 (copy input dim) but the input has rank ${inShape.length}`);
      return inShape[i];
    }
    return d;
  });
  const infer = out.filter((d) => d === -1).length;
  if (infer > 1) opFail(n, `shape [${target.join(", ")}] has more than one -1`);
  if (out.some((d) => d < -1)) opFail(n, `shape [${target.join(", ")}] has a negative entry`);
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const total = numel(inShape);
  if (infer) {
    if (known === 0 || total % known !== 0) opFail(n, `cannot reshape [${inShape.join("x")}] to [${target.join(", ")}]`);
    out[out.indexOf(-1)] = total / known;
  }
  if (numel(out) !== total) opFail(n, `cannot reshape [${inShape.join("x")}] (${total} elements) to [${out.join("x")}]`);
  return out;
}

export function flattenShape(n: Node, inShape: number[]): number[] {
  const r = inShape.length;
  let axis = attrNum(n, "axis", 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) opFail(n, `axis ${attrNum(n, "axis", 1)} is out of range for rank ${r}`);
  return [numel(inShape.slice(0, axis)), numel(inShape.slice(axis))];
}

export function squeezeShape(n: Node, inShape: number[], axes: number[] | undefined): number[] {
  if (!axes) return inShape.filter((d) => d !== 1);
  const drop = new Set(axes.map((a) => normAxis(n, a, inShape.length)));
  for (const a of drop) if (inShape[a] !== 1) opFail(n, `cannot squeeze axis ${a} of size ${inShape[a]} (shape [${inShape.join("x")}])`);
  return inShape.filter((_, i) => !drop.has(i));
}

export function unsqueezeShape(n: Node, inShape: number[], axes: number[]): number[] {
  const rank = inShape.length + axes.length;
  const ins = new Set(axes.map((a) => normAxis(n, a, rank)));
  if (ins.size !== axes.length) opFail(n, `axes [${axes.join(", ")}] repeat an axis`);
  const out: number[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) out.push(ins.has(i) ? 1 : inShape[k++]);
  return out;
}

export function transposePerm(n: Node, rank: number): number[] {
  const perm = attrInts(n, "perm", [...Array(rank).keys()].reverse());
  const sorted = [...perm].map((p) => (p < 0 ? p + rank : p)).sort((a, b) => a - b);
  if (perm.length !== rank || sorted.some((p, i) => p !== i)) opFail(n, `perm [${perm.join(", ")}] is not a permutation of ${rank} axes`);
  return perm.map((p) => (p < 0 ? p + rank : p));
}

/** Concat: the normalized axis and each input's offset along it. */
export function concatLayout(n: Node, shapes: number[][]): { axis: number; offsets: number[]; shape: number[] } {
  if (!shapes.length) opFail(n, "has no inputs");
  const rank = shapes[0].length;
  const axis = normAxis(n, attrNum(n, "axis", 0), rank);
  const offsets: number[] = [];
  let total = 0;
  for (const s of shapes) {
    if (s.length !== rank || s.some((d, i) => i !== axis && d !== shapes[0][i])) {
      opFail(n, `inputs [${shapes.map((x) => x.join("x")).join("], [")}] differ outside axis ${axis}`);
    }
    offsets.push(total);
    total += s[axis];
  }
  const shape = [...shapes[0]];
  shape[axis] = total;
  return { axis, offsets, shape };
}

/** Split: the normalized axis and the size of each output along it. */
export function splitSizes(n: Node, inShape: number[], split: number[] | undefined): { axis: number; sizes: number[] } {
  const axis = normAxis(n, attrNum(n, "axis", 0), inShape.length);
  const d = inShape[axis];
  const count = n.outputs.length;
  let sizes: number[];
  if (split && split.length) {
    sizes = split;
  } else {
    const parts = attrNum(n, "num_outputs", count);
    if (parts !== count) opFail(n, `num_outputs is ${parts} but the node has ${count} outputs`);
    // Uneven splits: ceil-sized chunks, the last one smaller (ONNX reference semantics).
    const chunk = Math.ceil(d / parts);
    sizes = Array.from({ length: parts }, (_, i) => (i < parts - 1 ? chunk : d - chunk * (parts - 1)));
  }
  if (sizes.length !== count) opFail(n, `split has ${sizes.length} entries but the node has ${count} outputs`);
  if (sizes.some((s) => s < 0) || sizes.reduce((a, b) => a + b, 0) !== d) {
    opFail(n, `cannot split axis ${axis} of size ${d} into [${sizes.join(", ")}]`);
  }
  return { axis, sizes };
}

/** Slice: for every axis, the first source index, the step and the output length. */
export function sliceRanges(
  n: Node, inShape: number[], starts: number[], ends: number[], axes?: number[], steps?: number[],
): { start: number[]; step: number[]; shape: number[] } {
  const r = inShape.length;
  const ax = axes ?? starts.map((_, i) => i);
  if (ends.length !== starts.length || ax.length !== starts.length || (steps && steps.length !== starts.length)) {
    opFail(n, "starts, ends, axes and steps must have the same length");
  }
  const start = inShape.map(() => 0);
  const step = inShape.map(() => 1);
  const shape = [...inShape];
  const seen = new Set<number>();
  ax.forEach((a0, i) => {
    const a = normAxis(n, a0, r);
    if (seen.has(a)) opFail(n, `axis ${a0} appears twice in axes`);
    seen.add(a);
    const d = inShape[a];
    const st = steps ? steps[i] : 1;
    if (st === 0) opFail(n, "a slice step is 0");
    let s = starts[i] < 0 ? starts[i] + d : starts[i];
    let e = ends[i] < 0 ? ends[i] + d : ends[i];
    if (st > 0) {
      s = Math.min(Math.max(s, 0), d);
      e = Math.min(Math.max(e, 0), d);
    } else {
      s = Math.min(Math.max(s, 0), d - 1);
      e = Math.min(Math.max(e, -1), d - 1);
    }
    start[a] = s;
    step[a] = st;
    shape[a] = Math.max(0, Math.ceil((e - s) / st));
  });
  return { start, step, shape };
}

export type PadMode = "constant" | "reflect" | "edge" | "wrap";

/** Pad: the mode and, for every axis, the pad before and after (negative pads crop). */
export function padAmounts(n: Node, inShape: number[], pads: number[], axes?: number[]): { mode: PadMode; before: number[]; after: number[]; shape: number[] } {
  const mode = attrStr(n, "mode", "constant");
  if (!["constant", "reflect", "edge", "wrap"].includes(mode)) opFail(n, `pad mode '${mode}' is not supported (constant, reflect, edge, wrap are)`);
  const r = inShape.length;
  const ax = (axes ?? [...Array(r).keys()]).map((a) => normAxis(n, a, r));
  if (pads.length !== 2 * ax.length) opFail(n, `pads has ${pads.length} entries, expected ${2 * ax.length}`);
  const before = inShape.map(() => 0);
  const after = inShape.map(() => 0);
  ax.forEach((a, i) => {
    before[a] = pads[i];
    after[a] = pads[i + ax.length];
  });
  const shape = inShape.map((d, i) => d + before[i] + after[i]);
  if (shape.some((d) => d < 0)) opFail(n, `pads [${pads.join(", ")}] crop more than the input [${inShape.join("x")}] has`);
  if (mode !== "constant") {
    inShape.forEach((d, i) => {
      if (d === 0 && (before[i] > 0 || after[i] > 0)) opFail(n, `${mode} padding of an empty axis ${i}`);
    });
  }
  return { mode: mode as PadMode, before, after, shape };
}

/** Source index along one axis of size d for padded position i (may be outside [0, d) in constant mode). */
export function padSource(mode: PadMode, i: number, d: number): number {
  if (i >= 0 && i < d) return i;
  switch (mode) {
    case "constant": return -1;
    case "edge": return Math.min(Math.max(i, 0), d - 1);
    case "wrap": return ((i % d) + d) % d;
    case "reflect": {
      if (d === 1) return 0;
      const p = 2 * (d - 1);
      const m = ((i % p) + p) % p;
      return m < d ? m : p - m;
    }
  }
}

/** Shape's [start, end) range over the input's dims, clamped like the spec says. */
export function shapeRange(n: Node, rank: number): [number, number] {
  const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + rank : v, 0), rank);
  return [clamp(attrNum(n, "start", 0)), clamp(attrNum(n, "end", rank))];
}

export function blockSize(n: Node, op: string): number {
  const b = attrNum(n, "blocksize", 0);
  if (!Number.isInteger(b) || b < 1) opFail(n, `${op} needs a positive blocksize, got ${b}`);
  return b;
}

export function depthToSpaceMode(n: Node): "DCR" | "CRD" {
  const m = attrStr(n, "mode", "DCR");
  if (m !== "DCR" && m !== "CRD") opFail(n, `DepthToSpace mode '${m}' is not supported (DCR, CRD are)`);
  return m as "DCR" | "CRD";
}

function rank4(n: Node, s: number[]): number[] {
  if (s.length !== 4) opFail(n, `expects a 4-D NCHW input, got [${s.join("x")}]`);
  return s;
}

/** ConstantOfShape's fill value: a one-element tensor (float32 0 by default). */
export function fillValue(n: Node): Tensor {
  const v = n.attrs.value;
  if (v === undefined) return fromNumbers("float32", [1], [0]);
  if (typeof v !== "object" || Array.isArray(v) || numel(v.shape) !== 1) opFail(n, "value must be a one-element tensor");
  return v as Tensor;
}

/** Range's element count, from constant start, limit and delta. */
export function rangeCount(n: Node, start: number, limit: number, delta: number): number {
  if (delta === 0) opFail(n, "delta is 0");
  return Math.max(Math.ceil((limit - start) / delta), 0);
}

/** Dropout's mask dtype: the data type before opset 10, bool since. */
export const dropoutMaskType = (n: Node, data: DType): DType => (n.opset < 10 ? data : "bool");

function dropoutCheck(n: Node, trainingMode: number[] | null): void {
  if (trainingMode && trainingMode[0]) opFail(n, "training_mode is true; edgec compiles inference graphs only");
}

/** Gather's normalized axis and output shape. */
export function gatherShape(n: Node, data: number[], indices: number[]): { axis: number; shape: number[] } {
  const axis = normAxis(n, attrNum(n, "axis", 0), data.length);
  return { axis, shape: [...data.slice(0, axis), ...indices, ...data.slice(axis + 1)] };
}

function checkIndexType(n: Node, d: DType): void {
  if (d !== "int32" && d !== "int64") opFail(n, `indices must be int32 or int64, got ${d}`);
}

// ---- the ops ----

const ones = (dtype: DType, shape: number[]) => fromNumbers(dtype, shape, new Array<number>(numel(shape)).fill(1));

export const MOVEMENT_OPS: Record<string, OpDef> = {
  /** Made by fusion from Reshape-like ops: the input's memory seen with another shape (attrs.shape). */
  View: {
    infer: (n, [x]) => [same(x, n.attrs.shape as number[], n)],
    eval: (n, [x]) => [withShape(x!, n.attrs.shape as number[])],
  },
  Reshape: {
    constInputs: [1],
    infer(n, [x, s]) {
      const target = constInts(s);
      return target && [same(x, reshapeShape(n, shapeOf(n, x), target), n)];
    },
    eval: (n, [x, s]) => [withShape(x!, reshapeShape(n, x!.shape, toNumbers(s!)))],
  },

  Flatten: {
    infer: (n, [x]) => [same(x, flattenShape(n, shapeOf(n, x)), n)],
    eval: (n, [x]) => [withShape(x!, flattenShape(n, x!.shape))],
  },

  Squeeze: {
    constInputs: [1],
    infer(n, [x, a]) {
      if (a && !a.data) return null;
      return [same(x, squeezeShape(n, shapeOf(n, x), a ? constInts(a)! : undefined), n)];
    },
    eval: (n, [x, a]) => [withShape(x!, squeezeShape(n, x!.shape, a ? toNumbers(a) : undefined))],
  },

  Unsqueeze: {
    constInputs: [1],
    infer(n, [x, a]) {
      if (!a) opFail(n, "needs an axes input");
      const axes = constInts(a);
      return axes && [same(x, unsqueezeShape(n, shapeOf(n, x), axes), n)];
    },
    eval: (n, [x, a]) => [withShape(x!, unsqueezeShape(n, x!.shape, toNumbers(a!)))],
  },

  Transpose: {
    infer(n, [x]) {
      const s = shapeOf(n, x);
      return [same(x, transposePerm(n, s.length).map((p) => s[p]), n)];
    },
    eval(n, [x]) {
      const perm = transposePerm(n, x!.shape.length);
      const st = strides(x!.shape);
      const pst = perm.map((p) => st[p]);
      return [remap(x!, perm.map((p) => x!.shape[p]), (idx) => dot(idx, pst))];
    },
  },

  Concat: {
    infer: (n, ins) => [same(ins[0], concatLayout(n, ins.map((v) => shapeOf(n, v))).shape, n)],
    eval(n, ins) {
      const xs = ins as Tensor[];
      const { axis, offsets, shape } = concatLayout(n, xs.map((t) => t.shape));
      const out = zeros(xs[0].dtype, shape);
      const o = out.data as Elems;
      const ost = strides(shape);
      xs.forEach((t, k) => {
        const d = t.data as Elems;
        forEachIndex(t.shape, (idx, i) => {
          o[dot(idx, ost) + offsets[k] * ost[axis]] = d[i];
        });
      });
      return [out];
    },
  },

  Split: {
    constInputs: [1],
    infer(n, [x, s]) {
      if (s && !s.data) return null;
      const shape = shapeOf(n, x);
      const { axis, sizes } = splitSizes(n, shape, s ? constInts(s)! : undefined);
      return sizes.map((k) => same(x, shape.map((d, i) => (i === axis ? k : d)), n));
    },
    eval(n, [x, s]) {
      const { axis, sizes } = splitSizes(n, x!.shape, s ? toNumbers(s) : undefined);
      const st = strides(x!.shape);
      let off = 0;
      return sizes.map((k) => {
        const base = off;
        off += k;
        return remap(x!, x!.shape.map((d, i) => (i === axis ? k : d)), (idx) => dot(idx, st) + base * st[axis]);
      });
    },
  },

  Slice: {
    constInputs: [1, 2, 3, 4],
    infer(n, [x, s, e, a, st]) {
      const [starts, ends] = [constInts(s), constInts(e)];
      if (!starts || !ends || (a && !a.data) || (st && !st.data)) return null;
      const r = sliceRanges(n, shapeOf(n, x), starts, ends, a ? constInts(a)! : undefined, st ? constInts(st)! : undefined);
      return [same(x, r.shape, n)];
    },
    eval(n, [x, s, e, a, st]) {
      const { start, step, shape } = sliceRanges(n, x!.shape, toNumbers(s!), toNumbers(e!), a && toNumbers(a), st && toNumbers(st));
      const xst = strides(x!.shape);
      return [remap(x!, shape, (idx) => idx.reduce((acc, v, d) => acc + (start[d] + v * step[d]) * xst[d], 0))];
    },
  },

  Gather: {
    infer(n, [x, ind]) {
      const data = shapeOf(n, x);
      checkIndexType(n, ind!.dtype);
      const { axis, shape } = gatherShape(n, data, shapeOf(n, ind, "indices"));
      const bad = constInts(ind)?.find((i) => i < -data[axis] || i >= data[axis]);
      if (bad !== undefined) opFail(n, `index ${bad} is out of range for axis ${axis} of size ${data[axis]}`);
      return [same(x, shape, n)];
    },
    eval(n, [x, ind]) {
      const { axis, shape } = gatherShape(n, x!.shape, ind!.shape);
      const d = x!.shape[axis];
      const idxs = toNumbers(ind!).map((i) => {
        if (i < -d || i >= d) opFail(n, `index ${i} is out of range for axis ${axis} of size ${d}`);
        return i < 0 ? i + d : i;
      });
      const xst = strides(x!.shape);
      const ist = strides(ind!.shape);
      const q = ind!.shape.length;
      return [
        remap(x!, shape, (idx) => {
          const k = idxs[dot(idx.slice(axis, axis + q), ist)];
          return dot(idx.slice(0, axis), xst) + k * xst[axis] + dot(idx.slice(axis + q), xst.slice(axis + 1));
        }),
      ];
    },
  },

  Expand: {
    constInputs: [1],
    infer(n, [x, s]) {
      const shape = constInts(s);
      return shape && [same(x, broadcastShapes(n, [shapeOf(n, x), shape]), n)];
    },
    eval(n, [x, s]) {
      const shape = broadcastShapes(n, [x!.shape, toNumbers(s!)]);
      const pad = shape.length - x!.shape.length;
      const xst = strides(x!.shape);
      return [remap(x!, shape, (idx) => x!.shape.reduce((acc, d, i) => acc + (d === 1 ? 0 : idx[i + pad] * xst[i]), 0))];
    },
  },

  Tile: {
    constInputs: [1],
    infer(n, [x, r]) {
      const reps = constInts(r);
      if (!reps) return null;
      const s = shapeOf(n, x);
      if (reps.length !== s.length || reps.some((k) => k < 0)) opFail(n, `repeats [${reps.join(", ")}] do not match input rank ${s.length}`);
      return [same(x, s.map((d, i) => d * reps[i]), n)];
    },
    eval(n, [x, r]) {
      const reps = toNumbers(r!);
      const xst = strides(x!.shape);
      return [remap(x!, x!.shape.map((d, i) => d * reps[i]), (idx) => idx.reduce((acc, v, i) => acc + (v % x!.shape[i]) * xst[i], 0))];
    },
  },

  Pad: {
    constInputs: [1, 3],
    infer(n, [x, p, , a]) {
      const pads = constInts(p);
      if (!pads || (a && !a.data)) return null;
      return [same(x, padAmounts(n, shapeOf(n, x), pads, a ? constInts(a)! : undefined).shape, n)];
    },
    eval(n, [x, p, c, a]) {
      const { mode, before, shape } = padAmounts(n, x!.shape, toNumbers(p!), a && toNumbers(a));
      const xst = strides(x!.shape);
      const fill = c && c.data.length ? (c.data as Elems)[0] : undefined;
      return [
        remap(x!, shape, (idx) => {
          let off = 0;
          for (let d = 0; d < idx.length; d++) {
            const s = padSource(mode, idx[d] - before[d], x!.shape[d]);
            if (s < 0) return -1;
            off += s * xst[d];
          }
          return off;
        }, fill),
      ];
    },
  },

  DepthToSpace: {
    infer(n, [x]) {
      const [N, C, H, W] = rank4(n, shapeOf(n, x));
      const b = blockSize(n, "DepthToSpace");
      depthToSpaceMode(n);
      if (C % (b * b)) opFail(n, `channels ${C} are not divisible by blocksize² ${b * b}`);
      return [same(x, [N, C / (b * b), H * b, W * b], n)];
    },
    eval(n, [x]) {
      const [N, C, H, W] = x!.shape;
      const b = blockSize(n, "DepthToSpace");
      const crd = depthToSpaceMode(n) === "CRD";
      const c2 = C / (b * b);
      const xst = strides(x!.shape);
      return [
        remap(x!, [N, c2, H * b, W * b], ([nn, c, y, z]) => {
          const [h, i, w, j] = [Math.floor(y / b), y % b, Math.floor(z / b), z % b];
          const ch = crd ? c * b * b + i * b + j : (i * b + j) * c2 + c;
          return dot([nn, ch, h, w], xst);
        }),
      ];
    },
  },

  SpaceToDepth: {
    infer(n, [x]) {
      const [N, C, H, W] = rank4(n, shapeOf(n, x));
      const b = blockSize(n, "SpaceToDepth");
      if (H % b || W % b) opFail(n, `spatial size ${H}x${W} is not divisible by blocksize ${b}`);
      return [same(x, [N, C * b * b, H / b, W / b], n)];
    },
    eval(n, [x]) {
      const [N, C, H, W] = x!.shape;
      const b = blockSize(n, "SpaceToDepth");
      const xst = strides(x!.shape);
      return [
        remap(x!, [N, C * b * b, H / b, W / b], ([nn, ch, h, w]) => {
          const [blk, c] = [Math.floor(ch / C), ch % C];
          return dot([nn, c, h * b + Math.floor(blk / b), w * b + (blk % b)], xst);
        }),
      ];
    },
  },

  Shape: {
    shapeOnly: true,
    infer(n, [x]) {
      const [s, e] = shapeRange(n, shapeOf(n, x).length);
      return [{ dtype: "int64", shape: [Math.max(e - s, 0)] }];
    },
    eval(n, [x]) {
      const [s, e] = shapeRange(n, x!.shape.length);
      const dims = x!.shape.slice(s, Math.max(s, e));
      return [fromNumbers("int64", [dims.length], dims)];
    },
  },

  Size: {
    shapeOnly: true,
    infer: () => [{ dtype: "int64", shape: [] }],
    eval: (_n, [x]) => [fromNumbers("int64", [], [numel(x!.shape)])],
  },

  ConstantOfShape: {
    constInputs: [0],
    infer(n, [s]) {
      const shape = constInts(s);
      if (!shape) return null;
      if (shape.some((d) => d < 0)) opFail(n, `shape [${shape.join(", ")}] has a negative dim`);
      return [{ dtype: fillValue(n).dtype, shape }];
    },
    eval(n, [s]) {
      const v = fillValue(n);
      return [remap(v, toNumbers(s!), () => 0)];
    },
  },

  Range: {
    constInputs: [0, 1, 2],
    infer(n, [s, l, d]) {
      const [start, limit, delta] = [constInts(s), constInts(l), constInts(d)];
      if (!start || !limit || !delta) return null;
      return [{ dtype: s!.dtype, shape: [rangeCount(n, start[0], limit[0], delta[0])] }];
    },
    eval(n, [s, l, d]) {
      const [start, limit, delta] = [s!, l!, d!].map((t) => toNumbers(t)[0]);
      const count = rangeCount(n, start, limit, delta);
      return [fromNumbers(s!.dtype, [count], Array.from({ length: count }, (_, i) => start + i * delta))];
    },
  },

  Dropout: {
    infer(n, [x, , t]) {
      dropoutCheck(n, constInts(t));
      const s = shapeOf(n, x);
      return [same(x, s, n), { dtype: dropoutMaskType(n, x!.dtype), shape: s }];
    },
    eval(n, [x, , t]) {
      dropoutCheck(n, t ? toNumbers(t) : null);
      return [withShape(x!, x!.shape), ones(dropoutMaskType(n, x!.dtype), x!.shape)];
    },
  },
};

/** Made by fusion from a Concat whose inputs are written straight into their slices of its output: the same values, no copy. */
MOVEMENT_OPS.ConcatView = MOVEMENT_OPS.Concat;
