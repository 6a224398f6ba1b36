import { intRange, isFloat, type DType } from "../../core/dtype.js";
import { toNumbers } from "../../core/tensor.js";
import { clampsCoord, filter, originalCoord, resizePlan, tapWeight, type Arith, type AxisPlan, type ResizePlan } from "../../graph/ops/resize.js";
import { opFail } from "../../graph/ops/types.js";
import {
  add, cast, cst, div, gt, int, le, let_, load, lt, max, min, mul, or, select, set, store, sub, un, vr,
} from "../build.js";
import type { Expr, Stmt } from "../ir.js";
import type { Lowering } from "./types.js";

/**
 * Resize: a loop nest over the output. At each resampled axis's loop level the input coordinate
 * x_original is computed once in float32 from the loop variable (the scales and sizes are compile-time
 * constants, folded into the formula). Nearest turns it into one clamped input index. Linear and cubic
 * run a small inner loop nest over the filter taps of every resampled axis (2 for linear, 4 for cubic,
 * more with antialias when downscaling): each tap's weight is the filter at its distance from
 * x_original, its index is clamped to the input (edge values repeat), and the weighted values are
 * summed, divided by the summed weights when antialias or exclude_outside make the weights need
 * normalizing. Axes whose mapping is the identity are copied straight through. tf_crop_and_resize
 * stores extrapolation_value where x_original falls outside the input.
 */

const F = "float32";
const fc = (v: number) => cst(v, F);
const ARITH: Arith<Expr> = {
  c: fc, add, sub, mul, div, max,
  ifLess: (a, b, orEqual, then, otherwise) => select(orEqual ? le(a, b) : lt(a, b), then, otherwise),
};

/** The input index nearest_mode picks for coordinate xo, clamped to the axis (in float, so the cast is always defined). */
function nearestIndex(p: ResizePlan, xo: Expr, inLen: number): Expr {
  const r =
    p.nearest === "floor" ? un("floor", xo)
    : p.nearest === "ceil" ? un("ceil", xo)
    : p.nearest === "round_prefer_floor" ? un("ceil", sub(xo, fc(0.5)))
    : un("floor", add(xo, fc(0.5)));
  return clampIndex(r, inLen);
}

const clampIndex = (v: Expr, inLen: number) => cast(min(max(v, fc(0)), fc(inLen - 1)), "int32");

/** What one output axis contributes at the innermost level. */
type AxisCode = { kind: "index"; idx: Expr } | { kind: "taps"; x0: string; xo: string; a: AxisPlan };

const lowerResize: Lowering = ({ node, ins, outs: [y], names }) => {
  const [x, roi, scales, sizes] = ins;
  const x_ = x!;
  const coordMode = node.attrs.coordinate_transformation_mode;
  const constant = (r: typeof roi, what: string) => {
    if (r && !r.data) opFail(node, `${what} must be a constant (edgec compiles static shapes)`);
    return r?.data ? toNumbers(r.data) : undefined;
  };
  const p = resizePlan(node, x_.shape, coordMode === "tf_crop_and_resize" ? constant(roi, "roi") : undefined, constant(scales, "scales"), constant(sizes, "sizes"));
  const w: DType = x_.dtype === "float64" ? "float64" : F;
  const rank = y.shape.length;
  const oVars = y.shape.map(() => names.next("i"));
  const codes: AxisCode[] = [];
  const outside: Expr[] = [];

  /** The value of one output element, once every axis has its index or taps. */
  function element(): Stmt[] {
    const oIdx = oVars.map((v) => vr(v));
    const tapAxes = codes.filter((c): c is Extract<AxisCode, { kind: "taps" }> => c.kind === "taps");
    const finish = (v: Expr): Stmt[] => {
      if (!isFloat(y.dtype) && tapAxes.length) {
        // Integer outputs truncate, like the reference's astype; clamping first keeps the cast defined.
        const [lo, hi] = intRange(y.dtype);
        v = min(max(v, cst(lo, w)), cst(hi, w));
      }
      return [store(y, oIdx, outside.length ? select(outside.reduce(or), cst(p.extrapolation, w), v) : v)];
    };
    if (!tapAxes.length) {
      const v = load(x_, codes.map((c) => (c as { idx: Expr }).idx));
      return outside.length ? finish(cast(v, w)) : [store(y, oIdx, v)];
    }

    const normalize = p.antialias || p.excludeOutside;
    const acc = names.next("acc"), wsum = names.next("wsum");
    const idx: Expr[] = codes.map((c) => (c.kind === "index" ? c.idx : int(0)));
    /** Nested tap loops; `weight` is the product of the outer axes' tap weights. */
    const taps = (k: number, weight: Expr | undefined): Stmt[] => {
      if (k === tapAxes.length) {
        const wgt = cast(weight!, w);
        const body = [set(acc, add(vr(acc, w), mul(wgt, cast(load(x_, idx), w))))];
        if (normalize) body.push(set(wsum, add(vr(wsum, w), wgt)));
        return body;
      }
      const { x0, xo, a } = tapAxes[k];
      const f = filter(p, a);
      const t = names.next("t"), j = names.next("j"), dn = names.next("d"), wt = names.next("w");
      const pos = add(vr(x0, F), cast(add(vr(t), int(f.first)), F));
      const dist = sub(vr(j, F), vr(xo, F));
      let weightHere = tapWeight(ARITH, p, vr(dn, F));
      if (p.excludeOutside) weightHere = select(or(lt(vr(j, F), fc(0)), gt(vr(j, F), fc(a.inLen - 1))), fc(0), weightHere);
      idx[codes.indexOf(tapAxes[k])] = clampIndex(vr(j, F), a.inLen);
      const inner = taps(k + 1, vr(wt, F));
      return [{ k: "for", v: t, n: f.count, body: [let_(j, F, pos), let_(dn, F, un("abs", f.stretch === 1 ? dist : mul(dist, fc(f.stretch)))), let_(wt, F, weight ? mul(weight, weightHere) : weightHere), ...inner] }];
    };
    const sum = taps(0, undefined);
    return [
      let_(acc, w, cst(0, w)),
      ...(normalize ? [let_(wsum, w, cst(0, w))] : []),
      ...sum,
      ...finish(normalize ? div(vr(acc, w), vr(wsum, w)) : vr(acc, w)),
    ];
  }

  /** Loop over output axis d, computing that axis's input coordinate at its own level. */
  function level(d: number): Stmt[] {
    if (d === rank) return element();
    const a = p.axes[d];
    const xv = vr(oVars[d]);
    const pre: Stmt[] = [];
    if (a.identity) codes[d] = { kind: "index", idx: xv };
    else {
      const xo = names.next("xo");
      pre.push(let_(xo, F, originalCoord(ARITH, p, a, cast(xv, F))));
      if (p.coord === "tf_crop_and_resize") outside.push(or(lt(vr(xo, F), fc(0)), gt(vr(xo, F), fc(a.inLen - 1))));
      if (p.mode === "nearest") {
        const ix = names.next("ix");
        pre.push(let_(ix, "int32", nearestIndex(p, vr(xo, F), a.inLen)));
        codes[d] = { kind: "index", idx: vr(ix) };
      } else {
        let at = xo;
        if (clampsCoord(p)) {
          at = names.next("xc");
          pre.push(let_(at, F, min(max(vr(xo, F), fc(0)), fc(a.inLen - 1))));
        }
        const x0 = names.next("x0");
        pre.push(let_(x0, F, un("floor", vr(at, F))));
        codes[d] = { kind: "taps", x0, xo: at, a };
      }
    }
    return [{ k: "for", v: oVars[d], n: y.shape[d], body: [...pre, ...level(d + 1)], parallel: d === 0 }];
  }
  return level(0);
};

export const RESIZE_LOWERINGS: Record<string, Lowering> = { Resize: lowerResize };
