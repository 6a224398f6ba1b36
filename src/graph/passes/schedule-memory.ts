import { isAlias, type Graph, type Node } from "../ir.js";
import { memoryModel, onnxruntimeOrder, reusedInput, savedBy, simulate, type MemoryModel } from "../memory.js";

export interface ScheduleInfo {
  /** peak live arena bytes of the chosen order */
  peakBytes: number;
  /** the same for the graph's own (topological) order, as a runtime would run it, before any rewrite */
  topoPeakBytes: number;
  /** the same in the order onnxruntime would run the graph in (its depth-first default order) */
  ortPeakBytes: number;
  /** the scheduler's peak before any rewrite (the pipeline's whenPeakDrops passes and rewriting alternatives) */
  dpPeakBytes: number;
  /** whether dpPeakBytes is proven optimal: that schedule has only its share of the time limit */
  dpOptimal: boolean;
  /** rewrites kept because they lowered the peak */
  rewrites: string[];
  /** live arena bytes while each kernel runs, in the chosen order */
  curve: number[];
  /** the same in the graph's own order, before any rewrite */
  topoCurve: number[];
  /** true when the dynamic program finished on every piece: no order has a lower peak */
  optimal: boolean;
  /** pieces the graph was cut into at kernels every path goes through */
  pieces: number;
  /** dynamic-program states visited */
  states: number;
  /** CPU time the search took */
  ms: number;
}

/** A graph in the order schedule-memory chose, with what it found. */
export type Scheduled = Graph & { schedule: ScheduleInfo };

/** How long the dynamic program may search, per graph, unless told otherwise (CPU time, see cpuMs). */
export const DEFAULT_TIME_LIMIT_MS = 20_000;

/**
 * The compiler's CPU time in ms, which the time limits count: on a machine busy with other work
 * (a parallel make, a CI run) the search gets as far, and a build picks the same order, as alone.
 */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export interface ScheduleOptions {
  /** after this much CPU time the best order found so far is used, not proven optimal */
  timeLimitMs?: number;
}

/** A partial schedule: the set of kernels run so far and the best way found to get there. */
interface State {
  /** where the set's bits are in the stepper's store */
  at: number;
  peak: number;
  live: number;
  /** ready kernels of the piece; made when the state is expanded (most stored states never are) */
  ready?: number[];
  /** kernels of the piece run so far */
  depth: number;
  k: number;
  parent?: State;
}

/**
 * The sets of kernels reached, each with the lowest peak found for it: open addressing over the
 * sets' words, with no object per set (a Map needed a string key built for each set reached).
 */
class SeenSets {
  private capacity = 1 << 12;
  private sets: Uint32Array;
  private peaks: Float64Array;
  size = 0;
  constructor(private readonly words: number) {
    this.sets = new Uint32Array(this.capacity * words);
    this.peaks = new Float64Array(this.capacity).fill(-1);
  }

  /** Stores the set with this peak unless it is stored with one as low; true when stored. */
  lower(bits: Uint32Array, peak: number): boolean {
    if (2 * (this.size + 1) > this.capacity) this.grow();
    const { words, sets, peaks } = this;
    const mask = this.capacity - 1;
    let h = 0x811c9dc5;
    for (let w = 0; w < words; w++) h = Math.imul(h ^ bits[w], 0x01000193);
    // MurmurHash3's finalizer: a multiply only carries bits upwards, and the kernels of one piece
    // can all sit in a word's high bits, which the mask would otherwise never see.
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      if (peaks[i] < 0) {
        sets.set(bits, i * words);
        peaks[i] = peak;
        this.size++;
        return true;
      }
      let same = true;
      for (let w = 0; w < words && same; w++) same = sets[i * words + w] === bits[w];
      if (!same) continue;
      if (peaks[i] <= peak) return false;
      peaks[i] = peak;
      return true;
    }
  }

  private grow() {
    const { words, sets, peaks, capacity } = this;
    this.capacity *= 2;
    this.sets = new Uint32Array(this.capacity * words);
    this.peaks = new Float64Array(this.capacity).fill(-1);
    this.size = 0;
    for (let i = 0; i < capacity; i++) if (peaks[i] >= 0) this.lower(sets.subarray(i * words, (i + 1) * words), peaks[i]);
  }
}

/**
 * Transitions shared by the heuristic orders and the dynamic program, so they cost orders alike.
 * The sets' bits lie in one store, not in an array per state: with millions of small typed arrays,
 * garbage collection took 40% of er-32's search.
 */
class Stepper {
  readonly reads: number[][];
  readonly words: number;
  /** the set of a state after one more kernel, before it is stored */
  readonly next: Uint32Array;
  private store: Uint32Array;
  private stored = 0;
  constructor(readonly m: MemoryModel) {
    this.reads = m.kernels.map(() => []);
    m.buffers.forEach((b, i) => b.readers.forEach((r) => this.reads[r].push(i)));
    this.words = (m.kernels.length + 31) >>> 5;
    this.next = new Uint32Array(this.words);
    this.store = new Uint32Array(this.words << 10);
  }

  /** whether kernel k is in s's set */
  ran(s: State, k: number): boolean {
    return (this.store[s.at + (k >>> 5)] & (1 << (k & 31))) !== 0;
  }

  /** Forgets every stored set: a new piece's search starts. */
  clear() {
    this.stored = 0;
  }

  /** Stores a set; returns where. */
  keep(bits: Uint32Array): number {
    if (this.stored + this.words > this.store.length) {
      const bigger = new Uint32Array(this.store.length * 2);
      bigger.set(this.store);
      this.store = bigger;
    }
    this.store.set(bits, this.stored);
    return (this.stored += this.words) - this.words;
  }

  /** s's set with kernel k added, in `next`. */
  with(s: State, k: number): Uint32Array {
    this.next.set(this.store.subarray(s.at, s.at + this.words));
    this.next[k >>> 5] |= 1 << (k & 31);
    return this.next;
  }

  /** Running ready kernel k from s: the peak so far and the live bytes after it. */
  cost(s: State, k: number): [peak: number, live: number] {
    const m = this.m;
    const done = (j: number) => this.ran(s, j);
    const reused = reusedInput(m, k, done);
    let live = s.live;
    // A ConcatView's buffer comes alive with the first of its slices' kernels.
    for (const b of m.writes[k]) if (!m.buffers[b].producers.some(done)) live += m.buffers[b].bytes;
    const peak = Math.max(s.peak, reused === undefined ? live : live - savedBy(m, k, reused));
    const gone = (b: number) => m.buffers[b].readers.every((r) => r === k || done(r));
    for (const b of this.reads[k]) if (gone(b)) live -= m.buffers[b].bytes;
    for (const b of m.writes[k]) if (!m.buffers[b].readers.length) live -= m.buffers[b].bytes;
    return [peak, live];
  }

  step(s: State, k: number): State {
    const [peak, live] = this.cost(s, k);
    return { at: this.keep(this.with(s, k)), peak, live, depth: s.depth + 1, k, parent: s };
  }

  readyOf(s: State, inPiece: (k: number) => boolean): number[] {
    if (s.ready) return s.ready;
    const m = this.m;
    const ready = this.readyOf(s.parent!, inPiece).filter((j) => j !== s.k);
    for (const j of m.succs[s.k]) if (inPiece(j) && m.preds[j].every((p) => this.ran(s, p))) ready.push(j);
    return (s.ready = ready);
  }
}

const orderOf = (s: State, stop: State): number[] => {
  const out: number[] = [];
  for (let x: State | undefined = s; x && x !== stop; x = x.parent) out.push(x.k);
  return out.reverse();
};

/**
 * Kernels every path goes through: all kernels before one in the graph order are its ancestors and
 * all after it its descendants, so every order runs them at the same position and the pieces
 * between them can be scheduled alone (SERENITY's divide and conquer).
 */
function cutPoints(m: MemoryModel): boolean[] {
  const n = m.kernels.length;
  const words = (n + 31) >>> 5;
  const anc = m.kernels.map(() => new Uint32Array(words));
  const count = (b: Uint32Array) => b.reduce((s, w) => s + popcount(w), 0);
  for (let k = 0; k < n; k++)
    for (const p of m.preds[k]) {
      for (let w = 0; w < words; w++) anc[k][w] |= anc[p][w];
      anc[k][p >>> 5] |= 1 << (p & 31);
    }
  const descendants = new Array<number>(n).fill(0);
  const reach = m.kernels.map(() => new Uint32Array(words));
  for (let k = n - 1; k >= 0; k--) {
    for (const s of m.succs[k]) {
      for (let w = 0; w < words; w++) reach[k][w] |= reach[s][w];
      reach[k][s >>> 5] |= 1 << (s & 31);
    }
    descendants[k] = count(reach[k]);
  }
  return m.kernels.map((_, k) => count(anc[k]) === k && descendants[k] === n - 1 - k);
}

function popcount(w: number): number {
  w = w - ((w >>> 1) & 0x55555555);
  w = (w & 0x33333333) + ((w >>> 2) & 0x33333333);
  return (((w + (w >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Greedy: always run the ready kernel whose step costs least, then the one leaving least live. */
function greedy(st: Stepper, start: State, size: number, inPiece: (k: number) => boolean): State {
  let s = start;
  for (let i = 0; i < size; i++) {
    let best: State | undefined;
    for (const k of st.readyOf(s, inPiece)) {
      const t = st.step(s, k);
      if (!best || t.peak < best.peak || (t.peak === best.peak && (t.live < best.live || (t.live === best.live && k < best.k)))) best = t;
    }
    s = best!;
  }
  return s;
}

function inOrder(st: Stepper, start: State, piece: number[]): State {
  return piece.reduce((s, k) => st.step(s, k), start);
}

/** A binary min-heap of states: lowest peak first, then the one with more kernels run. */
class Frontier {
  private xs: State[] = [];
  get size() {
    return this.xs.length;
  }
  private less = (a: State, b: State) => a.peak < b.peak || (a.peak === b.peak && a.depth > b.depth);
  push(s: State) {
    const xs = this.xs;
    xs.push(s);
    for (let i = xs.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!this.less(xs[i], xs[p])) break;
      [xs[i], xs[p]] = [xs[p], xs[i]];
      i = p;
    }
  }
  pop(): State {
    const xs = this.xs;
    const top = xs[0];
    const last = xs.pop()!;
    if (xs.length) {
      xs[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < xs.length && this.less(xs[l], xs[m])) m = l;
        if (r < xs.length && this.less(xs[r], xs[m])) m = r;
        if (m === i) break;
        [xs[i], xs[m]] = [xs[m], xs[i]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * The exact dynamic program over sets of run kernels (equivalently, their frontier of ready
 * kernels): what follows a set depends on the set alone, so only the lowest-peak way to reach each
 * set is kept. Sets are expanded lowest peak first, so the first complete schedule taken off the
 * frontier is optimal, and sets at or above `budget` (a peak already achieved) are never stored.
 * Returns the optimum below the budget, none (the budget's order is optimal), or stopped when the
 * time or the state limit runs out.
 */
function dynamicProgram(st: Stepper, start: State, size: number, inPiece: (k: number) => boolean, budget: number, deadline: number, counter: { states: number }): { found: State } | { none: true } | { stopped: true } {
  const seen = new SeenSets(st.words);
  const frontier = new Frontier();
  frontier.push(start);
  for (let popped = 0; frontier.size; popped++) {
    const s = frontier.pop();
    if (s.depth === size) return { found: s };
    if (popped % 128 === 0 && (cpuMs() >= deadline || seen.size > MAX_STATES)) return { stopped: true };
    const costs = st.readyOf(s, inPiece).map((k) => [k, ...st.cost(s, k)]).filter(([, peak]) => peak < budget);
    // A kernel whose step costs no more than the peak so far and leaves no more bytes live runs now,
    // and only its branch is kept. Moved to the front of any order from here, it raises no later
    // step: the live bytes it adds (outputs no other writer has started, less the inputs it is the
    // last to read) can only shrink as more kernels run, and a later kernel's step adds no more
    // outputs and saves at least as much by overwriting (it takes the free input saving most, and
    // more kernels run only free more).
    const free = costs.find(([, peak, live]) => peak === s.peak && live <= s.live);
    for (const [k, peak, live] of free ? [free] : costs) {
      if (!seen.lower(st.with(s, k), peak)) continue;
      counter.states++;
      frontier.push({ at: st.keep(st.next), peak, live, depth: s.depth + 1, k, parent: s });
    }
  }
  return { none: true };
}

/** Sets kept at once before the search gives up, whatever the time limit (about 1 GB). */
const MAX_STATES = 4_000_000;

/**
 * Orders the kernels for the lowest peak of live activation memory (SERENITY): the graph is cut at
 * kernels every path goes through, and each piece gets the exact dynamic program. Its budget is the
 * peak of the best of three heuristic orders (the graph's own, onnxruntime's depth-first one, and
 * greedy): only strictly better
 * partial schedules are kept, and since the lowest-peak ones are expanded first, the budget is in
 * effect tightened from below as the search goes (SERENITY's soft budgeting, without guessing).
 * Past the time limit the heuristic order is used and reported as not proven optimal.
 */
export function scheduleMemory(g: Graph, opts: ScheduleOptions = {}): Scheduled {
  const t0 = cpuMs();
  const deadline = t0 + (opts.timeLimitMs ?? DEFAULT_TIME_LIMIT_MS);
  const m = memoryModel(g);
  const n = m.kernels.length;
  const st = new Stepper(m);
  const topo = simulate(m, m.kernels.map((_, k) => k));
  const ort = onnxruntimeOrder(m);
  const cuts = cutPoints(m);
  const pieces: number[][] = [];
  for (let k = 0; k < n; k++) {
    if (cuts[k] || !pieces.length || cuts[k - 1]) pieces.push([]);
    pieces[pieces.length - 1].push(k);
  }
  const counter = { states: 0 };
  let optimal = true;
  const chosen = new Map<number[], number[]>();
  const bySize = [...pieces].sort((a, b) => a.length - b.length);
  // Every piece starts once all kernels before it have run; those before it form its start state.
  for (const [i, piece] of bySize.entries()) {
    if (piece.length === 1) {
      chosen.set(piece, piece);
      continue;
    }
    const bits = new Uint32Array((n + 31) >>> 5);
    for (let k = 0; k < piece[0]; k++) bits[k >>> 5] |= 1 << (k & 31);
    let live = 0;
    for (const b of m.buffers) if (b.producers.some((p) => p < piece[0]) && b.readers.some((r) => r >= piece[0])) live += b.bytes;
    const first = new Set(piece);
    const inPiece = (k: number) => first.has(k);
    st.clear();
    const start: State = { at: st.keep(bits), peak: 0, live, ready: piece.filter((k) => m.preds[k].every((p) => p < piece[0])), depth: 0, k: -1 };
    const candidates = [greedy(st, start, piece.length, inPiece), inOrder(st, start, piece), inOrder(st, start, ort.filter(inPiece))];
    const heuristic = candidates.reduce((a, b) => (b.peak < a.peak ? b : a));
    const pieceDeadline = cpuMs() + (deadline - cpuMs()) / (bySize.length - i);
    const r = dynamicProgram(st, start, piece.length, inPiece, heuristic.peak, pieceDeadline, counter);
    const best = "found" in r ? r.found : heuristic;
    optimal &&= !("stopped" in r);
    chosen.set(piece, orderOf(best, start));
  }
  const order = pieces.flatMap((p) => chosen.get(p)!);
  const { peak, curve } = simulate(m, order);
  return { ...withOrder(g, m, order), schedule: { peakBytes: peak, topoPeakBytes: topo.peak, ortPeakBytes: simulate(m, ort).peak, dpPeakBytes: peak, dpOptimal: optimal, rewrites: [], curve, topoCurve: topo.curve, optimal, pieces: pieces.length, states: counter.states, ms: Math.round(cpuMs() - t0) } };
}

/** The graph with its kernels in `order`; each View or ConcatView follows the last kernel (or graph input) it aliases. */
function withOrder(g: Graph, m: MemoryModel, order: number[]): Graph {
  const have = new Set([...g.inputs, ...[...g.values.values()].filter((v) => v.data).map((v) => v.name)]);
  let pending = g.nodes.filter(isAlias);
  const nodes: Node[] = [];
  const release = () => {
    const ready = pending.filter((a) => a.inputs.every((i) => have.has(i)));
    pending = pending.filter((a) => !ready.includes(a));
    ready.forEach(emit);
  };
  const emit = (n: Node) => {
    nodes.push(n);
    for (const o of n.outputs) have.add(o);
    release();
  };
  release();
  for (const k of order) emit(m.kernels[k]);
  return { ...g, nodes };
}
