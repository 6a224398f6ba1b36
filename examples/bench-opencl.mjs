// `make bench-opencl`: every DIR/*/model.onnx under the folders given, on the `opencl` target (this
// machine's CPU and its OpenCL device: here PoCL, which runs the kernels on the CPU) four ways:
// every kernel on the CPU (edgec's C), every kernel in OpenCL, and the split partition-devices picks
// (--placement auto), once with the target's estimated cost model and once with the kernel and copy
// times edgec profile measures first (--costs). Median of many runs on all cores; the OpenCL and
// split outputs are also checked against onnxruntime-node. Prints a Markdown table whose heading
// says what ran the OpenCL kernels. Exits 1 when a model fails or its outputs differ.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchModel, modelLabel } from "../dist/driver/bench.js";
import { inspectModel } from "../dist/driver/inspect.js";
import { profileModel } from "../dist/driver/profile.js";
import { forDevice } from "../dist/target/device.js";
import { loadTarget } from "../dist/target/load.js";

const dirs = process.argv.slice(2);
if (!dirs.length) {
  console.error("usage: node examples/bench-opencl.mjs DIR...   (benchmarks every DIR/*/model.onnx)");
  process.exit(2);
}
const models = dirs.flatMap((d) => readdirSync(d).sort().map((m) => join(d, m, "model.onnx")).filter((f) => existsSync(f)));
const opencl = loadTarget("opencl");
const ways = (costs) => [
  { label: "cpu", opts: { target: forDevice(opencl, "cpu", true) } },
  { label: "gpu", opts: { target: forDevice(opencl, "gpu", true) } },
  { label: "auto", opts: { target: forDevice(opencl, "auto", true), placement: "auto" } },
  { label: "measured", opts: { target: forDevice(opencl, "auto", true), placement: "auto", costs } },
];
const rows = [];
const failed = [];
let device = "";
for (const model of models) {
  const label = modelLabel(model);
  const ms = [];
  try {
    const costs = await profileModel(model, { target: opencl, runs: 20, buildDir: join("build", "bench-opencl", `${label}-profile`) });
    mkdirSync(join("build", "bench-opencl"), { recursive: true });
    writeFileSync(join("build", "bench-opencl", `${label}-costs.json`), JSON.stringify(costs, null, 2));
    for (const w of ways(costs)) {
      const r = await benchModel(model, { ...w.opts, runs: 40, warmup: 3, compareOrt: w.label !== "cpu", buildDir: join("build", "bench-opencl", `${label}-${w.label}`) });
      device = r.device ?? device;
      ms.push(r.medianMs);
      if (r.agree === false) failed.push(`${label} (--placement ${w.label}): outputs differ from onnxruntime's`);
    }
    const faster = Math.min(ms[0], ms[1]);
    const split = (costs) => inspectModel(model, { target: opencl, costs }).placement;
    const onGpu = (p) => `${p.onGpu.length} of ${p.measured.of}`;
    rows.push(`| ${label} | ${ms.map((x) => x.toFixed(3)).join(" | ")} | ${onGpu(split())} | ${onGpu(split(costs))} | ${(ms[1] / ms[0]).toFixed(2)} | ${(ms[2] / faster).toFixed(2)} | ${(ms[3] / faster).toFixed(2)} |`);
    console.error(`${label}: cpu ${ms[0].toFixed(3)} ms, gpu ${ms[1].toFixed(3)} ms, auto ${ms[2].toFixed(3)} ms, auto with measured costs ${ms[3].toFixed(3)} ms`);
  } catch (e) {
    console.error(`${label}: ${e.message}`);
    failed.push(`${label}: ${e.message}`);
  }
}
console.log(`OpenCL device: ${device}${device.includes("(not a GPU)") ? " -- a CPU-emulated GPU: these are not GPU latencies" : ""}\n`);
console.log("| model | all CPU, C (ms) | all OpenCL (ms) | auto, estimated costs (ms) | auto, measured costs (ms) | on the GPU, estimated | on the GPU, measured | OpenCL / C | auto estimated / faster of the two | auto measured / faster of the two |");
console.log("|---|---|---|---|---|---|---|---|---|---|");
console.log(rows.join("\n"));
if (failed.length) {
  console.error(`\n${failed.length} failed:\n${failed.join("\n")}`);
  process.exitCode = 1;
}
