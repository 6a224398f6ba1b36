import type { Lowering } from "./types.js";

export const MOVEMENT_LOWERINGS: Record<string, Lowering> = {};
