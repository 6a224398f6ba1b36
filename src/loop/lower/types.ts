import type { Tensor } from "../../core/tensor.js";
import type { Node } from "../../graph/ir.js";
import type { Ref, Names } from "../build.js";
import type { Stmt } from "../ir.js";

/** A lowering's view of one node: its input and output tensors, constant contents where known. */
export interface LowerCtx {
  node: Node;
  ins: ((Ref & { data?: Tensor }) | undefined)[];
  outs: Ref[];
  names: Names;
}

/** Lowers one graph node to the body of one kernel. */
export type Lowering = (c: LowerCtx) => Stmt[];
