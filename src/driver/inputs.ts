import { EdgecError } from "../core/diag.js";
import { shapeStr, type Tensor } from "../core/tensor.js";
import { importOnnx, modelInputs } from "../frontend/onnx/import.js";
import { specializableInputs } from "../graph/specialize.js";

export interface Specialized {
  /** every input's shape, from the given tensors unless pinned */
  inputShapes: Record<string, number[]>;
  /** inputs compiled in as constants (shape operands given as model inputs) */
  bind: Record<string, Tensor>;
  /** the tensors the built artifact still takes */
  runInputs: Record<string, Tensor>;
}

/**
 * Prepares a build for concrete input tensors (`run MODEL`, `verify`): checks them against the
 * model's declared inputs, takes unpinned dims from them, and specializes inputs that ops need as
 * constants to their given values.
 */
export function specializeInputs(model: string, given: Record<string, Tensor>, pinned: Record<string, number[]> = {}): Specialized {
  const declared = modelInputs(model);
  const missing = declared.filter((d) => !given[d.name]);
  if (missing.length) {
    const all = declared.map((d) => `'${d.name}'${d.dims ? ` [${d.dims.join("x")}]` : ""}`).join(", ");
    throw new EdgecError(`missing input ${missing.map((d) => `'${d.name}'`).join(", ")} (the model's inputs are ${all})`);
  }
  const extra = Object.keys(given).filter((k) => !declared.some((d) => d.name === k));
  if (extra.length) throw new EdgecError(`unknown input ${extra.map((e) => `'${e}'`).join(", ")} (the model's inputs are ${declared.map((d) => `'${d.name}'`).join(", ")})`);
  const inputShapes: Record<string, number[]> = {};
  for (const { name, dims } of declared) {
    const t = given[name];
    if (dims && (dims.length !== t.shape.length || dims.some((d, i) => typeof d === "number" && d !== t.shape[i]))) {
      throw new EdgecError(`input '${name}' has shape ${shapeStr(t.shape)}, the model expects [${dims.join("x")}]`);
    }
    inputShapes[name] = pinned[name] ?? t.shape;
  }
  const bind: Record<string, Tensor> = {};
  for (const name of specializableInputs(importOnnx(model, { inputShapes }).graph)) bind[name] = given[name];
  const runInputs = Object.fromEntries(Object.entries(given).filter(([k]) => !bind[k]));
  for (const k of Object.keys(bind)) delete inputShapes[k];
  return { inputShapes, bind, runInputs };
}
