import { readFileSync } from "node:fs";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { runArtifact } from "../../src/driver/run.js";
import { compare } from "../../src/driver/verify.js";
import { loadTarget } from "../../src/target/load.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";

/**
 * The vectorized lowerings (packed GEMM convolution, depthwise convolution, Gemm, MatMul) against
 * onnxruntime, on shapes chosen to hit every edge of the tiling: row counts that leave a tail
 * panel, column counts that leave a ragged tile, strides, padding, dilation, batch. Each case must
 * also take the vector path where one exists (the C holds vector loads), on the host and on rpi4
 * (NEON), with one thread and with two.
 */
const generator = (seed: number) => (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const rand = generator(7);
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

interface Case {
  name: string;
  op: string;
  x: number[];
  /** second operand: a constant initializer, or (runtime) a second input; none for a pool */
  w?: number[];
  runtime?: boolean;
  bias?: number[];
  attrs?: ReturnType<typeof attr.i>[];
  /** whether the convolution packs from a padded, phase-split copy (scratch_shared): on rpi4 (4 lanes), or with vectors of this many lanes */
  phases?: boolean | ((lanes: number) => boolean);
  /** targets on which the product runs rows-outer with its depth in blocks (accumulators carried between blocks) */
  blocked?: string[];
  /** targets on which the convolution runs transposed (pixels as rows, channels as columns: weights packed as B) */
  transposed?: string[];
  /** whether the convolution runs by Winograd's F(2×2, 3×3) (transformed weights packed at compile time), on both targets */
  winograd?: boolean;
  /** whether, with vectors of this many lanes, a vector of outputs that crosses a row of the phase grid is stored as runs of its lanes (masked stores) */
  masked?: (lanes: number) => boolean;
  /** whether, with vectors of this many lanes, the product's epilogue stores from its registers, with no stack tile */
  registers?: (lanes: number) => boolean;
  /** whether, with vectors of this many lanes, im2col reads a vector of taps that crosses into the next output row as two vector loads, each stored under a mask */
  crosses?: (lanes: number) => boolean;
  /** whether, with vectors of this many lanes, a window op's taps are slid out of aligned vectors rather than loaded one by one */
  slides?: (lanes: number) => boolean;
  /** whether, with vectors of this many lanes, a window op spreads each channel onto its grid and packs the grid's outputs into rows (AVX-512 only) */
  packs?: (lanes: number) => boolean;
  /** whether a window op sums its taps into two accumulators in turn (a depthwise window of 8 taps or more on its padded copy) */
  pairs?: boolean;
  /** whether a max pool folds its window rows into scratch rows (zeroed past the map's width), then takes the columns from them */
  separable?: boolean;
  /** whether, with vectors of this many lanes, a same-size convolution packs its taps from the input as it is, in vectors (no padded copy) */
  flat?: (lanes: number) => boolean;
  /** whether the ragged last tile multiplies fewer vectors of columns than the others (it has fewer accumulators) */
  narrowLast?: boolean;
  /** whether a transposed product packs its panels by runs of output rows, a stride-2 vector load from the input per tap (else through a table of offsets) */
  runs?: boolean;
  /** a generator of its own for its data, leaving the shared one's sequence, and so the other cases' data, as it was */
  seed?: number;
}

const CASES: Case[] = [
  { name: "1x1 conv, ragged tile, tail panel", op: "Conv", x: [1, 13, 7, 9], w: [19, 13, 1, 1], bias: [19] },
  { name: "3x3 conv, pads, stride 2", op: "Conv", x: [2, 5, 11, 10], w: [10, 5, 3, 3], attrs: [attr.ints("pads", [1, 0, 2, 1]), attr.ints("strides", [2, 2])] },
  // Same-size outputs read the input as it is (no padded copy): the taps past a row's ends and the
  // rows above and below the map are zeroed in the tile, the first and last channels' are gathered.
  // With 16 lanes the first has too few taps for either (im2col).
  { name: "3x3 conv, stride 1, same pads, batch 2 (read flat)", phases: () => false, flat: (lanes) => lanes <= 4, op: "Conv", x: [2, 5, 11, 10], w: [7, 5, 3, 3], bias: [7], attrs: [attr.ints("pads", [1, 1, 1, 1])] },
  { name: "3x3 conv, stride 1, asymmetric pads, ragged last tile", phases: true, op: "Conv", x: [1, 3, 9, 13], w: [11, 3, 3, 3], attrs: [attr.ints("pads", [0, 2, 2, 1])], masked: (lanes) => lanes <= 4 },
  { name: "5x5 conv, pads 2 (read flat, two columns zeroed at each end of a row)", phases: () => false, flat: () => true, op: "Conv", x: [1, 4, 12, 13], w: [6, 4, 5, 5], attrs: [attr.ints("pads", [2, 2, 2, 2])] },
  // 14 grid columns: narrower than a 16-lane vector, which goes column by column.
  { name: "7x7 conv, stride 2, pads 3 (four phases)", phases: true, op: "Conv", x: [1, 3, 23, 21], w: [9, 3, 7, 7], bias: [9], attrs: [attr.ints("pads", [3, 3, 3, 3]), attr.ints("strides", [2, 2])], masked: (lanes) => lanes <= 14 },
  // 18 output columns: with 16 lanes, most vectors of taps span two output rows. On rpi4 the taps make it a phase-grid product.
  { name: "3x3 conv, stride 2, asymmetric pads, 3 channels (im2col vectors across output rows)", op: "Conv", x: [1, 3, 34, 37], w: [24, 3, 3, 3], bias: [24], attrs: [attr.ints("pads", [1, 0, 0, 1]), attr.ints("strides", [2, 2])], crosses: (lanes) => lanes === 16 },
  { name: "1x1 conv, stride 2 (one phase of four used)", phases: true, op: "Conv", x: [2, 16, 9, 10], w: [5, 16, 1, 1], attrs: [attr.ints("strides", [2, 2])] },
  { name: "3x3 conv, strides 2x1, dilation 2x1, asymmetric pads", phases: true, op: "Conv", x: [1, 8, 15, 12], w: [6, 8, 3, 3], attrs: [attr.ints("pads", [2, 1, 1, 0]), attr.ints("strides", [2, 1]), attr.ints("dilations", [2, 1])] },
  // Few column tiles and many rows: rows outer, the depth (360) in two blocks, 9 panels in groups of 2 (the last short) and a tail.
  { name: "3x3 conv on a small map, many rows, deep (rows outer, depth blocks)", op: "Conv", x: [1, 40, 6, 14], w: [75, 40, 3, 3], bias: [75], attrs: [attr.ints("pads", [1, 1, 1, 1])], blocked: ["host"], transposed: [] },
  // 17 output channels would leave a transposed product's tiles emptier than the 4×3 map does the plain one's.
  { name: "3x3 conv on a tiny map, many rows, deep (rows outer on 4 lanes too)", op: "Conv", x: [1, 40, 3, 4], w: [17, 40, 3, 3], attrs: [attr.ints("pads", [1, 1, 1, 1])], blocked: ["host", "rpi4"], transposed: [] },
  // Small maps, many channels and taps: pixels as rows, a tail panel of one pixel, packed flat (a
  // same-size output), from a padded copy, or from the input itself.
  { name: "3x3 conv on a 7x7 map, many channels (transposed, read flat)", flat: () => true, winograd: false, op: "Conv", x: [1, 64, 7, 7], w: [128, 64, 3, 3], bias: [128], attrs: [attr.ints("pads", [1, 1, 1, 1])], transposed: ["host", "rpi4"] },
  { name: "1x1 conv on a 7x7 map (transposed, the input read as it is)", op: "Conv", x: [1, 256, 7, 7], w: [256, 256, 1, 1], transposed: ["host", "rpi4"] },
  // 200 channels: whole tiles scattered from the registers, and on host a ragged last tile through the stack.
  { name: "1x1 conv on a 3x3 map, 200 channels (transposed, a ragged tile of channels)", op: "Conv", x: [1, 96, 3, 3], w: [200, 96, 1, 1], bias: [200], transposed: ["host", "rpi4"] },
  { name: "3x3 conv, stride 2, pads 1 on a 15x15 map (transposed)", op: "Conv", x: [1, 64, 15, 15], w: [128, 64, 3, 3], bias: [128], attrs: [attr.ints("pads", [1, 1, 1, 1]), attr.ints("strides", [2, 2])], transposed: ["host", "rpi4"] },
  { name: "3x3 conv, dilation 2, pads 2 on a 9x9 map (transposed)", op: "Conv", x: [1, 64, 9, 9], w: [128, 64, 3, 3], attrs: [attr.ints("pads", [2, 2, 2, 2]), attr.ints("dilations", [2, 2])], transposed: ["host", "rpi4"] },
  // Each output row's run of a panel's pixels is a stride-2 vector load per tap: rows of 5 pixels, so panels start mid-row.
  { name: "1x1 conv, stride 2 on a 10x10 map (transposed, the input read as it is, runs of stride 2)", runs: true, seed: 11, op: "Conv", x: [1, 256, 10, 10], w: [512, 256, 1, 1], attrs: [attr.ints("strides", [2, 2])], transposed: ["host", "rpi4"] },
  { name: "3x3 conv, stride 3 on a 16x16 map (transposed, gathered element by element)", runs: false, seed: 12, op: "Conv", x: [1, 64, 16, 16], w: [96, 64, 3, 3], attrs: [attr.ints("pads", [1, 1, 1, 1]), attr.ints("strides", [3, 3])], transposed: ["host", "rpi4"] },
  { name: "3x3 conv, no padding, 7x9 map (transposed, the input read as it is)", op: "Conv", x: [1, 64, 7, 9], w: [64, 64, 3, 3], transposed: ["host", "rpi4"] },
  // 3×3 stride 1 with 48 or more input channels and 32 or more 2×2 blocks: Winograd.
  { name: "3x3 conv, Winograd, 13x13 map (the last blocks half outside), bias, a tail panel", winograd: true, op: "Conv", x: [1, 48, 13, 13], w: [44, 48, 3, 3], bias: [44], attrs: [attr.ints("pads", [1, 1, 1, 1])] },
  { name: "3x3 conv, Winograd, no padding, a ragged last tile", winograd: true, op: "Conv", x: [1, 48, 18, 12], w: [32, 48, 3, 3] },
  // 7 tiles of 32 blocks on 2 threads (AVX-512 on 2 cores), 27 of 8 on 4 (rpi4): the tiles left over are split by output channels, the tail panel's in the last share.
  { name: "3x3 conv, Winograd, 28x28 map, tiles that do not divide among the threads, a tail panel", winograd: true, op: "Conv", x: [1, 48, 28, 28], w: [36, 48, 3, 3], bias: [36], attrs: [attr.ints("pads", [1, 1, 1, 1])] },
  { name: "3x3 conv, Winograd, asymmetric pads", winograd: true, op: "Conv", x: [1, 56, 11, 14], w: [40, 56, 3, 3], bias: [40], attrs: [attr.ints("pads", [0, 2, 1, 1])] },
  { name: "3x3 conv, 32 input channels (not Winograd: the transforms would cost what it saves)", winograd: false, op: "Conv", x: [1, 32, 14, 14], w: [64, 32, 3, 3], attrs: [attr.ints("pads", [1, 1, 1, 1])] },
  { name: "5x5 conv on a narrow map (general lowering: too many dropped columns)", phases: false, op: "Conv", x: [1, 2, 8, 6], w: [4, 2, 5, 5], attrs: [attr.ints("pads", [2, 2, 2, 2])] },
  // A first layer: few channels, so im2col; vectors of columns inside one row and inside the input
  // are read with one (strided) vector load, the others gathered.
  { name: "first-layer 3x3 conv, stride 2, pads 1, rows that straddle vectors", phases: (lanes) => lanes <= 4, op: "Conv", x: [2, 3, 20, 37], w: [8, 3, 3, 3], bias: [8], attrs: [attr.ints("pads", [1, 1, 1, 1]), attr.ints("strides", [2, 2])] },
  // Rows 67 wide, at least 4 vectors of up to 16 lanes: the phase grid despite the few taps (27;
  // the rows 19 wide above take it only where 27 taps are 4 vectors or more).
  { name: "first-layer 3x3 conv, stride 2, pads 1, wide rows (phase grid)", phases: () => true, op: "Conv", x: [1, 3, 7, 134], w: [10, 3, 3, 3], bias: [10], attrs: [attr.ints("pads", [1, 1, 1, 1]), attr.ints("strides", [2, 2])] },
  { name: "first-layer 3x3 conv, stride 1, pads 1", op: "Conv", x: [1, 3, 9, 35], w: [6, 3, 3, 3], attrs: [attr.ints("pads", [1, 1, 1, 1])] },
  { name: "one-channel 3x3 conv, stride 2, no padding", op: "Conv", x: [1, 1, 12, 30], w: [4, 1, 3, 3], attrs: [attr.ints("strides", [2, 2])] },
  { name: "conv, dilation, no padding", op: "Conv", x: [1, 3, 12, 12], w: [9, 3, 3, 2], bias: [9], attrs: [attr.ints("dilations", [2, 3])] },
  { name: "depthwise 3x3 stride 1", op: "Conv", x: [1, 6, 20, 37], w: [6, 1, 3, 3], bias: [6], attrs: [attr.i("group", 6), attr.ints("pads", [1, 1, 1, 1])] },
  { name: "depthwise 3x3 stride 1, narrow map (half and quarter vectors)", op: "Conv", x: [1, 5, 9, 14], w: [5, 1, 3, 3], bias: [5], attrs: [attr.i("group", 5), attr.ints("pads", [1, 1, 1, 1])] },
  { name: "depthwise 5x5 stride 1 on a 7x7 map (padded copy, vectors across rows)", slides: (lanes) => lanes === 16, pairs: true, op: "Conv", x: [1, 6, 7, 7], w: [6, 1, 5, 5], bias: [6], attrs: [attr.i("group", 6), attr.ints("pads", [2, 2, 2, 2])] },
  // Rows 5 wide on a grid 7 wide: each vector of outputs packs the lanes of 2–3 rows (dscnn_kws's layers).
  { name: "depthwise 3x3 stride 1 on a 25x5 map (spread onto the grid, packed out of it)", packs: (lanes) => lanes === 16, pairs: true, op: "Conv", x: [1, 16, 25, 5], w: [16, 1, 3, 3], bias: [16], attrs: [attr.i("group", 16), attr.ints("pads", [1, 1, 1, 1])] },
  { name: "depthwise 3x3 stride 1, dilation 2, asymmetric pads on a 10x9 map", packs: (lanes) => lanes === 16, op: "Conv", x: [1, 3, 10, 9], w: [3, 1, 3, 3], attrs: [attr.i("group", 3), attr.ints("pads", [2, 1, 1, 2]), attr.ints("dilations", [2, 2])] },
  // Padding reads as −∞: the spread vectors' other lanes take it.
  { name: "max pool 3x3 stride 1, pads 1 on a 9x7 map", packs: (lanes) => lanes === 16, pairs: false, op: "MaxPool", x: [1, 5, 9, 7], attrs: [attr.ints("kernel_shape", [3, 3]), attr.ints("pads", [1, 1, 1, 1])] },
  { name: "max pool 2x2 stride 2 on a 9x8 map (stride phases: not packed)", packs: () => false, separable: false, op: "MaxPool", x: [1, 3, 9, 8], attrs: [attr.ints("kernel_shape", [2, 2]), attr.ints("strides", [2, 2])] },
  // Maps too large for a padded copy: rows folded, then columns, with no copy; the last window hangs off the map.
  { name: "max pool 3x3 stride 2, pads 1, ceil mode, on two 75x77 maps (separable)", separable: true, seed: 1, op: "MaxPool", x: [2, 3, 75, 77], attrs: [attr.ints("kernel_shape", [3, 3]), attr.ints("strides", [2, 2]), attr.ints("pads", [1, 1, 1, 1]), attr.i("ceil_mode", 1)] },
  { name: "max pool 5x5 stride 1, pads 2 on a 70x90 map (separable)", separable: true, seed: 2, op: "MaxPool", x: [1, 5, 70, 90], attrs: [attr.ints("kernel_shape", [5, 5]), attr.ints("pads", [2, 2, 2, 2])] },
  { name: "depthwise 5x5 stride 2", op: "Conv", x: [2, 4, 17, 18], w: [4, 1, 5, 5], attrs: [attr.i("group", 4), attr.ints("pads", [2, 2, 2, 2]), attr.ints("strides", [2, 2])] },
  { name: "depthwise 3x3 stride 2 on a 14x14 map, 12 channels (stride phases, 4 channels copied at a time)", op: "Conv", x: [1, 12, 14, 14], w: [12, 1, 3, 3], bias: [12], attrs: [attr.i("group", 12), attr.ints("pads", [1, 1, 1, 1]), attr.ints("strides", [2, 2])] },
  { name: "depthwise 3x3 stride 2, dilation 2, asymmetric pads, 7 channels (one copied at a time)", op: "Conv", x: [1, 7, 15, 13], w: [7, 1, 3, 3], attrs: [attr.i("group", 7), attr.ints("pads", [2, 1, 1, 2]), attr.ints("strides", [2, 2]), attr.ints("dilations", [2, 2])] },
  { name: "MatMul, constant B, ragged columns", op: "MatMul", x: [3, 7, 21], w: [21, 45] },
  { name: "MatMul, batched runtime B", op: "MatMul", x: [2, 3, 9, 16], w: [3, 16, 11], runtime: true },
  { name: "Gemm, transB, bias row", op: "Gemm", x: [5, 33], w: [70, 33], bias: [70], attrs: [attr.i("transB", 1), attr.f("alpha", 0.5)] },
  // 196 pixels: six whole tiles of 2 vectors and 4 columns, which take one vector (on rpi4, 24 tiles of 2 and 4 columns).
  { name: "1x1 conv on a 14x14 map (a last tile of one vector)", narrowLast: true, seed: 5, op: "Conv", x: [1, 24, 14, 14], w: [8, 24, 1, 1], bias: [8] },
  // Outputs narrower than the input: the phase grid.
  { name: "3x3 conv, stride 1, pads that narrow the map (padded copy, dropped grid columns)", phases: true, seed: 3, op: "Conv", x: [2, 5, 11, 11], w: [7, 5, 3, 3], bias: [7], attrs: [attr.ints("pads", [1, 1, 1, 0])] },
  { name: "3x3 conv on a 7x8 map to 7x7, many channels (transposed, padded copy)", seed: 6, winograd: false, op: "Conv", x: [1, 64, 7, 8], w: [128, 64, 3, 3], bias: [128], attrs: [attr.ints("pads", [1, 1, 1, 0])], transposed: ["host", "rpi4"] },
  // A grid of 17 columns, 13 of them outputs: with 16 lanes, the vector from a row's last (dropped)
  // column holds all 13 outputs of the next row and 2 of its dropped columns.
  { name: "5x5 conv, pads 2 and 1, vectors that span a grid row", phases: true, seed: 4, op: "Conv", x: [1, 4, 12, 14], w: [6, 4, 5, 5], attrs: [attr.ints("pads", [2, 2, 2, 1])], masked: () => true, registers: () => true },
];

function model(c: Case, rand: (n: number) => Float32Array) {
  const ins = [valueInfo("x", T.FLOAT, c.x), ...(c.runtime ? [valueInfo("w", T.FLOAT, c.w)] : [])];
  const inits = [
    ...(c.runtime || !c.w ? [] : [tensorProto("w", T.FLOAT, c.w, { floatData: Array.from(rand(numel(c.w))) })]),
    ...(c.bias ? [tensorProto("b", T.FLOAT, c.bias, { floatData: Array.from(rand(numel(c.bias))) })] : []),
  ];
  return modelBytes({
    inputs: ins,
    initializers: inits,
    nodes: [node(c.op, ["x", ...(c.w ? ["w"] : []), ...(c.bias ? ["b"] : [])], ["y"], c.attrs ?? [])],
    outputs: [valueInfo("y", T.FLOAT)],
  });
}

const dataOf = (c: Case) => (c.seed === undefined ? rand : generator(c.seed));

const work = tempDir("edgec-dense-");
afterAll(() => work.cleanup());

/** A loop split between threads: a function of a range of its iterations (with threads), or one marked where a target has none. */
const PARALLEL_LOOP = /\bEDGEC_PARALLEL_RUN\(\d+|^\s+EDGEC_PARALLEL_FOR$/gm;
const splits = (source: string) => (source.match(PARALLEL_LOOP) ?? []).length > 0;

/** The target with every parallel loop split between threads, however small, so two threads run these small cases' parallel code. */
const threaded = (name: string) => ({ ...loadTarget(name), parallelMinWork: 0 });

describe.each(["host", "rpi4"])("vectorized dense lowerings on %s", (targetName) => {
  it.concurrent.for(CASES)("$name", async (c, { expect: ex }) => {
    const rand = dataOf(c);
    const file = work.write(`${targetName}-${c.name.replace(/\W+/g, "_")}.onnx`, model(c, rand));
    const feeds: Record<string, Float32Array> = { x: rand(numel(c.x)), ...(c.runtime ? { w: rand(numel(c.w!)) } : {}) };
    const session = await ort.InferenceSession.create(file);
    const ref = (await session.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor("float32", v, k === "x" ? c.x : c.w!)]))))["y"];
    const dir = join(work.dir, `${targetName}-${c.name.replace(/\W+/g, "_")}`);
    await buildArtifact(file, dir, { target: threaded(targetName) });
    const source = readFileSync(join(dir, "model.c"), "utf8");
    ex(splits(source), "splits a loop between threads").toBe(true);
    for (const [, n] of source.matchAll(/\(edgec_tid \* (\d+)\)/g)) ex(+n! % 16, `a thread's slice of scratch (${n} floats) is whole cache lines`).toBe(0);
    ex(/edgec_vload\d+\(\w+ \+ /.test(source)).toBe(true);
    if (typeof c.phases === "function") ex(source.includes("scratch_shared"), "packs from the padded copy").toBe(c.phases(loadTarget(targetName).vectorBytes / 4));
    else if (targetName === "rpi4" && c.phases !== undefined) ex(source.includes("scratch_shared"), "packs from the padded copy").toBe(c.phases);
    if (c.blocked) ex(/int32_t carry\d+ = \(edgec_tid \* \d+\);/.test(source), "carries accumulators between depth blocks").toBe(c.blocked.includes(targetName));
    // A ragged tile's last vector is masked too, with literal bounds; a grid row's run has computed ones.
    if (c.masked) ex(/edgec_vstore\d+m\(\w+, (?!.*, \d+, \d+\);$)/m.test(source), "stores runs of a vector's lanes").toBe(c.masked(loadTarget(targetName).vectorBytes / 4));
    if (c.registers) ex(/\bfloat tile\d+\[/.test(source), "stores through a stack tile").toBe(!c.registers(loadTarget(targetName).vectorBytes / 4));
    if (c.crosses) ex(/^\s+edgec_vstore\d+m\(scratch_\w+, .*, edgec_vload\d+s2\(.*\), \(\d+ - \w+\), \d+\);$/m.test(source), "reads taps across output rows by vectors").toBe(c.crosses(loadTarget(targetName).vectorBytes / 4));
    if (c.slides) ex(/__builtin_shufflevector\(run\d+, run\d+, /.test(source), "slides its taps out of aligned vectors").toBe(c.slides(loadTarget(targetName).vectorBytes / 4));
    if (c.packs) {
      const packs = c.packs(loadTarget(targetName).vectorBytes / 4) && targetName === "host";
      ex(/^\s+edgec_vstore\d+\(scratch_\w+ \+ .*, edgec_vspread\d+\(/m.test(source), "spreads each channel onto its grid").toBe(packs);
      ex(/^\s+edgec_vpack\d+\(/m.test(source), "packs the grid's outputs into rows").toBe(packs);
    }
    if (c.pairs !== undefined) ex(/\bacc\d+ = \(acc\d+ \+ acc\d+\);/.test(source), "sums its taps into two accumulators").toBe(c.pairs);
    if (c.separable !== undefined) ex(/^\s+edgec_vstore\d+\(scratch_k\d+ \+ .*, edgec_splat\d+\(0\.0f\)\);$/m.test(source), "folds its window rows into scratch").toBe(c.separable);
    if (c.flat) ex(/edgec_vload\d+\(in_x \+ /.test(source), "packs its taps from the input in vectors").toBe(c.flat(loadTarget(targetName).vectorBytes / 4));
    if (c.narrowLast !== undefined) {
      const count = (v: number) => [...source.matchAll(new RegExp(`edgec_f32x\\d+ acc\\d+_${v}\\d* = `, "g"))].length;
      ex(count(1) < count(0), "the last tile has fewer accumulators").toBe(c.narrowLast);
    }
    if (c.runs !== undefined) ex(/int32_t rf\d+ = /.test(source) && /edgec_vload\d+s2\(in_x \+ /.test(source), "packs its panels by runs of output rows").toBe(c.runs);
    if (c.winograd !== undefined) ex(/\bp_\w*_winograd\b/.test(source), "runs by Winograd's transform").toBe(c.winograd);
    if (c.transposed) ex(/\bp_\w*_packed\b/.test(source) && !/\bp_\w*_rows\b/.test(source), "runs transposed").toBe(c.transposed.includes(targetName));
    if (c.transposed) ex(/^\s+edgec_vscatter\d+\(/m.test(source), "scatters a transposed product's whole tiles from its registers").toBe(c.transposed.includes(targetName));
    const inputs = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, { dtype: "float32" as const, shape: k === "x" ? c.x : c.w!, data: v }]));
    for (const threads of [1, 2]) {
      const { outputs } = await runArtifact(dir, inputs, 1, { threads });
      const r = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
      ex(r.pass, `${c.name} with ${threads} threads: max abs error ${r.maxAbs}`).toBe(true);
    }
  });
});

describe("GPU products tiled through local memory, on the opencl target (PoCL)", () => {
  // Every case but the depthwise and pooling ones is a product large enough to tile (8×8 work-groups here).
  it.for(CASES)("$name: the tiled kernels and their untiled forms both match onnxruntime", async (c, { expect: ex }) => {
    const rand = dataOf(c);
    const file = work.write(`opencl-${c.name.replace(/\W+/g, "_")}.onnx`, model(c, rand));
    const feeds: Record<string, Float32Array> = { x: rand(numel(c.x)), ...(c.runtime ? { w: rand(numel(c.w!)) } : {}) };
    const session = await ort.InferenceSession.create(file);
    const ref = (await session.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor("float32", v, k === "x" ? c.x : c.w!)]))))["y"];
    const dir = join(work.dir, `opencl-${c.name.replace(/\W+/g, "_")}`);
    await buildArtifact(file, dir, { target: loadTarget("opencl") });
    const tiled = !!c.w && !c.attrs?.some((a) => a.name === "group");
    const cl = readFileSync(join(dir, "kernels.cl"), "utf8");
    ex(/__local float \w+\[64\];/.test(cl) && cl.includes("barrier(CLK_LOCAL_MEM_FENCE);"), "kernels.cl tiles through local memory").toBe(tiled);
    ex(/__kernel void \w+_untiled\(/.test(cl), "kernels.cl has the untiled form too").toBe(tiled);
    const inputs = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, { dtype: "float32" as const, shape: k === "x" ? c.x : c.w!, data: v }]));
    // PoCL's local memory is the CPU's own (CL_GLOBAL): untiled unless EDGEC_OPENCL_TILED says otherwise.
    for (const [setting, variant] of [[undefined, "untiled"], ["on", "tiled in local memory"], ["off", "untiled"]] as const) {
      if (setting) process.env.EDGEC_OPENCL_TILED = setting;
      try {
        const { outputs, device } = await runArtifact(dir, inputs, 2);
        if (tiled) ex(device).toMatch(new RegExp(`, products ${variant}$`));
        const r = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
        ex(r.pass, `${c.name}, ${variant}: max abs error ${r.maxAbs}`).toBe(true);
      } finally {
        delete process.env.EDGEC_OPENCL_TILED;
      }
    }
  });
});

it("targets resolve 0 (host) to this machine's cores and its compiler's vector width", () => {
  const host = loadTarget("host");
  expect(host.cores).toBeGreaterThan(0);
  expect([16, 32, 64]).toContain(host.vectorBytes);
  expect(loadTarget("rpi4").vectorBytes).toBe(16);
});

describe("a padded depthwise window with a residual epilogue", () => {
  // d = depthwise 5x5 (7x7 map: padded copy, vectors across rows) + a, where a (a 1x1 Conv's result)
  // dies at the Add: its memory may become d's, so no output may be computed twice from it.
  for (const t of ["host", "rpi4"]) {
    it(`matches onnxruntime on ${t}`, async () => {
      const X = [1, 6, 7, 7];
      const file = work.write(`residual-${t}.onnx`, modelBytes({
        inputs: [valueInfo("x", T.FLOAT, X)],
        initializers: [tensorProto("wd", T.FLOAT, [6, 1, 5, 5], { floatData: Array.from(rand(150)) }), tensorProto("wp", T.FLOAT, [6, 6, 1, 1], { floatData: Array.from(rand(36)) })],
        nodes: [
          node("Conv", ["x", "wp"], ["a"]),
          node("Conv", ["x", "wd"], ["d"], [attr.i("group", 6), attr.ints("pads", [2, 2, 2, 2])]),
          node("Add", ["d", "a"], ["y"]),
        ],
        outputs: [valueInfo("y", T.FLOAT)],
      }));
      const x = rand(numel(X));
      const ref = (await (await ort.InferenceSession.create(file)).run({ x: new ort.Tensor("float32", x, X) })).y;
      const dir = join(work.dir, `residual-${t}`);
      await buildArtifact(file, dir, { target: threaded(t) });
      for (const threads of [1, 2]) {
        const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: X, data: x } }, 1, { threads });
        const r = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
        expect(r.pass, `${threads} threads: max abs error ${r.maxAbs}`).toBe(true);
      }
    });
  }
});

describe("products whose taps or epilogue do not lie in memory row after row", () => {
  // Each checked under the sanitizers: reading a row past the buffer is the failure.
  const sanitized = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"];
  const check = async (name: string, X: number[], bytes: Uint8Array) => {
    const file = work.write(`${name}.onnx`, bytes);
    const x = rand(numel(X));
    const ref = (await (await ort.InferenceSession.create(file)).run({ x: new ort.Tensor("float32", x, X) })).y;
    const dir = join(work.dir, name);
    await buildArtifact(file, dir, { target: threaded("host"), extraCflags: sanitized });
    for (const threads of [1, 2]) {
      const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: X, data: x } }, 1, { threads });
      const r = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
      expect(r.pass, `${name}, ${threads} threads: max abs error ${r.maxAbs}`).toBe(true);
    }
  };

  it("an input flipped upside down by an inlined Slice is gathered, not read across rows", async () => {
    const X = [1, 3, 34, 37];
    await check("flipped", X, modelBytes({
      inputs: [valueInfo("x", T.FLOAT, X)],
      initializers: [
        tensorProto("w", T.FLOAT, [24, 3, 3, 3], { floatData: Array.from(rand(648)) }),
        ...[["st", [-1]], ["en", [-(2 ** 31)]], ["ax", [2]], ["sp", [-1]]].map(([n, v]) => tensorProto(n as string, T.INT64, [1], { int64Data: v as number[] })),
      ],
      nodes: [
        node("Slice", ["x", "st", "en", "ax", "sp"], ["f"]),
        node("Conv", ["f", "w"], ["y"], [attr.ints("pads", [1, 0, 0, 1]), attr.ints("strides", [2, 2])]),
      ],
      outputs: [valueInfo("y", T.FLOAT)],
    }));
  });

  it("a grid product's epilogue that reads a constant per output row", async () => {
    const X = [1, 4, 12, 13];
    await check("per-row", X, modelBytes({
      inputs: [valueInfo("x", T.FLOAT, X)],
      initializers: [tensorProto("w", T.FLOAT, [6, 4, 5, 5], { floatData: Array.from(rand(600)) }), tensorProto("s", T.FLOAT, [1, 6, 12, 1], { floatData: Array.from(rand(72)) })],
      nodes: [node("Conv", ["x", "w"], ["c"], [attr.ints("pads", [2, 2, 2, 2])]), node("Mul", ["c", "s"], ["y"])],
      outputs: [valueInfo("y", T.FLOAT)],
    }));
  });
});

describe("a Winograd convolution with a residual epilogue", () => {
  // y = Relu(Conv3x3(x) + a), a a 1x1 Conv's result that dies at the Add: each output goes through
  // the epilogue once, reading a where y may be written over it.
  for (const t of ["host", "rpi4"]) {
    it(`matches onnxruntime on ${t}`, async () => {
      const X = [1, 48, 15, 15];
      const file = work.write(`winograd-residual-${t}.onnx`, modelBytes({
        inputs: [valueInfo("x", T.FLOAT, X)],
        initializers: [tensorProto("w3", T.FLOAT, [48, 48, 3, 3], { floatData: Array.from(rand(48 * 48 * 9)) }), tensorProto("w1", T.FLOAT, [48, 48, 1, 1], { floatData: Array.from(rand(48 * 48)) })],
        nodes: [
          node("Conv", ["x", "w1"], ["a"]),
          node("Conv", ["x", "w3"], ["c"], [attr.ints("pads", [1, 1, 1, 1])]),
          node("Add", ["c", "a"], ["s"]),
          node("Relu", ["s"], ["y"]),
        ],
        outputs: [valueInfo("y", T.FLOAT)],
      }));
      const x = rand(numel(X));
      const ref = (await (await ort.InferenceSession.create(file)).run({ x: new ort.Tensor("float32", x, X) })).y;
      const dir = join(work.dir, `winograd-residual-${t}`);
      await buildArtifact(file, dir, { target: threaded(t) });
      // One kernel: the Winograd convolution with the Add and Relu as its epilogue, reading a.
      expect(readFileSync(join(dir, "model.c"), "utf8")).toMatch(/^static void k\d+_fused_Conv\((?=[^)]*\bp_\w*_winograd\b)(?=[^)]*\bt_a\b)/m);
      for (const threads of [1, 2]) {
        const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: X, data: x } }, 1, { threads });
        const r = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
        expect(r.pass, `${threads} threads: max abs error ${r.maxAbs}`).toBe(true);
      }
    });
  }
});

describe("repeated blocks", () => {
  it("share one kernel function when their code is the same up to buffer names, and still match onnxruntime", async () => {
    // x → Conv(w1) → Relu → Conv(w2) → Relu → Conv(w3) → Relu: three convolutions of one shape.
    const shape = [1, 8, 10, 10];
    const convs = [1, 2, 3];
    const file = work.write("repeated.onnx", modelBytes({
      inputs: [valueInfo("x", T.FLOAT, shape)],
      initializers: convs.map((i) => tensorProto(`w${i}`, T.FLOAT, [8, 8, 3, 3], { floatData: Array.from(rand(8 * 8 * 9)) })),
      nodes: convs.flatMap((i) => [
        node("Conv", [i === 1 ? "x" : `r${i - 1}`, `w${i}`], [`c${i}`], [attr.ints("pads", [1, 1, 1, 1])]),
        node("Relu", [`c${i}`], [i === 3 ? "y" : `r${i}`]),
      ]),
      outputs: [valueInfo("y", T.FLOAT)],
    }));
    const dir = join(work.dir, "repeated");
    await buildArtifact(file, dir, { target: loadTarget("host") });
    const c = readFileSync(join(dir, "model.c"), "utf8");
    const defined = c.match(/^static void k\d+_\w+\(/gm)!;
    const run = c.slice(c.indexOf("int model_run("));
    const calls = run.match(/^ {2}k\d+_\w+\(/gm)!;
    expect(calls).toHaveLength(3);
    expect(defined).toHaveLength(1);
    expect(new Set(calls.map((s) => s.trim()))).toEqual(new Set([defined[0].slice("static void ".length)]));

    const x = rand(numel(shape));
    const session = await ort.InferenceSession.create(file);
    const ref = (await session.run({ x: new ort.Tensor("float32", x, shape) }))["y"];
    const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape, data: x } });
    const r = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
    expect(r.pass, `max abs error ${r.maxAbs}`).toBe(true);
  });
});

describe("parallel loops", () => {
  it("split between threads only from the target's parallelMinWork up: waking threads costs more than a small kernel", async () => {
    const shape = [1, 8, 10, 10];
    const file = work.write("small.onnx", modelBytes({
      inputs: [valueInfo("x", T.FLOAT, shape)],
      initializers: [tensorProto("w", T.FLOAT, [8, 8, 3, 3], { floatData: Array.from(rand(8 * 8 * 9)) })],
      nodes: [node("Conv", ["x", "w"], ["y"], [attr.ints("pads", [1, 1, 1, 1])])],
      outputs: [valueInfo("y", T.FLOAT)],
    }));
    const pragmas = async (parallelMinWork: number) => {
      const dir = join(work.dir, `small-${parallelMinWork}`);
      await buildArtifact(file, dir, { target: { ...loadTarget("host"), parallelMinWork } });
      return (readFileSync(join(dir, "model.c"), "utf8").match(PARALLEL_LOOP) ?? []).length;
    };
    expect(await pragmas(loadTarget("host").parallelMinWork)).toBe(0);
    expect(await pragmas(0)).toBeGreaterThan(0);
  });

  it("run, with threads, as functions of a range of their iterations and of a struct of what they use: the pool's threads run them by chunks of their shares, one thread calls them once", async () => {
    const file = work.write("ranges.onnx", modelBytes({
      inputs: [valueInfo("x", T.FLOAT, [1, 8, 10, 10])],
      initializers: [tensorProto("w", T.FLOAT, [8, 8, 3, 3], { floatData: Array.from(rand(8 * 8 * 9)) })],
      nodes: [node("Conv", ["x", "w"], ["y"], [attr.ints("pads", [1, 1, 1, 1])])],
      outputs: [valueInfo("y", T.FLOAT)],
    }));
    const source = async (target: string) => {
      const dir = join(work.dir, `ranges-${target}`);
      await buildArtifact(file, dir, { target: { ...loadTarget(target), parallelMinWork: 0 } });
      return readFileSync(join(dir, "model.c"), "utf8");
    };
    const host = await source("host");
    const runs = [...host.matchAll(/^\s+\{ const struct (\w+) edgec_args = \{ ([\w, ]+) \}; EDGEC_PARALLEL_RUN\((\d+), (\w+), &edgec_args\); \}$/gm)];
    expect(runs.length).toBeGreaterThan(0);
    expect(host).not.toMatch(/^\s+EDGEC_PARALLEL_FOR$/m);
    // A thread's slice of scratch is found from the index the call hands in: 0 on one thread, even
    // when the application calls the model from threads of its own.
    expect(host).toMatch(/^\s+int32_t slice\d+ = \(edgec_tid \* \d+\);$/m);
    expect(host).not.toMatch(/\(EDGEC_TID \* \d+\)/);
    for (const [, struct, args, , fn] of runs) {
      expect(fn).toBe(struct);
      const names = args.split(", ");
      const members = names.map((n) => `  (?:const )?\\w+ \\*?${n};\\n`).join("");
      const unpack = names.map((n) => `  (?:const )?\\w+ \\*?${n} = edgec_a->${n};\\n`).join("");
      expect(host).toMatch(new RegExp(`^struct ${fn} \\{\\n${members}\\};\\nstatic void ${fn}\\(const void \\*edgec_args, int32_t edgec_lo, int32_t edgec_hi, int32_t edgec_tid\\) \\{\\n  const struct ${fn} \\*edgec_a = edgec_args;\\n${unpack}(?:  \\(void\\)edgec_tid;\\n)?  for \\(int32_t (\\w+) = edgec_lo; \\1 < edgec_hi; \\+\\+\\1\\) \\{$`, "m"));
    }
    // Without -pthread (WebAssembly) the loops stay where they are.
    const wasm = await source("wasm32");
    expect(wasm).not.toMatch(/\bEDGEC_PARALLEL_RUN\(\d+/);
    expect(wasm).toMatch(/^\s+EDGEC_PARALLEL_FOR$/m);
  });

  it("count a product's multiply-adds, half a unit each: 64 by 64 channels on 125 pixels split at the default, 16 by 64 do not", async () => {
    const split = async (out: number) => {
      const file = work.write(`pointwise-${out}.onnx`, modelBytes({
        inputs: [valueInfo("x", T.FLOAT, [1, 64, 25, 5])],
        initializers: [tensorProto("w", T.FLOAT, [out, 64, 1, 1], { floatData: Array.from(rand(out * 64)) })],
        nodes: [node("Conv", ["x", "w"], ["y"])],
        outputs: [valueInfo("y", T.FLOAT)],
      }));
      const dir = join(work.dir, `pointwise-${out}`);
      await buildArtifact(file, dir, { target: loadTarget("host") });
      return splits(readFileSync(join(dir, "model.c"), "utf8"));
    };
    expect(await split(64)).toBe(true);
    expect(await split(16)).toBe(false);
  });
});

describe("a Winograd convolution's outputs", () => {
  // y = Relu(Conv3x3(x) + b + a) on an odd map wide enough for whole vectors of outputs under
  // AVX-512: vectors of blocks within one row of blocks go out as one (through the epilogue,
  // reading a), those that cross a row or pass the map's last column element by element.
  const data = generator(14);
  for (const t of ["host", "rpi4"]) {
    it(`go out a vector of a map row at a time where they can, and match onnxruntime on ${t}`, async () => {
      const X = [1, 48, 21, 23];
      const file = work.write(`winograd-rows-${t}.onnx`, modelBytes({
        inputs: [valueInfo("x", T.FLOAT, X), valueInfo("a", T.FLOAT, [1, 40, 21, 23])],
        initializers: [tensorProto("w", T.FLOAT, [40, 48, 3, 3], { floatData: Array.from(data(40 * 48 * 9)) }), tensorProto("b", T.FLOAT, [40], { floatData: Array.from(data(40)) })],
        nodes: [node("Conv", ["x", "w", "b"], ["c"], [attr.ints("pads", [1, 1, 1, 1])]), node("Add", ["c", "a"], ["s"]), node("Relu", ["s"], ["y"])],
        outputs: [valueInfo("y", T.FLOAT)],
      }));
      const [x, a] = [data(numel(X)), data(40 * 21 * 23)];
      const ref = (await (await ort.InferenceSession.create(file)).run({ x: new ort.Tensor("float32", x, X), a: new ort.Tensor("float32", a, [1, 40, 21, 23]) })).y;
      const dir = join(work.dir, `winograd-rows-${t}`);
      await buildArtifact(file, dir, { target: threaded(t) });
      const source = readFileSync(join(dir, "model.c"), "utf8");
      expect(source).toMatch(/\bp_\w*_winograd\b/);
      expect(source, "a block's two columns spread side by side").toMatch(/edgec_vspread\d+\(out\d+ \+ \d+, 0x5+u, \d+, 0\.0f\) \+ edgec_vspread\d+\(out\d+ \+ \d+, 0xa+u/);
      expect(source, "a vector of outputs read from the rows").toMatch(/edgec_vload\d+\(rows\d+ \+ \d+\)/);
      for (const threads of [1, 2]) {
        const { outputs } = await runArtifact(dir, { x: { dtype: "float32", shape: X, data: x }, a: { dtype: "float32", shape: [1, 40, 21, 23], data: a } }, 1, { threads });
        const r = compare("y", outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data as Float32Array }, { rtol: 1e-4, atol: 1e-5 });
        expect(r.pass, `${threads} threads: max abs error ${r.maxAbs}`).toBe(true);
      }
    });
  }
});
