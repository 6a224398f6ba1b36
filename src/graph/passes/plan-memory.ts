import type { Graph, Node } from "../ir.js";
import { ARENA_ALIGN, memoryModel, simulate } from "../memory.js";

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

interface Block {
  values: string[];
  bytes: number;
  life: [number, number];
}

/**
 * Offsets in one arena for the graph's kernel order (static memory planning):
 * 1. lifetimes from the order: a buffer lives from the kernel writing it to its last reader (a
 *    View's readers read its input); an elementwise kernel whose input dies there writes over it,
 *    and the two become one block (in-place reuse, the rule the scheduler also counts with);
 * 2. six placement orders (largest first, most conflicting first, by breadth: blocks live at the
 *    fullest steps first, by area, by lifetime, by start), each placed first fit and best fit;
 * 3. while the arena is above the lower bound (the most bytes live at once): a depth-first search
 *    for a placement in exactly the bound (see `byStart`); the greedy orders one time
 *    segment at a time, with a seeded search (see `improve`) in each, cutting the timeline where at
 *    most one block is live across the cut (that block keeps the offset its earlier segment gave
 *    it), since small segments are where the search finds the bound; then the search on the whole;
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
    const block: Block = { values: [], bytes: Math.ceil(bytes / ARENA_ALIGN) * ARENA_ALIGN, life: [t, t] };
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
      block.values.push(buf.value);
      block.life[1] = Math.max(block.life[1], life[1]);
      blockOf.set(b, block);
    } else {
      const fresh: Block = { values: [buf.value], bytes: buf.bytes, life: [...life] };
      blocks.push(fresh);
      blockOf.set(b, fresh);
    }
  }
  // Cheapest first: the greedy orders, then the searches: depth-first in the bound, segments with
  // search, the whole with search. Each search's work is capped, so large graphs stay fast.
  let best = solve(blocks, new Map(), sim.curve, bound, { left: 0 });
  const searches = [() => byStart(blocks, bound, 100, { left: 4e7 }), () => bySegments(blocks, sim.curve, { left: 4e7 }), () => solve(blocks, new Map(), sim.curve, bound, { left: 4e7 })];
  for (const next of searches) {
    if (best.arena <= bound) break;
    const r = next();
    if (r.arena < best.arena) best = r;
  }
  const offsets: Record<string, number> = {};
  const placed = new Map<Node, number>();
  for (const [block, off] of best.at) {
    for (const v of block.values) offsets[v] = off;
    if (transient.has(block)) placed.set(transient.get(block)!, off);
  }
  for (const [v, [of, at]] of m.slices) offsets[v] = offsets[of] + at;
  const inPlace: Record<string, string> = {};
  for (const [o, i] of sim.reuse) inPlace[m.buffers[o].value] = m.buffers[i].value;
  return { ...g, memory: { offsets, arenaBytes: best.arena, lowerBoundBytes: bound, strategy: best.strategy, inPlace, scratch: placed } };
}

type Placement = { strategy: string; at: Map<Block, number>; arena: number };

/** Seeded 32-bit integers (a linear congruential generator): the searches, and so the builds, are reproducible. */
const seeded = (seed: number) => () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);

const overlaps = (a: Block, b: Block) => a.life[0] <= b.life[1] && b.life[0] <= a.life[1];
const length = (b: Block) => b.life[1] - b.life[0] + 1;
const area = (b: Block) => b.bytes * length(b);

/** The best placement of `blocks` around blocks already `fixed` at their offsets. */
function solve(blocks: Block[], fixed: Map<Block, number>, curve: number[], bound: number, work: { left: number }): Placement {
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
  const at = new Map<Block, number>();
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
  const off: number[] = [];
  const next = seeded(12345);
  const rand = () => next() / 2 ** 32;
  const choices = (i: number, noise: number): number[] => {
    const b = order[i];
    const live = before[i].map((j) => [off[j], off[j] + order[j].bytes]).sort((x, y) => x[0] - y[0]);
    const found: [number, number][] = [];
    let end = 0;
    for (const [from, to] of [...live, [target, target]]) {
      const gap = from - end;
      if (gap >= b.bytes) found.push([end, gap + noise * rand()]);
      if (gap > b.bytes) found.push([from - b.bytes, gap + noise * rand()]);
      end = Math.max(end, to);
    }
    return found.sort((x, y) => x[1] - y[1] || x[0] - y[0]).map(([at]) => at);
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
      off[stack.length - 1] = top.at[top.next++];
      if (stack.length === order.length) return { strategy: `by start, depth-first (try ${t + 1})`, at: new Map(order.map((b, i) => [b, off[i]])), arena: target };
      const cost = before[stack.length].length + 1;
      left -= cost;
      work.left -= cost;
      stack.push({ at: choices(stack.length, noise), next: 0 });
    }
  }
  return { strategy: "by start, depth-first", at: new Map(), arena: Infinity };
}

/**
 * Places blocks in the given order, each at an offset overlapping no placed block alive at the same
 * time: the lowest such offset (first fit) or the one in the tightest gap (best fit).
 */
function place(order: Block[], fixed: Map<Block, number>, fit: "first-fit" | "best-fit"): { at: Map<Block, number>; arena: number } {
  const at = new Map(fixed);
  let arena = Math.max(0, ...[...fixed].map(([b, off]) => off + b.bytes));
  for (const block of order) {
    const busy = [...at].filter(([p]) => overlaps(p, block)).sort((a, b) => a[1] - b[1]);
    let off = -1, gapBest = Infinity, end = 0;
    for (const [p, pOff] of busy) {
      const gap = pOff - end;
      if (gap >= block.bytes && (fit === "first-fit" ? off < 0 : gap < gapBest)) [off, gapBest] = [end, gap];
      end = Math.max(end, pOff + p.bytes);
    }
    if (off < 0) off = end;
    at.set(block, off);
    arena = Math.max(arena, off + block.bytes);
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
function improve(start: Placement, blocks: Block[], fixed: Map<Block, number>, bound: number, work: { left: number }): Placement {
  let order = blocks.filter((b) => start.at.has(b)).sort((a, b) => start.at.get(a)! - start.at.get(b)!);
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
      const top = order.filter((b) => best.at.get(b)! + b.bytes === best.arena);
      if (!top.length) continue;
      next = [...order];
      const from = next.indexOf(top[rand(top.length)]);
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
