import type { OpDef } from "./types.js";

export const NN_OPS: Record<string, OpDef> = {};
