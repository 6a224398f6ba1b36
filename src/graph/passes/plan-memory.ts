import type { Graph, Node } from "../ir.js";
import { alignments, ARENA_ALIGN, memoryModel, simulate } from "../memory.js";

export interface MemoryPlan {
  /** byte offset in the arena of every intermediate value */
  offsets: Record<string, number>;
  arenaBytes: number;
  /** the most bytes live at once in this order: no placement can use a smaller arena */
  lowerBoundBytes: number;
  /** the placement order and fit that won, e.g. "size, first-fit" */
  strategy: string;
  /** values written over an input that dies in the same kernel: value → the input */
  inPlace: Record<string, string>;
  /** byte offset of each kernel's scratch (the `scratch` bytes asked for; by node, as names need not be unique) */
  scratch: Map<Node, number>;
}

type Strategy = "size" | "conflicts" | "breadth" | "area" | "lifetime" | "start";

/** A run of a block's buffers of one size, and where it lies above the block's offset. */
interface Part {
  bytes: number;
  life: [number, number];
  at: number;
}

/**
 * Buffers placed together: an in-place chain (each writing over the one before as it dies) or a
 * kernel's scratch. A chain's buffers can differ in size (a 1×1 convolution in place changing the
 * channel count), each run of one size a part (`values[i]` are part i's); its shapes are the ways
 * the parts may lie against each other (see `alignments`). `bytes` is its largest part and `life`
 * spans them all.
 */
interface Block {
  values: string[][];
  shapes: Part[][];
  bytes: number;
  life: [number, number];
}

/** Where a block is placed, and in which of its shapes. */
interface Spot {
  off: number;
  shape: number;
}

/** A block's shapes at most: each change of size can double them. */
const MAX_SHAPES = 8;

const rectangle = (values: string[], bytes: number, life: [number, number]): Block => ({ values: [values], shapes: [[{ bytes, life: [...life], at: 0 }]], bytes, life: [...life] });
const height = (parts: Part[]) => Math.max(...parts.map((p) => p.at + p.bytes));
const top = (b: Block, s: Spot) => s.off + height(b.shapes[s.shape]);

/**
 * Offsets in one arena for the graph's kernel order (static memory planning):
 * 1. lifetimes from the order: a buffer lives from the kernel writing it to its last reader (a
 *    View's readers read its input); an elementwise kernel whose input dies there writes over it,
 *    and the two become one block (in-place reuse, the rule the scheduler also counts with), as
 *    does a convolution in place, whose output may differ in size (a block of two shapes);
 * 2. six placement orders (largest first, most conflicting first, by breadth: blocks live at the
 *    fullest steps first, by area, by lifetime, by start), each placed first fit and best fit;
 * 3. while the arena is above the lower bound (the most bytes live at once): a depth-first search
 *    for a placement in exactly the bound (see `byStart`); a seeded search (see `improve`) on the
 *    whole; then the greedy orders one time segment at a time, with that search in each, cutting
 *    the timeline where at most one block is live across the cut (that block keeps the offset its
 *    earlier segment gave it), since small segments are where the search finds the bound when the
 *    whole is too large for it (swiftnet-1x12, its blocks of two sizes placed in the bound by the
 *    search on the whole, took 1.4 s with the whole first, 6.8 s with it last);
 * 4. the smallest arena wins, and each slice of a ConcatView is placed inside it. Inputs and
 *    outputs live in the caller's buffers.
 * `scratch` (kernel → bytes) is memory a kernel needs only while it runs (packing panels, padded
 * copies, a map pooled in cache): a block live at that kernel's step alone, placed with the rest,
 * so it takes memory that is free then rather than a region of its own after the arena.
 */
export function planMemory(g: Graph, scratch = new Map<Node, number>()): Graph & { memory: MemoryPlan } {
  const m = memoryModel(g);
  const sim = simulate(m, m.kernels.map((_, k) => k));
  const blockOf = new Map<number, Block>();
  const blocks: Block[] = [];
  const transient = new Map<Block, Node>();
  m.kernels.forEach((n, t) => {
    const bytes = scratch.get(n);
    if (!bytes) return;
    const block = rectangle([], Math.ceil(bytes / ARENA_ALIGN) * ARENA_ALIGN, [t, t]);
    blocks.push(block);
    transient.set(block, n);
    sim.curve[t] += block.bytes;
  });
  const bound = Math.max(0, ...sim.curve);
  for (const [b, buf] of m.buffers.entries()) {
    const from = sim.reuse.get(b);
    const life = sim.life.get(b)!;
    const block = from === undefined ? undefined : blockOf.get(from);
    if (block) {
      const last = block.shapes[0].length - 1;
      if (block.shapes[0][last].bytes === buf.bytes) {
        block.values[last].push(buf.value);
        for (const parts of block.shapes) parts[last].life[1] = Math.max(parts[last].life[1], life[1]);
      } else {
        const writer = m.buffers[b].producers[0];
        block.values.push([buf.value]);
        block.shapes = block.shapes
          .flatMap((parts) => alignments(g, m, writer, from!).map((at) => [...parts, { bytes: buf.bytes, life: [...life] as [number, number], at: parts[last].at + at }]))
          .map((parts) => parts.map((p) => ({ ...p, at: p.at - Math.min(...parts.map((q) => q.at)) })))
          .slice(0, MAX_SHAPES);
        block.bytes = Math.max(block.bytes, buf.bytes);
      }
      block.life[1] = Math.max(block.life[1], life[1]);
      blockOf.set(b, block);
    } else {
      const fresh = rectangle([buf.value], buf.bytes, life);
      blocks.push(fresh);
      blockOf.set(b, fresh);
    }
  }
  // Cheapest first: the greedy orders, then the searches: depth-first in the bound, the whole with
  // search, segments with search. Each search's work is capped, so large graphs stay fast.
  let best = solve(blocks, new Map(), sim.curve, bound, { left: 0 });
  const searches = [() => byStart(blocks, bound, 100, { left: 4e7 }), () => solve(blocks, new Map(), sim.curve, bound, { left: 4e7 }), () => bySegments(blocks, sim.curve, { left: 4e7 })];
  for (const next of searches) {
    if (best.arena <= bound) break;
    const r = next();
    if (r.arena < best.arena) best = r;
  }
  const offsets: Record<string, number> = {};
  const placed = new Map<Node, number>();
  for (const [block, spot] of best.at) {
    block.shapes[spot.shape].forEach((p, i) => block.values[i].forEach((v) => (offsets[v] = spot.off + p.at)));
    if (transient.has(block)) placed.set(transient.get(block)!, spot.off);
  }
  for (const [v, [of, at]] of m.slices) offsets[v] = offsets[of] + at;
  const inPlace: Record<string, string> = {};
  for (const [o, i] of sim.reuse) inPlace[m.buffers[o].value] = m.buffers[i].value;
  return { ...g, memory: { offsets, arenaBytes: best.arena, lowerBoundBytes: bound, strategy: best.strategy, inPlace, scratch: placed } };
}

type Placement = { strategy: string; at: Map<Block, Spot>; arena: number };

/** Seeded 32-bit integers (a linear congruential generator): the searches, and so the builds, are reproducible. */
const seeded = (seed: number) => () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);

const overlaps = (a: { life: [number, number] }, b: { life: [number, number] }) => a.life[0] <= b.life[1] && b.life[0] <= a.life[1];
const length = (b: { life: [number, number] }) => b.life[1] - b.life[0] + 1;
const area = (b: Block) => b.shapes[0].reduce((s, p) => s + p.bytes * length(p), 0);

/**
 * The offsets at which a block in shape `parts` overlaps none of `placed` in the arena's first
 * `limit` bytes, as runs [from, to] of offsets, lowest first; the last may have no end. A pair of
 * parts alive at the same time rules out the offsets that put one over the other.
 */
function freeRuns(parts: Part[], placed: [Block, Spot][], limit = Infinity): [number, number][] {
  const banned: [number, number][] = [[limit - height(parts), Infinity]];
  for (const [p, spot] of placed)
    for (const q of p.shapes[spot.shape]) for (const r of parts) if (overlaps(q, r)) banned.push([spot.off + q.at - r.at - r.bytes, spot.off + q.at + q.bytes - r.at]);
  banned.sort((a, b) => a[0] - b[0]);
  const runs: [number, number][] = [];
  let from = 0;
  for (const [lo, hi] of banned) {
    if (from <= lo) runs.push([from, lo]);
    from = Math.max(from, hi);
  }
  if (from < Infinity) runs.push([from, Infinity]);
  return runs;
}

/** The best placement of `blocks` around blocks already `fixed` at their offsets. */
function solve(blocks: Block[], fixed: Map<Block, Spot>, curve: number[], bound: number, work: { left: number }): Placement {
  const all = [...blocks, ...fixed.keys()];
  const conflicts = new Map(blocks.map((a) => [a, all.reduce((s, b) => s + (a !== b && overlaps(a, b) ? b.bytes : 0), 0)]));
  // Greedy by breadth (TFLite): the steps with the most live bytes first, each one's blocks largest first.
  const breadth = curve.map((live, t) => ({ live, t })).sort((a, b) => b.live - a.live || a.t - b.t);
  const byBreadth = [...new Set(breadth.flatMap(({ t }) => blocks.filter((b) => b.life[0] <= t && t <= b.life[1]).sort((a, b) => b.bytes - a.bytes)))];
  const orders: [Strategy, Block[]][] = [
    ["size", [...blocks].sort((a, b) => b.bytes - a.bytes || a.life[0] - b.life[0])],
    ["conflicts", [...blocks].sort((a, b) => conflicts.get(b)! - conflicts.get(a)! || b.bytes - a.bytes || a.life[0] - b.life[0])],
    ["breadth", [...byBreadth, ...blocks.filter((b) => !byBreadth.includes(b))]],
    ["area", [...blocks].sort((a, b) => area(b) - area(a) || b.bytes - a.bytes)],
    ["lifetime", [...blocks].sort((a, b) => length(b) - length(a) || b.bytes - a.bytes)],
    ["start", [...blocks].sort((a, b) => a.life[0] - b.life[0] || b.bytes - a.bytes)],
  ];
  const tries = orders.flatMap(([name, order]) => (["first-fit", "best-fit"] as const).map((fit) => ({ strategy: `${name}, ${fit}`, ...place(order, fixed, fit) })));
  const best = tries.reduce((x, y) => (y.arena < x.arena ? y : x));
  return best.arena > bound ? improve(best, blocks, fixed, bound, work) : best;
}

/**
 * Cuts the timeline between steps where at most one block is live on both sides, solves each
 * segment's blocks in time order, a block from an earlier segment keeping its offset.
 */
function bySegments(blocks: Block[], curve: number[], work: { left: number }): Placement {
  const cuts = curve.map((_, t) => t).filter((t) => t + 1 < curve.length && blocks.filter((b) => b.life[0] <= t && b.life[1] > t).length <= 1);
  const at = new Map<Block, Spot>();
  let arena = 0;
  for (const [i, end] of [...cuts, curve.length - 1].entries()) {
    const from = i ? cuts[i - 1] + 1 : 0;
    const mine = blocks.filter((b) => b.life[0] >= from && b.life[0] <= end);
    const fixed = new Map([...at].filter(([b]) => b.life[1] >= from));
    const r = solve(mine, fixed, curve.map((c, t) => (t >= from && t <= end ? c : 0)), Math.max(0, ...curve.slice(from, end + 1)), work);
    for (const b of mine) at.set(b, r.at.get(b)!);
    arena = Math.max(arena, r.arena);
  }
  return { strategy: `by ${cuts.length + 1} time segments`, at, arena };
}
/**
 * A depth-first search for a placement in `target` bytes. Blocks are taken in the order they come
 * alive, so every block placed before one that overlaps it in time is live where it starts: its
 * choices are the bottom and the top of each gap between those, and a choice that leaves a later
 * block no room is undone. The first try takes the tightest gap first; since one early choice can
 * doom a whole subtree, each later try restarts with seeded noise on that preference. Each choice
 * costs the blocks it is checked against, out of the shared `work`, spread evenly over `tries`.
 */
function byStart(blocks: Block[], target: number, tries: number, work: { left: number }): Placement {
  const order = [...blocks].sort((a, b) => a.life[0] - b.life[0] || b.bytes - a.bytes);
  // The blocks placed before each one that are alive where it starts.
  const before = order.map((b, i) => order.slice(0, i).flatMap((p, j) => (p.life[1] >= b.life[0] ? [j] : [])));
  const spots: Spot[] = [];
  const next = seeded(12345);
  const rand = () => next() / 2 ** 32;
  const choices = (i: number, noise: number): Spot[] => {
    const found: [Spot, number][] = [];
    order[i].shapes.forEach((parts, shape) => {
      for (const [from, to] of freeRuns(parts, before[i].map((j) => [order[j], spots[j]]), target)) {
        found.push([{ off: from, shape }, to - from + noise * rand()]);
        if (to > from) found.push([{ off: to, shape }, to - from + noise * rand()]);
      }
    });
    return found.sort((x, y) => x[1] - y[1] || x[0].off - y[0].off).map(([spot]) => spot);
  };
  for (let t = 0; t < tries && work.left > 0; t++) {
    let left = work.left / (tries - t);
    const noise = t ? target / 2 : 0;
    // Iterative, so that thousands of blocks do not overflow the call stack.
    const stack = [{ at: choices(0, noise), next: 0 }];
    while (stack.length && left > 0) {
      const top = stack[stack.length - 1];
      if (top.next === top.at.length) {
        stack.pop();
        continue;
      }
      spots[stack.length - 1] = top.at[top.next++];
      if (stack.length === order.length) return { strategy: `by start, depth-first (try ${t + 1})`, at: new Map(order.map((b, i) => [b, spots[i]])), arena: target };
      const cost = before[stack.length].length + 1;
      left -= cost;
      work.left -= cost;
      stack.push({ at: choices(stack.length, noise), next: 0 });
    }
  }
  return { strategy: "by start, depth-first", at: new Map(), arena: Infinity };
}

/**
 * Places blocks in the given order, each (in whichever of its shapes) at an offset overlapping no
 * placed block alive at the same time: the lowest such offset (first fit) or the one in the
 * tightest gap (best fit).
 */
function place(order: Block[], fixed: Map<Block, Spot>, fit: "first-fit" | "best-fit"): { at: Map<Block, Spot>; arena: number } {
  const at = new Map(fixed);
  let arena = Math.max(0, ...[...fixed].map(([b, spot]) => top(b, spot)));
  for (const block of order) {
    const busy = [...at].filter(([p]) => overlaps(p, block));
    // Each shape's runs: [offset, room to spare], the room unbounded above the placed blocks.
    const runs = block.shapes.flatMap((parts, shape) => freeRuns(parts, busy).map(([from, to]) => ({ spot: { off: from, shape }, room: to - from })));
    const lowest = runs.reduce((a, b) => (b.spot.off < a.spot.off ? b : a));
    const tightest = runs.reduce((a, b) => (b.room < a.room ? b : a));
    const spot = (fit === "first-fit" || tightest.room === Infinity ? lowest : tightest).spot;
    at.set(block, spot);
    arena = Math.max(arena, top(block, spot));
  }
  return { at, arena };
}

/**
 * Search when no greedy order reached the lower bound (seeded, so builds are reproducible). Tries
 * take turns: a greedy order with its keys (size, area, lifetime) perturbed by random noise; a
 * random order (for small problems, where that is cheap and often enough); and moving a block that
 * ends at the top of the arena earlier in the best order. The first two replace the best order only
 * when strictly better, a move also on a tie. Each try spends blocks² of the shared `work`.
 */
function improve(start: Placement, blocks: Block[], fixed: Map<Block, Spot>, bound: number, work: { left: number }): Placement {
  let order = blocks.filter((b) => start.at.has(b)).sort((a, b) => start.at.get(a)!.off - start.at.get(b)!.off);
  let best = { ...start, strategy: `${start.strategy}, improved` };
  const next = seeded(12345);
  const rand = (n: number) => next() % n;
  const noisy = [(b: Block) => b.bytes, area, length];
  const cost = Math.max(1, blocks.length + fixed.size) ** 2;
  for (let i = 0; work.left > 0 && best.arena > bound; i++, work.left -= cost) {
    const kind = i % 3 === 1 && blocks.length > 64 ? 0 : i % 3;
    let next: Block[];
    if (kind === 0) {
      const key = noisy[(i / 3) % 3 | 0];
      const noise = 0.05 + rand(1000) / 2000;
      next = blocks.map((b) => [b, key(b) * (1 + noise * (rand(2001) / 1000 - 1))] as const).sort((a, b) => b[1] - a[1]).map(([b]) => b);
    } else if (kind === 1) {
      next = [...blocks];
      for (let k = next.length - 1; k > 0; k--) {
        const j = rand(k + 1);
        [next[k], next[j]] = [next[j], next[k]];
      }
    } else {
      const highest = order.filter((b) => top(b, best.at.get(b)!) === best.arena);
      if (!highest.length) continue;
      next = [...order];
      const from = next.indexOf(highest[rand(highest.length)]);
      next.splice(rand(from + 1), 0, ...next.splice(from, 1));
    }
    for (const fit of ["first-fit", "best-fit"] as const) {
      const r = place(next, fixed, fit);
      if (r.arena > best.arena || (r.arena === best.arena && kind !== 2)) continue;
      best = { ...r, strategy: best.strategy };
      order = next;
      break;
    }
  }
  return best;
}
