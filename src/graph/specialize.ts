import type { Graph } from "./ir.js";
import { OPS } from "./ops/index.js";

/**
 * Graph inputs that some op needs as a compile-time constant (a Reshape's target shape fed as a
 * model input, as the ONNX backend tests do). edgec generates static-shape code, so `run` and
 * `verify` specialize the artifact to the values of these inputs; the artifact no longer takes them.
 */
export function specializableInputs(g: Graph): string[] {
  const inputs = new Set(g.inputs);
  const found = new Set<string>();
  for (const n of g.nodes) {
    for (const slot of OPS[n.op]?.constInputs ?? []) {
      const v = n.inputs[slot];
      if (v && inputs.has(v)) found.add(v);
    }
  }
  return g.inputs.filter((i) => found.has(i));
}
