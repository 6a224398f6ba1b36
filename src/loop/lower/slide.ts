import { add, int, vload, vlet, vvar, type Names } from "../build.js";
import type { Expr, Stmt } from "../ir.js";

/** idx as P + t, t the sum of the constants added last (base + (Q − L) + 5: base and Q − L + 5). */
function split(idx: Expr): [Expr, number] {
  if (idx.k !== "bin" || idx.op !== "+" || idx.b.k !== "const") return [idx, 0];
  const [P, t] = split(idx.a);
  return [P, t + Number(idx.b.v)];
}

/**
 * Within each block of `ss` (one vector of a window op's outputs), the unit-stride vector loads of
 * `buf` at constant offsets t from one address P become loads of whole vectors at P + a·L, once
 * each, and slides between neighbours: tap t is lanes t mod L.. of the vectors a = ⌊t/L⌋ and a + 1
 * end to end. A 16-lane load at an offset that is not a multiple of 16 spans two cache lines;
 * MNASNet's 5×5 depthwise layers on 7×7 maps made 23 of them per vector and ran 1.39× slower than
 * with 4 loads and 23 slides. The last vector loaded reaches up to L − 1 elements past the last one
 * a tap reads: `buf` must have them.
 */
export function slideTaps(ss: Stmt[], buf: string, names: Names): Stmt[] {
  return ss.map((s): Stmt => {
    if (s.k === "for") return { ...s, body: slideTaps(s.body, buf, names) };
    if (s.k !== "block") return s;
    const chunks = new Map<string, string>(), lets: Stmt[] = [];
    const chunk = (P: Expr, a: number, L: number): Expr => {
      const key = `${JSON.stringify(P)}@${a}x${L}`;
      let name = chunks.get(key);
      if (!name) {
        name = names.next("run");
        chunks.set(key, name);
        lets.push(vlet(name, vload(buf, add(P, int(a * L)), L), L));
      }
      return vvar(name, L);
    };
    const ex = (e: Expr): Expr => {
      switch (e.k) {
        case "load": {
          if (e.buf !== buf || !e.lanes || e.stride) return e;
          const [P, t] = split(e.idx);
          const L = e.lanes, a = Math.floor(t / L), r = t - a * L;
          return r === 0 ? chunk(P, a, L) : { k: "slide", a: chunk(P, a, L), b: chunk(P, a + 1, L), by: r, dtype: "float32", lanes: L };
        }
        case "bin": case "slide": return { ...e, a: ex(e.a), b: ex(e.b) };
        case "un": case "cast": case "splat": return { ...e, a: ex(e.a) } as Expr;
        case "select": return { ...e, c: ex(e.c), a: ex(e.a), b: ex(e.b) };
        default: return e;
      }
    };
    const body = s.body.map((x): Stmt => (x.k === "let" || x.k === "set" ? { ...x, val: ex(x.val) } : x.k === "store" ? { ...x, val: ex(x.val) } : x));
    return { k: "block", body: [...lets, ...body] };
  });
}
