import { readFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import { dtypeFromOnnx, ONNX_TYPE_NAMES } from "../../core/dtype.js";
import { EdgecError } from "../../core/diag.js";
import { fromNumbers, type Tensor } from "../../core/tensor.js";
import type { AttrValue, Graph, Node, Value } from "../../graph/ir.js";
import { OPS } from "../../graph/ops/index.js";
import { NORMALIZE } from "./normalize.js";
import { big, num, onnx, type OnnxNs } from "./proto.js";
import { tensorFromProto } from "./tensor-io.js";

export const MAX_IR_VERSION = 13;
export const OPSET_RANGE: [number, number] = [1, 25];

export interface ImportOptions {
  /** Pins symbolic or unknown input dims: name → full shape. */
  inputShapes?: Record<string, number[]>;
  /** Inputs turned into constants with these values (specialization; see graph/specialize). */
  bind?: Record<string, Tensor>;
}

export interface Imported {
  graph: Graph;
  opset: number;
  irVersion: number;
  producer: string;
}

/**
 * ModelProto → graph IR. Validates the container (IR version, opset imports), decodes every
 * initializer encoding, turns Constant nodes into constant values, drops initializers from the input
 * list, pins symbolic dims and normalizes each node to its canonical op. Every unsupported op is
 * collected and reported in one error.
 */
export function importOnnx(file: string, opts: ImportOptions = {}): Imported {
  const model = decodeModel(file);
  if (!model.graph || (!model.graph.node?.length && !model.graph.output?.length)) {
    throw new EdgecError(`${file}: not a valid ONNX model (it has no graph)`);
  }
  const irVersion = num(model.irVersion);
  if (irVersion < 1 || irVersion > MAX_IR_VERSION) {
    throw new EdgecError(`${file}: ONNX IR version ${irVersion} is not supported (edgec reads IR versions 1 to ${MAX_IR_VERSION})`);
  }
  if (irVersion >= 3 && !model.opsetImport?.length) {
    throw new EdgecError(`${file}: not a valid ONNX model (IR version ${irVersion} requires opset imports and it has none); the file may be truncated`);
  }
  const dflt = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
  const opset = dflt ? num(dflt.version) : 1;
  if (opset < OPSET_RANGE[0] || opset > OPSET_RANGE[1]) {
    throw new EdgecError(`${file}: default-domain opset ${opset} is not supported (edgec reads opsets ${OPSET_RANGE[0]} to ${OPSET_RANGE[1]})`);
  }
  const graph = buildGraph(model.graph, file, opset, opts);
  return { graph, opset, irVersion, producer: `${model.producerName ?? ""} ${model.producerVersion ?? ""}`.trim() };
}

function decodeModel(file: string): OnnxNs.ModelProto {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch {
    throw new EdgecError(`${file}: cannot read the model file`);
  }
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new EdgecError(`${file}: not a valid ONNX model (protobuf decoding failed: ${(e as Error).message.split("\n")[0]}); the file may be truncated or not ONNX`);
  }
}

function buildGraph(g: OnnxNs.IGraphProto, file: string, opset: number, opts: ImportOptions): Graph {
  const dir = dirname(file);
  const where = basename(file);
  const values = new Map<string, Value>();
  let fresh = 0;
  const addConst = (v: Omit<Value, "name">, hint: string) => {
    let name = hint;
    while (values.has(name)) name = `${hint}_${++fresh}`;
    values.set(name, { name, ...v });
    return name;
  };

  for (const init of g.initializer ?? []) {
    const t = tensorFromProto(init, where, dir);
    values.set(init.name!, { name: init.name!, dtype: t.dtype, shape: t.shape, data: t });
  }

  const inputs: string[] = [];
  const unpinned: string[] = [];
  for (const vi of g.input ?? []) {
    if (values.has(vi.name!)) continue;
    const tt = vi.type?.tensorType;
    const code = tt?.elemType ?? 0;
    const dtype = dtypeFromOnnx(code);
    if (!dtype) throw new EdgecError(`${where}: input '${vi.name}' has type ${ONNX_TYPE_NAMES[code] ?? code}, which edgec does not support`);
    const dims = (tt?.shape?.dim ?? []).map((d) => (d.dimValue != null && num(d.dimValue) > 0 ? num(d.dimValue) : d.dimParam || "?"));
    const bound = opts.bind?.[vi.name!];
    if (bound) {
      if (bound.dtype !== dtype) throw new EdgecError(`${where}: input '${vi.name}' is ${dtype}, the value given for it is ${bound.dtype}`);
      values.set(vi.name!, { name: vi.name!, dtype, shape: bound.shape, data: bound });
      continue;
    }
    const pinned = opts.inputShapes?.[vi.name!];
    let shape: number[] | undefined;
    if (pinned) {
      if (tt?.shape && pinned.length !== dims.length) {
        throw new EdgecError(`${where}: --input-shape ${vi.name}=${pinned.join("x")} has rank ${pinned.length}, the model's input has rank ${dims.length} [${dims.join("x")}]`);
      }
      dims.forEach((d, i) => {
        if (typeof d === "number" && d !== pinned[i]) {
          throw new EdgecError(`${where}: --input-shape ${vi.name}=${pinned.join("x")} does not match the model's fixed shape [${dims.join("x")}] at dim ${i}`);
        }
      });
      shape = pinned;
    } else if (dims.every((d) => typeof d === "number") && tt?.shape) shape = dims as number[];
    else unpinned.push(`'${vi.name}' [${dims.join("x")}]`);
    values.set(vi.name!, { name: vi.name!, dtype, shape });
    inputs.push(vi.name!);
  }
  if (unpinned.length) {
    throw new EdgecError(`${where}: input ${unpinned.join(", ")} has symbolic or unknown dims; pin them with --input-shape NAME=1x3x224x224`);
  }
  for (const name of Object.keys(opts.inputShapes ?? {})) {
    if (!inputs.includes(name) && !opts.bind?.[name]) throw new EdgecError(`${where}: --input-shape names '${name}', but the model's inputs are ${inputs.map((i) => `'${i}'`).join(", ")}`);
  }

  const nodes: Node[] = [];
  const unsupported: string[] = [];
  (g.node ?? []).forEach((p, idx) => {
    const name = p.name || `${p.opType}_${idx}`;
    const domain = p.domain && p.domain !== "ai.onnx" ? p.domain : "";
    const attrs: Record<string, AttrValue> = {};
    for (const a of p.attribute ?? []) attrs[a.name!] = attrValue(a, where, dir);
    const raw: Node = { name, op: p.opType!, opset, inputs: [...(p.input ?? [])], outputs: [...(p.output ?? [])], attrs };
    if (domain) {
      unsupported.push(`${p.opType} (domain ${domain}) at node '${name}'`);
      return;
    }
    if (raw.op === "Constant") {
      const t = constantValue(raw, p, where);
      values.set(raw.outputs[0], { name: raw.outputs[0], dtype: t.dtype, shape: t.shape, data: t });
      return;
    }
    const canonical = NORMALIZE[raw.op] ? NORMALIZE[raw.op](raw, addConst) : raw;
    if (!OPS[canonical.op]) {
      unsupported.push(`${raw.op} (opset ${opset}) at node '${name}'`);
      return;
    }
    for (const o of canonical.outputs) if (o && !values.has(o)) values.set(o, { name: o, dtype: "float32" });
    nodes.push(canonical);
  });
  if (unsupported.length) {
    throw new EdgecError(`${where}: ${unsupported.length} unsupported op${unsupported.length > 1 ? "s" : ""}: ${unsupported.join("; ")}`, 2, unsupported);
  }
  const outputs = (g.output ?? []).map((o) => o.name!);
  for (const o of outputs) {
    if (!values.has(o)) throw new EdgecError(`${where}: graph output '${o}' is produced by no node`);
  }
  for (const n of nodes) {
    for (const i of n.inputs) {
      if (i && !values.has(i)) throw new EdgecError(`${where}: node '${n.name}' (${n.op}) reads '${i}', which no node, input or initializer defines`);
    }
  }
  return { name: g.name || "model", values, nodes, inputs, outputs, source: where };
}

function attrValue(a: OnnxNs.IAttributeProto, where: string, dir: string): AttrValue {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case T.FLOAT: return a.f ?? 0;
    case T.INT: return num(a.i);
    case T.STRING: return Buffer.from(a.s ?? []).toString("utf8");
    case T.FLOATS: return [...(a.floats ?? [])];
    case T.INTS: return (a.ints ?? []).map(num);
    case T.STRINGS: return (a.strings ?? []).map((s) => Buffer.from(s).toString("utf8"));
    case T.TENSOR: return tensorFromProto(a.t!, where, dir);
    default:
      // Graph-valued attributes (If/Loop bodies) have no canonical op yet; the op check reports the node.
      return "";
  }
}

/** int64 values come from the proto itself: attribute ints pass through doubles, which would round INT64_MAX. */
function constantValue(n: Node, p: OnnxNs.INodeProto, where: string): Tensor {
  const a = n.attrs;
  const proto = (key: string) => (p.attribute ?? []).find((x) => x.name === key);
  if (a.value && typeof a.value === "object" && !Array.isArray(a.value)) return a.value;
  if (typeof a.value_float === "number") return fromNumbers("float32", [], [a.value_float]);
  if (Array.isArray(a.value_floats)) return fromNumbers("float32", [a.value_floats.length], a.value_floats as number[]);
  const vi = proto("value_int"), vis = proto("value_ints");
  if (vi) return { dtype: "int64", shape: [], data: BigInt64Array.of(big(vi.i)) };
  if (vis) return { dtype: "int64", shape: [vis.ints?.length ?? 0], data: BigInt64Array.from((vis.ints ?? []).map(big)) };
  throw new EdgecError(`${where}: Constant node '${n.name}' has no value edgec can read (sparse and string constants are unsupported)`);
}

/** The model's real inputs (initializers excluded) with their declared dims, symbolic ones as names; no dims when it declares no shape. */
export function modelInputs(file: string): { name: string; dims?: (number | string)[] }[] {
  const model = decodeModel(file);
  const inits = new Set((model.graph?.initializer ?? []).map((t) => t.name));
  return (model.graph?.input ?? [])
    .filter((vi) => !inits.has(vi.name))
    .map((vi) => ({
      name: vi.name!,
      dims: vi.type?.tensorType?.shape?.dim?.map((d) => (d.dimValue != null && num(d.dimValue) > 0 ? num(d.dimValue) : d.dimParam || "?")),
    }));
}

/** The op types a model's graph uses, in first-use order, without importing it. */
export function modelOpTypes(file: string): string[] {
  return [...new Set((decodeModel(file).graph?.node ?? []).map((n) => n.opType ?? "?"))];
}
