import type { DType } from "../../core/dtype.js";
import { fail } from "../../core/diag.js";
import { toNumbers, type Tensor } from "../../core/tensor.js";
import type { Node, Value } from "../ir.js";

export interface TypeShape {
  dtype: DType;
  shape: number[];
}

/**
 * What the graph layer knows about one canonical op.
 * - `infer` gives output dtypes and shapes, or null while an input it needs as a constant is not
 *   folded yet (shape inference and constant folding run to a fixpoint).
 * - `eval` is the reference semantics used by the interpreter and by constant folding; ops without it
 *   are never folded. `shapeOnly` ops (Shape, Size) evaluate from input shapes alone.
 */
export interface OpDef {
  infer(node: Node, ins: (Value | undefined)[]): TypeShape[] | null;
  eval?(node: Node, ins: (Tensor | undefined)[]): Tensor[];
  shapeOnly?: boolean;
  /**
   * Input slots that must be compile-time constants (target shapes, axes, pads, ...). A graph input
   * feeding one is specialized to its value when the value is known (see specializableInputs).
   */
  constInputs?: number[];
}

export const opFail = (n: Node, msg: string): never => fail({ node: n.name, op: n.op, opset: n.opset }, msg);

/** The values of a constant integer input, or null when it is not (yet) a constant. */
export function constInts(v: Value | undefined): number[] | null {
  return v?.data ? toNumbers(v.data) : null;
}

export function shapeOf(n: Node, v: Value | undefined, what = "input"): number[] {
  if (!v?.shape) opFail(n, `${what} has no known shape`);
  return v!.shape!;
}

export function normAxis(n: Node, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= Math.max(rank, 1)) opFail(n, `axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** numpy-style multidirectional broadcasting */
export function broadcastShapes(n: Node, shapes: number[][]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const x = s[s.length - rank + i] ?? 1;
      if (x === 1) continue;
      if (d !== 1 && d !== x) opFail(n, `shapes ${shapes.map((s) => `[${s.join("x")}]`).join(", ")} do not broadcast`);
      d = x;
    }
    out.push(d);
  }
  return out;
}
