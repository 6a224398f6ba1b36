import { add, bin, cst, int, let_, load, mul, set, splat, vlet, vr, vstore, vvar } from "../build.js";
import { mentionsVar, type BinOp, type Expr, type Kernel, type Program, type Stmt } from "../ir.js";
import { vectorizeLanes } from "../vectorize.js";

/**
 * Vectorizes innermost loops the lowerings left scalar (elementwise chains with their inlined
 * producers, a sigmoid's exp, reductions such as a global average pool): a loop over i becomes
 * loops over vectors of `lanes` consecutive i, then of half as many, down to 4, then scalars for
 * what is left. A loop that only accumulates into a float outside it (acc = acc + f(i), or max,
 * min) keeps a vector of partial results, folded into acc after the loop (summing in another order,
 * as any vectorized reduction does): where the dialect has slides, by halving the vector in
 * registers (log2(lanes) slides and ops, then lane 0 read back through a small stack array); else
 * through memory, one lane at a time. A loop is left alone when its body has no vector form (see
 * vectorizeLanes: other types, a store that is not consecutive, a read of what it writes elsewhere).
 */
export function vectorizeLoops(p: Program, lanes: number, slides = false): Program {
  if (lanes < 2) return p;
  // A grid's loops hold barriers and read group memory across work-items: it keeps its own shape.
  return { ...p, kernels: p.kernels.map((k): Kernel => (k.body.some((s) => s.k === "grid") ? k : { ...k, body: stmts(k.body, lanes, slides) })) };
}

const hasLoop = (ss: Stmt[]): boolean =>
  ss.some((s) => s.k === "for" || (s.k === "block" && hasLoop(s.body)) || (s.k === "if" && hasLoop([...s.then, ...(s.else ?? [])])));

const REDUCE: Partial<Record<BinOp, number>> = { "+": 0, max: -Infinity, min: Infinity };

/** A body's statements, seen through one block around them all. */
const unblocked = (body: Stmt[]): Stmt[] => (body.length === 1 && body[0].k === "block" ? body[0].body : body);

/** Scalar lets, then one last statement: the shape of a fused epilogue's store (its value bound, then used). */
function letsThen(body: Stmt[]): { lets: Stmt[]; last: Stmt } | undefined {
  const ss = unblocked(body);
  const lets = ss.slice(0, -1);
  if (!ss.length || !lets.every((l) => l.k === "let" && !l.lanes)) return undefined;
  return { lets, last: ss[ss.length - 1] };
}

/** `acc = acc ⊕ e` with e not reading acc, after lets of its own: the reduction form of a loop body. */
function reduction(body: Stmt[]): { acc: string; op: BinOp; e: Expr; lets: Stmt[] } | undefined {
  const parts = letsThen(body);
  const s = parts?.last;
  if (s?.k !== "set" || s.val.k !== "bin" || REDUCE[s.val.op] === undefined || s.val.dtype !== "float32") return undefined;
  const { a, b, op } = s.val;
  if (a.k !== "var" || a.name !== s.name || mentionsVar(b, s.name) || mentionsVar(parts!.lets, s.name)) return undefined;
  return { acc: s.name, op, e: b, lets: parts!.lets };
}

/**
 * A loop that folds into one element of memory, buf[i] = buf[i] ⊕ e with i the same in every
 * iteration (a stitched pool's epilogue folding a row of a tile into its partial result), as a loop
 * folding into a local that is stored once after it: the reduction form, which vectorizes.
 */
function foldIntoLocal(s: Extract<Stmt, { k: "for" }>): Stmt[] | undefined {
  const parts = letsThen(s.body);
  const st = parts?.last;
  if (st?.k !== "store" || st.lanes || st.val.k !== "bin" || REDUCE[st.val.op] === undefined || st.val.dtype !== "float32") return undefined;
  const { a: self, b: e, op } = st.val;
  const inBody = [s.v, ...parts!.lets.map((l) => (l as { name: string }).name)];
  if (self.k !== "load" || self.buf !== st.buf || JSON.stringify(self.idx) !== JSON.stringify(st.idx) || inBody.some((v) => mentionsVar(st.idx, v))) return undefined;
  if (JSON.stringify([parts!.lets, e]).includes(`"buf":"${st.buf}"`)) return undefined;
  const acc = `${s.v}_acc`;
  return [{
    k: "block",
    body: [
      let_(acc, "float32", cst(REDUCE[op]!)),
      { ...s, body: [{ k: "block", body: [...parts!.lets, set(acc, bin(op, vr(acc, "float32"), e))] }] },
      { k: "store", buf: st.buf, idx: st.idx, val: bin(op, self, vr(acc, "float32")) },
    ],
  }];
}

/** Loop `s` from iteration `from` on: vectors of `width` while they fit, halving down to 4, then scalars. */
function split(s: Extract<Stmt, { k: "for" }>, from: number, width: number, slides: boolean): Stmt[] {
  const left = s.n - from;
  if (!left) return [];
  // Iterations past `from` run the body with the loop variable bound by a let.
  const shifted = (v: string, w: number): Expr => add(int(from), w === 1 ? vr(v) : mul(vr(v), int(w)));
  if (width < 4) {
    const t = `${s.v}_t`;
    return [{ k: "for", v: t, n: left, body: [{ k: "block", body: [let_(s.v, "int32", shifted(t, 1)), ...s.body] }] }];
  }
  if (left < width) return split(s, from, width / 2, slides);
  const v = `${s.v}_v${width}`;
  const base = shifted(v, width);
  const red = reduction(s.body);
  let loop: Stmt[] | undefined;
  if (red) {
    const part = vectorizeLanes([...red.lets, let_(`${red.acc}_e`, "float32", red.e)], s.v, base, width);
    const accV = `${red.acc}_v${width}`, tmp = `${red.acc}_l${width}`, l = `${red.acc}_i${width}`;
    if (part)
      loop = [{
        k: "block",
        body: [
          vlet(accV, splat(cst(REDUCE[red.op]!), width), width),
          { k: "for", v, n: Math.floor(left / width), body: [...part, set(accV, bin(red.op, vvar(accV, width), vvar(`${red.acc}_e`, width)))] },
          ...(slides ? halvings(accV, red.op, width) : []),
          { k: "local", name: tmp, dtype: "float32", n: width },
          vstore(tmp, int(0), vvar(accV, width), width),
          slides
            ? set(red.acc, bin(red.op, vr(red.acc, "float32"), load({ buf: tmp, dtype: "float32", shape: [width] }, [int(0)])))
            : { k: "for", v: l, n: width, body: [set(red.acc, bin(red.op, vr(red.acc, "float32"), load({ buf: tmp, dtype: "float32", shape: [width] }, [vr(l)])))] },
        ],
      }];
  } else {
    const vec = vectorizeLanes(s.body, s.v, base, width);
    if (vec) loop = [{ k: "for", v, n: Math.floor(left / width), body: vec, parallel: s.parallel && from === 0, ...(from === 0 && s.work !== undefined && { work: s.work }), ...(from === 0 && s.fixed && { fixed: true }) }];
  }
  if (!loop) return width === 4 ? split(s, from, 2, slides) : split(s, from, width / 2, slides);
  return [...loop, ...split(s, from + Math.floor(left / width) * width, width / 2, slides)];
}

/** Folds vector `v` into its lane 0: v ⊕ v slid by half its lanes, then by a quarter, ... by one. */
const halvings = (v: string, op: BinOp, width: number): Stmt[] =>
  Array.from({ length: Math.log2(width) }, (_, i) => width >> (i + 1)).map((by) =>
    set(v, bin(op, vvar(v, width), { k: "slide", a: vvar(v, width), b: vvar(v, width), by, dtype: "float32", lanes: width })),
  );

/** Statements a body runs per iteration, its loops unrolled. */
const size = (ss: Stmt[]): number =>
  ss.reduce((n, s) => n + (s.k === "for" ? s.n * size(s.body) : s.k === "block" ? size(s.body) : s.k === "if" ? size(s.then) + size(s.else ?? []) : 1), 0);

/**
 * The body with its loops unrolled, when that stays small: each iteration a block binding the
 * variable, where the body reads it (a loop over a broadcast dimension may not: the binding would be unused).
 */
function unrolled(ss: Stmt[]): Stmt[] | undefined {
  if (size(ss) > MAX_UNROLLED) return undefined;
  const go = (xs: Stmt[]): Stmt[] =>
    xs.flatMap((s): Stmt[] =>
      s.k === "for"
        ? Array.from({ length: s.n }, (_, i): Stmt => ({ k: "block", body: [...(mentionsVar(s.body, s.v) ? [let_(s.v, "int32", int(i))] : []), ...go(s.body)] }))
        : s.k === "block" ? [{ ...s, body: go(s.body) }] : s.k === "if" ? [{ ...s, then: go(s.then), else: s.else && go(s.else) }] : [s],
    );
  return go(ss);
}

/** Pooling windows and the like: inner loops up to this many statements are unrolled so the loop around them vectorizes. */
const MAX_UNROLLED = 32;

function stmts(ss: Stmt[], lanes: number, slides: boolean): Stmt[] {
  return ss.flatMap((s): Stmt[] => {
    switch (s.k) {
      case "for": {
        const folded = s.n >= 4 && !hasLoop(s.body) ? foldIntoLocal(s) : undefined;
        if (folded) return stmts(folded, lanes, slides);
        const body = hasLoop(s.body) ? unrolled(s.body) : s.body;
        if (s.n >= 4 && body) {
          const out = split({ ...s, body }, 0, lanes, slides);
          if (out.length !== 1 || out[0].k !== "for" || out[0].v !== `${s.v}_t`) return out;
        }
        return [{ ...s, body: stmts(s.body, lanes, slides) }];
      }
      case "if": return [{ ...s, then: stmts(s.then, lanes, slides), else: s.else && stmts(s.else, lanes, slides) }];
      case "block": return [{ ...s, body: stmts(s.body, lanes, slides) }];
      default: return [s];
    }
  });
}
