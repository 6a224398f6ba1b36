import type { OpDef } from "./types.js";

export const RESIZE_OPS: Record<string, OpDef> = {};
