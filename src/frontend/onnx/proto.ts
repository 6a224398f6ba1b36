import { createRequire } from "node:module";
import type { onnx as OnnxNs } from "onnx-proto";

/** onnx-proto is CommonJS; this is the only place that loads it. */
const require = createRequire(import.meta.url);
export const onnx: typeof OnnxNs = require("onnx-proto").onnx;
export type { OnnxNs };

type LongLike = number | { toString(): string; toNumber(): number } | null | undefined;

/** protobufjs decodes int64 fields as Long; convert at the edge, once. */
export const num = (x: LongLike): number => (x == null ? 0 : typeof x === "number" ? x : x.toNumber());
export const big = (x: LongLike): bigint => (x == null ? 0n : BigInt(x.toString()));
