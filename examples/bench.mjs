// `make bench`: every DIR/*/model.onnx under the folders given, on the host, on 1 thread and on all
// cores, each against onnxruntime-node in alternating rounds (see `edgec bench --compare-ort`), and
// against its own build without fusion (`--compare-unfused`; not for WebAssembly).
// `--target wasm32` (`make bench-wasm`): the WebAssembly build in Node on one thread against
// onnxruntime-web's wasm backend, with the size of the package's download (and of model.wasm plus weights.bin) against the model file.
// Progress goes to stderr; the Markdown table and the geometric mean of edgec/onnxruntime per thread
// count go to stdout. Exits 1 when any model fails or its outputs differ from onnxruntime's.
// Artifacts are cached in build/bench-artifacts/<target>/<model> (rebuilt only when the model or edgec changes).
import { existsSync, readdirSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { benchModel, formatBenchTable, modelLabel, roundRange } from "../dist/driver/bench.js";
import { loadTarget } from "../dist/target/load.js";

const args = process.argv.slice(2);
const at = args.indexOf("--target");
const targetName = at >= 0 ? args.splice(at, 2)[1] : "host";
const dirs = args;
if (!dirs.length || !targetName) {
  console.error("usage: node examples/bench.mjs [--target T] DIR...   (benchmarks every DIR/*/model.onnx)");
  process.exit(2);
}
const models = dirs.flatMap((d) => readdirSync(d).sort().map((m) => join(d, m, "model.onnx")).filter((f) => existsSync(f)));
const target = loadTarget(targetName);
const threadCounts = [...new Set([1, target.cores || cpus().length])];

const results = [];
const failed = [];
for (const model of models) {
  for (const threads of threadCounts) {
    const label = `${modelLabel(model)}, ${threads} thread${threads === 1 ? "" : "s"}`;
    try {
      const r = await benchModel(model, { target, threads, runs: 40, warmup: 3, compareOrt: true, compareUnfused: target.backend !== "wasm", buildDir: join("build", "bench-artifacts", target.name, modelLabel(model)) });
      results.push(r);
      console.error(`${label}: edgec ${r.medianMs.toFixed(3)} ms${r.unfusedMedianMs === undefined ? "" : ` (unfused ${r.unfusedMedianMs.toFixed(3)} ms)`}, ${r.ortEngine} ${r.ortMedianMs.toFixed(3)} ms, ratio ${r.ratio.toFixed(2)} (rounds ${roundRange(r.roundRatios)})${r.agree ? "" : ", OUTPUTS DIFFER"}`);
      if (!r.agree) failed.push(`${label}: edgec's outputs differ from onnxruntime's`);
    } catch (e) {
      console.error(`${label}: ${e.message}`);
      failed.push(`${label}: ${e.message}`);
    }
  }
}
console.log(formatBenchTable(results));
if (failed.length) {
  console.error(`\n${failed.length} failed:\n${failed.join("\n")}`);
  process.exitCode = 1;
}
