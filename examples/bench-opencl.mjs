// `make bench-opencl`: every DIR/*/model.onnx under the folders given, built twice for this machine:
// edgec's C backend (target host) and its OpenCL backend (target opencl, run through whatever OpenCL
// platform is installed: here PoCL, which runs the kernels on the CPU). Both on all cores, median of
// many runs; the OpenCL outputs are also checked against onnxruntime-node. Prints a Markdown table
// whose device column says what ran the kernels. Exits 1 when a model fails or its outputs differ.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { benchModel, modelLabel } from "../dist/driver/bench.js";
import { loadTarget } from "../dist/target/load.js";

const dirs = process.argv.slice(2);
if (!dirs.length) {
  console.error("usage: node examples/bench-opencl.mjs DIR...   (benchmarks every DIR/*/model.onnx)");
  process.exit(2);
}
const models = dirs.flatMap((d) => readdirSync(d).sort().map((m) => join(d, m, "model.onnx")).filter((f) => existsSync(f)));
const [host, opencl] = [loadTarget("host"), loadTarget("opencl")];
const rows = [];
const failed = [];
let device = "";
for (const model of models) {
  const label = modelLabel(model);
  try {
    const c = await benchModel(model, { target: host, runs: 40, warmup: 3, compareOrt: false, buildDir: join("build", "bench-opencl", `${label}-c`) });
    const cl = await benchModel(model, { target: opencl, runs: 40, warmup: 3, compareOrt: true, buildDir: join("build", "bench-opencl", `${label}-cl`) });
    device = cl.device ?? "unknown";
    rows.push(`| ${label} | ${c.medianMs.toFixed(3)} | ${cl.medianMs.toFixed(3)} | ${(cl.medianMs / c.medianMs).toFixed(2)} | ${cl.agree ? "yes" : "NO"} |`);
    console.error(`${label}: C ${c.medianMs.toFixed(3)} ms, OpenCL ${cl.medianMs.toFixed(3)} ms${cl.agree ? "" : ", OpenCL OUTPUTS DIFFER from onnxruntime"}`);
    if (!cl.agree) failed.push(`${label}: the OpenCL outputs differ from onnxruntime's`);
  } catch (e) {
    console.error(`${label}: ${e.message}`);
    failed.push(`${label}: ${e.message}`);
  }
}
console.log(`OpenCL device: ${device}${device.endsWith("(not a GPU)") ? " -- a CPU-emulated GPU: these are not GPU latencies" : ""}\n`);
console.log("| model | edgec C (ms) | edgec OpenCL (ms) | OpenCL / C | OpenCL agrees with onnxruntime |");
console.log("|---|---|---|---|---|");
console.log(rows.join("\n"));
if (failed.length) {
  console.error(`\n${failed.length} failed:\n${failed.join("\n")}`);
  process.exitCode = 1;
}
