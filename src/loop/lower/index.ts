import type { At } from "./at.js";
import { DENSE_LOWERINGS } from "./dense.js";
import { ELEMENTWISE_AT, ELEMENTWISE_LOWERINGS } from "./elementwise.js";
import { MOVEMENT_AT, MOVEMENT_LOWERINGS } from "./movement.js";
import { NN_LOWERINGS } from "./nn.js";
import { QUANT_LOWERINGS } from "./quant.js";
import { REDUCE_LOWERINGS } from "./reduce.js";
import { RESIZE_LOWERINGS } from "./resize.js";
import type { Lowering } from "./types.js";

/** Expression forms of the ops fusion may inline (see graph/passes/select-fusion.ts). */
export const AT: Record<string, At> = { ...ELEMENTWISE_AT, ...MOVEMENT_AT };

/** Every op the loop layer can lower, by canonical op type. */
export const LOWERINGS: Record<string, Lowering> = {
  ...ELEMENTWISE_LOWERINGS,
  ...MOVEMENT_LOWERINGS,
  ...NN_LOWERINGS,
  ...REDUCE_LOWERINGS,
  ...QUANT_LOWERINGS,
  ...RESIZE_LOWERINGS,
  ...DENSE_LOWERINGS,
};
