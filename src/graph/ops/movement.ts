import type { OpDef } from "./types.js";

export const MOVEMENT_OPS: Record<string, OpDef> = {};
