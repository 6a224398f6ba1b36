import type { Lowering } from "./types.js";

export const REDUCE_LOWERINGS: Record<string, Lowering> = {};
