import type { OpDef } from "./types.js";

export const REDUCE_OPS: Record<string, OpDef> = {};
