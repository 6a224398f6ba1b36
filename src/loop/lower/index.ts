import { ELEMENTWISE_LOWERINGS } from "./elementwise.js";
import { MOVEMENT_LOWERINGS } from "./movement.js";
import { NN_LOWERINGS } from "./nn.js";
import { QUANT_LOWERINGS } from "./quant.js";
import { REDUCE_LOWERINGS } from "./reduce.js";
import { RESIZE_LOWERINGS } from "./resize.js";
import type { Lowering } from "./types.js";

/** Every op the loop layer can lower, by canonical op type. */
export const LOWERINGS: Record<string, Lowering> = {
  ...ELEMENTWISE_LOWERINGS,
  ...MOVEMENT_LOWERINGS,
  ...NN_LOWERINGS,
  ...REDUCE_LOWERINGS,
  ...QUANT_LOWERINGS,
  ...RESIZE_LOWERINGS,
};
