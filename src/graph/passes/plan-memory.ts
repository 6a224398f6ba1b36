import type { Graph } from "../ir.js";
import { memoryModel, simulate } from "../memory.js";

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
 * 2. three placement orders (largest blocks first, most-conflicting first, and by breadth: blocks
 *    live at the fullest steps first), each placed first fit and best fit;
 * 3. the smallest arena wins. Inputs and outputs live in the caller's buffers.
 */
export function planMemory(g: Graph): Graph & { memory: MemoryPlan } {
  const m = memoryModel(g);
  const sim = simulate(m, m.kernels.map((_, k) => k));
  const blockOf = new Map<number, Block>();
  const blocks: Block[] = [];
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
  const length = (b: Block) => b.life[1] - b.life[0] + 1;
  const area = (b: Block) => b.bytes * length(b);
  const overlaps = (a: Block, b: Block) => a.life[0] <= b.life[1] && b.life[0] <= a.life[1];
  const conflicts = new Map(blocks.map((a) => [a, blocks.reduce((s, b) => s + (a !== b && overlaps(a, b) ? b.bytes : 0), 0)]));
  // Greedy by breadth (TFLite): the steps with the most live bytes first, each one's blocks largest first.
  const breadth = sim.curve.map((live, t) => ({ live, t })).sort((a, b) => b.live - a.live || a.t - b.t);
  const byBreadth = [...new Set(breadth.flatMap(({ t }) => blocks.filter((b) => b.life[0] <= t && t <= b.life[1]).sort((a, b) => b.bytes - a.bytes)))];
  const orders: [Strategy, Block[]][] = [
    ["size", [...blocks].sort((a, b) => b.bytes - a.bytes || a.life[0] - b.life[0])],
    ["conflicts", [...blocks].sort((a, b) => conflicts.get(b)! - conflicts.get(a)! || b.bytes - a.bytes || a.life[0] - b.life[0])],
    ["breadth", [...byBreadth, ...blocks.filter((b) => !byBreadth.includes(b))]],
    ["area", [...blocks].sort((a, b) => area(b) - area(a) || b.bytes - a.bytes)],
    ["lifetime", [...blocks].sort((a, b) => length(b) - length(a) || b.bytes - a.bytes)],
    ["start", [...blocks].sort((a, b) => a.life[0] - b.life[0] || b.bytes - a.bytes)],
  ];
  const tries = orders.flatMap(([name, order]) => (["first-fit", "best-fit"] as const).map((fit) => ({ strategy: `${name}, ${fit}`, ...place(order, overlaps, fit) })));
  let best = tries.reduce((x, y) => (y.arena < x.arena ? y : x));
  if (best.arena > sim.peak) best = improve(best, sim.peak, overlaps);
  const offsets: Record<string, number> = {};
  for (const [block, off] of best.at) for (const v of block.values) offsets[v] = off;
  const inPlace: Record<string, string> = {};
  for (const [o, i] of sim.reuse) inPlace[m.buffers[o].value] = m.buffers[i].value;
  return { ...g, memory: { offsets, arenaBytes: best.arena, lowerBoundBytes: sim.peak, strategy: best.strategy, inPlace } };
}

/**
 * Places blocks in the given order, each at an offset overlapping no placed block alive at the same
 * time: the lowest such offset (first fit) or the one in the tightest gap (best fit).
 */
function place(order: Block[], overlaps: (a: Block, b: Block) => boolean, fit: "first-fit" | "best-fit"): { at: Map<Block, number>; arena: number } {
  const at = new Map<Block, number>();
  let arena = 0;
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
 * Search when no greedy order reached the lower bound (seeded, so builds are reproducible): each try
 * either moves a block that ends at the top of the arena earlier in the best placement order, or
 * places the blocks in a fresh random order. The tries
 * are capped by work (placements cost blocks² each) so large graphs stay fast.
 */
function improve(start: { strategy: string; at: Map<Block, number>; arena: number }, bound: number, overlaps: (a: Block, b: Block) => boolean) {
  let order = [...start.at.keys()];
  let best = { ...start, strategy: `${start.strategy}, improved` };
  let seed = 12345;
  const rand = (n: number) => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n;
  const tries = Math.floor(4e7 / Math.max(1, order.length) ** 2);
  const restarts = order.length <= 64;
  for (let i = 0; i < tries && best.arena > bound; i++) {
    const next = [...order];
    if (i % 2 || !restarts) {
      const top = order.filter((b) => best.at.get(b)! + b.bytes === best.arena);
      const from = order.indexOf(top[rand(top.length)]);
      next.splice(rand(from + 1), 0, ...next.splice(from, 1));
    } else for (let k = next.length - 1; k > 0; k--) {
      const j = rand(k + 1);
      [next[k], next[j]] = [next[j], next[k]];
    }
    for (const fit of ["first-fit", "best-fit"] as const) {
      const r = place(next, overlaps, fit);
      // A random order replaces the best one only when strictly better, a moved block also on a tie.
      if (r.arena > best.arena || (r.arena === best.arena && !(i % 2))) continue;
      best = { ...r, strategy: best.strategy };
      order = next;
      break;
    }
  }
  return best;
}
