import { fromNumbers, numel, toNumbers } from "../../core/tensor.js";
import { attrNum, consumers, type Graph, type Node, type Value } from "../ir.js";

/**
 * Folds an inference BatchNormalization into the Conv before it: with s = scale / sqrt(var + eps),
 * W'[o] = W[o] * s[o] and B'[o] = (B[o] - mean[o]) * s[o] + bias[o]. Applies when the Conv's
 * weights, bias and the BatchNormalization's parameters are constants, the Conv's result has no
 * other reader, and it is not a graph output.
 */
export function foldBatchnorm(g: Graph): Graph {
  const uses = consumers(g);
  const byOutput = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  const values = new Map(g.values);
  const dropped = new Set<Node>();
  const replaced = new Map<Node, Node>();
  const data = (v: string | undefined) => (v ? g.values.get(v)?.data : undefined);
  for (const bn of g.nodes) {
    if (bn.op !== "BatchNormalization" || bn.outputs.slice(1).some(Boolean)) continue;
    const conv = byOutput.get(bn.inputs[0]);
    if (!conv || conv.op !== "Conv" || uses.get(bn.inputs[0])?.length !== 1 || g.outputs.includes(bn.inputs[0])) continue;
    const w = data(conv.inputs[1]);
    const params = bn.inputs.slice(1, 5).map(data);
    if (!w || w.dtype !== "float32" || params.some((p) => !p) || (conv.inputs[2] && !data(conv.inputs[2]))) continue;
    const [scale, bias, mean, variance] = params.map((p) => toNumbers(p!));
    const eps = attrNum(bn, "epsilon", 1e-5);
    const oc = w.shape[0];
    const s = scale.map((x, o) => x / Math.sqrt(variance[o] + eps));
    const per = numel(w.shape) / oc;
    const wv = toNumbers(w).map((x, i) => x * s[Math.floor(i / per)]);
    const b0 = conv.inputs[2] ? toNumbers(data(conv.inputs[2])!) : new Array<number>(oc).fill(0);
    const bv = b0.map((x, o) => (x - mean[o]) * s[o] + bias[o]);
    const wName = `${conv.name}_bn_weight`;
    const bName = `${conv.name}_bn_bias`;
    const put = (name: string, shape: number[], xs: number[]) =>
      values.set(name, { name, dtype: "float32", shape, data: fromNumbers("float32", shape, Float32Array.from(xs)) } satisfies Value);
    put(wName, w.shape, wv);
    put(bName, [oc], bv);
    replaced.set(conv, { ...conv, inputs: [conv.inputs[0], wName, bName], outputs: [bn.outputs[0]] });
    dropped.add(bn);
  }
  if (!dropped.size) return g;
  const nodes = g.nodes.filter((n) => !dropped.has(n)).map((n) => replaced.get(n) ?? n);
  return { ...g, nodes, values };
}
