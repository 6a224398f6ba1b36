import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { conformanceOne, testFolders, type ConformanceResult } from "../../src/driver/conformance.js";
import type { PipelineOptions } from "../../src/driver/pipeline.js";
import { loadTarget } from "../../src/target/load.js";

export const CORPUS = fileURLToPath(new URL("../../../shared/corpus", import.meta.url));

/**
 * The whole corpus through `edgec verify` semantics for one target: every onnx-node and
 * pytorch-converted test and every whole model, each built, run and compared with its reference.
 */
export function conformanceSuite(targetName: string, opts: { sanitize?: boolean; place?: PipelineOptions["place"]; label?: string } = {}) {
  const target = loadTarget(targetName);
  const folders = ["onnx-node", "onnx-pytorch-converted", "models"].map((f) => join(CORPUS, f));
  if (!folders.every(existsSync)) throw new Error(`corpus not found at ${CORPUS}`);
  const results: ConformanceResult[] = [];
  for (const folder of folders) {
    describe(`${opts.label ?? targetName}: ${folder.split("/").pop()}`, () => {
      for (const dir of testFolders([folder])) {
        const name = dir.split("/").pop()!;
        it.concurrent(name, async () => {
          const r = await conformanceOne(dir, { target, sanitize: opts.sanitize, place: opts.place });
          results.push(r);
          expect(r.status, r.reason).toBe("pass");
        });
      }
    });
  }
  it(`${opts.label ?? targetName}: at least 95% of the conformance tests pass`, () => {
    const passed = results.filter((r) => r.status === "pass").length;
    expect(results.length).toBeGreaterThan(200);
    expect(passed / results.length).toBeGreaterThanOrEqual(0.95);
  });
}
