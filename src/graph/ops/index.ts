import { ELEMENTWISE_OPS } from "./elementwise.js";
import { MOVEMENT_OPS } from "./movement.js";
import { NN_OPS } from "./nn.js";
import { QUANT_OPS } from "./quant.js";
import { REDUCE_OPS } from "./reduce.js";
import { RESIZE_OPS } from "./resize.js";
import type { OpDef } from "./types.js";

/** Every canonical op the graph layer knows, by op type. */
export const OPS: Record<string, OpDef> = { ...ELEMENTWISE_OPS, ...MOVEMENT_OPS, ...NN_OPS, ...REDUCE_OPS, ...QUANT_OPS, ...RESIZE_OPS };
