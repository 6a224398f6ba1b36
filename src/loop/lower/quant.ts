import type { Lowering } from "./types.js";

export const QUANT_LOWERINGS: Record<string, Lowering> = {};
