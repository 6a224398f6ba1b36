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
  /** `elems` float32 of scratch memory per thread, one slice per thread at offset THREAD_ID·sliceElems(elems) */
  scratch?: (elems: number) => Ref;
  /** `elems` float32 of scratch memory that all threads of the kernel share (a padded copy of an input) */
  shared?: (elems: number) => Ref;
  /**
   * a Conv whose fused epilogue ends in a MaxPool (select-fusion's banded pools): the lowering
   * computes the convolution into scratch (the whole map, or a band of rows at a time), each value
   * through `through(band)` (the elementwise epilogue, then a store into the scratch), and pools
   * it into `y`, the group's output; its own output Ref then only gives the convolution's shape
   */
  pooled?: { node: Node; y: Ref; through: (band: Ref) => Ref };
  /**
   * the epilogue ends in a stitched reduction over the spatial axes (see stitch.ts): each value
   * stored is folded (added, or its max taken) into its channel's partial result, so the stores of
   * a vector of channels at one pixel stay one vector, and those of a vector of pixels fold across
   * its lanes
   */
  stitched?: boolean;
}

/**
 * The stride of per-thread slices of `elems` float32: whole 64-byte cache lines, so that no two
 * threads write one line (MNASNet's 5×5 depthwise convolutions on 7×7 maps, whose slices were 121
 * floats, ran twice as long per channel on each of two threads as on one: the line they shared went
 * back and forth between the cores for every channel).
 */
export const sliceElems = (elems: number): number => Math.ceil(elems / 16) * 16;

export interface GpuShape {
  /** a tiled product's work-groups are tile × tile work-items */
  tile: number;
}

export interface CpuShape {
  /** float32 lanes per vector register */
  lanes: number;
  /** vector registers */
  registers: number;
  /** threads the generated code runs at most (scratch is sized for them); 1 when not given */
  threads?: number;
  /** vectors pack a mask's lanes together and spread them out in an instruction each (AVX-512's compress and expand) */
  compress?: boolean;
}

/** Lowers one graph node to the body of one kernel. */
export type Lowering = (c: LowerCtx) => Stmt[];
