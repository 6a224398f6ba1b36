import { DTYPES } from "../../core/dtype.js";
import { numel } from "../../core/tensor.js";
import type { Graph } from "../ir.js";

export const ARENA_ALIGN = 64;

export interface MemoryPlan {
  /** byte offset in the arena of every intermediate value */
  offsets: Record<string, number>;
  arenaBytes: number;
}

/**
 * A first static plan, in three steps:
 * 1. lifetimes: each intermediate (not an input, output or constant) lives from the node that
 *    writes it to the last node that reads it or a View of it, in the graph's node order;
 * 2. order: largest first (greedy by size);
 * 3. placement: each buffer goes to the lowest 64-byte-aligned offset that overlaps no placed
 *    buffer whose lifetime intersects its own.
 * The arena is the highest end offset. Inputs and outputs live in the caller's buffers.
 */
export function planMemory(g: Graph): Graph & { memory: MemoryPlan } {
  const external = new Set([...g.inputs, ...g.outputs]);
  // A View's value is its input's memory: reading it keeps the input alive.
  const base = new Map<string, string>();
  const root = (v: string): string => (base.has(v) ? root(base.get(v)!) : v);
  const life = new Map<string, [number, number]>();
  g.nodes.forEach((n, i) => {
    if (n.op === "View") base.set(n.outputs[0], n.inputs[0]);
    else for (const o of n.outputs) if (o && !external.has(o) && !g.values.get(o)?.data) life.set(o, [i, i]);
    for (const x of n.inputs) if (x && life.has(root(x))) life.get(root(x))![1] = i;
  });
  const bytes = (name: string) => {
    const v = g.values.get(name)!;
    const b = numel(v.shape!) * DTYPES[v.dtype].bytes;
    return Math.max(ARENA_ALIGN, Math.ceil(b / ARENA_ALIGN) * ARENA_ALIGN);
  };
  const order = [...life.keys()].sort((a, b) => bytes(b) - bytes(a) || a.localeCompare(b));
  const placed: { name: string; off: number; end: number; life: [number, number] }[] = [];
  const offsets: Record<string, number> = {};
  let arenaBytes = 0;
  for (const name of order) {
    const [s, e] = life.get(name)!;
    const size = bytes(name);
    const busy = placed.filter((p) => p.life[0] <= e && s <= p.life[1]).sort((a, b) => a.off - b.off);
    let off = 0;
    for (const p of busy) {
      if (off + size <= p.off) break;
      off = Math.max(off, p.end);
    }
    placed.push({ name, off, end: off + size, life: [s, e] });
    offsets[name] = off;
    arenaBytes = Math.max(arenaBytes, off + size);
  }
  return { ...g, memory: { offsets, arenaBytes } };
}
