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
  /** the CPU's vector shape, for lowerings with a vectorized form; absent: plain loops only */
  cpu?: CpuShape;
  /** lowering for a GPU: the side of the work-group tiles of tiled products; absent: not a GPU */
  gpu?: GpuShape;
  /** registers a constant made at compile time (packed weights) as a weight buffer */
  constant?: (hint: string, t: Tensor) => Ref;
  /** `elems` float32 of scratch memory per thread, one slice per thread at offset THREAD_ID·elems */
  scratch?: (elems: number) => Ref;
  /** `elems` float32 of scratch memory that all threads of the kernel share (a padded copy of an input) */
  shared?: (elems: number) => Ref;
}

export interface GpuShape {
  /** a tiled product's work-groups are tile × tile work-items */
  tile: number;
}

export interface CpuShape {
  /** float32 lanes per vector register */
  lanes: number;
  /** vector registers */
  registers: number;
}

/** Lowers one graph node to the body of one kernel. */
export type Lowering = (c: LowerCtx) => Stmt[];
