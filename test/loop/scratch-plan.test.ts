import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { DTYPES } from "../../src/core/dtype.js";
import { numel } from "../../src/core/tensor.js";
import { compileModel } from "../../src/driver/pipeline.js";
import { lowerGraph } from "../../src/loop/lower-graph.js";
import type { Program } from "../../src/loop/ir.js";
import { loadTarget } from "../../src/target/load.js";

/**
 * Kernel scratch (packing panels, padded copies, maps pooled in cache, per-thread partial results)
 * is planned with the tensors: each kernel's scratch lives while the kernel runs, in memory no
 * tensor live then uses, instead of a region after the arena that every kernel shares.
 */
const MODELS = join(fileURLToPath(new URL("../../..", import.meta.url)), "shared", "corpus", "models");

type Span = [number, number];
const bytes = (p: Program, name: string) => {
  const b = p.buffers.get(name)!;
  return numel(b.shape) * DTYPES[b.dtype].bytes;
};

describe("scratch in the memory plan", () => {
  for (const [model, target] of [
    ["squeezenet1_1_c10_64", "host"],
    ["squeezenet1_1_c10_64", "rpi4"],
    // dscnn_kws on host, its convolutions in place (conv-in-place), comes to 65,536 bytes either way.
    ["dscnn_kws", "rpi4"],
    ["tiny_transformer_encoder", "host"],
    ["mobilenet_v2_w035_c10_96", "rpi4"],
  ]) {
    it(`${model} on ${target}: no kernel's scratch overlaps a tensor live while it runs, and the arena is smaller than with scratch after it`, () => {
      const c = compileModel(join(MODELS, model, "model.onnx"), { target: loadTarget(target) });
      const p = c.program;
      // Steps each arena buffer is live, from the kernels that name it; a Concat's buffer from its slices' writers on.
      const life = new Map<string, Span>();
      const touch = (name: string, t: number) => {
        const l = life.get(name);
        life.set(name, l ? [Math.min(l[0], t), Math.max(l[1], t)] : [t, t]);
      };
      p.kernels.forEach((k, t) => k.params.forEach((n) => touch(n, t)));
      const bufferOf = new Map([...p.buffers.values()].map((b) => [b.value, b.name]));
      for (const n of c.graph.nodes.filter((n) => n.op === "ConcatView")) {
        const out = bufferOf.get(n.outputs[0])!;
        for (const i of n.inputs) for (const t of life.get(bufferOf.get(i)!) ?? []) touch(out, t);
      }
      const arena = [...p.buffers.values()].filter((b) => b.kind === "arena");
      const scratch = arena.filter((b) => b.name.startsWith("scratch"));
      expect(scratch.length).toBeGreaterThan(0);
      for (const s of scratch) {
        const [t, last] = life.get(s.name)!;
        expect(last, `${s.name} is one kernel's`).toBe(t);
        const at: Span = [s.offset!, s.offset! + bytes(p, s.name)];
        expect(at[1]).toBeLessThanOrEqual(p.arenaBytes);
        for (const v of arena) {
          const l = life.get(v.name);
          if (v === s || !l || l[1] < t || l[0] > t) continue;
          const vAt: Span = [v.offset!, v.offset! + bytes(p, v.name)];
          expect(vAt[1] <= at[0] || at[1] <= vAt[0], `${s.name} overlaps ${v.name}, live at kernel ${p.kernels[t].name}`).toBe(true);
        }
      }
      const t = loadTarget(target);
      const after = lowerGraph(c.graph, { cpu: { lanes: t.vectorBytes / 4, registers: t.vectorRegisters, threads: t.cores }, scratch: "after" });
      expect(p.arenaBytes).toBeLessThan(after.arenaBytes);
    });
  }
});
