import type { Lowering } from "./types.js";

export const NN_LOWERINGS: Record<string, Lowering> = {};
