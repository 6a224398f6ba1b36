import type { Lowering } from "./types.js";

export const RESIZE_LOWERINGS: Record<string, Lowering> = {};
