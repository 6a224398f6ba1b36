import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Manifest, TensorSpec } from "../../src/core/artifact.js";
import { DTYPES } from "../../src/core/dtype.js";
import { fromNumbers, numel, type Tensor } from "../../src/core/tensor.js";
import { buildSharedArtifact } from "../../src/driver/artifact.js";
import { compileModel } from "../../src/driver/pipeline.js";
import { runArtifact } from "../../src/driver/run.js";
import { ensureSelfTest } from "../../src/driver/selftest.js";
import { compare } from "../../src/driver/verify.js";
import { bytesOf, readTensorFile } from "../../src/frontend/onnx/tensor-io.js";
import { loadTarget } from "../../src/target/load.js";
import { tempDir } from "../helpers/onnx-builder.js";
import { rng } from "../helpers/random-onnx.js";
import { edgecCli, run, runOk } from "../helpers/run.js";

/**
 * Two corpus models of different sizes in one artifact (`edgec build a.onnx b.onnx`): the keyword
 * spotter needs the larger arena, the transformer the larger weights, so a shared arena and a shared
 * weights zone each sized for the larger need are both smaller than the sums. Built under ASan and
 * UBSan; every output is compared with onnxruntime. Spawns the built CLI (dist/ must be built).
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CORPUS = join(ROOT, "..", "shared", "corpus", "models");
const MODELS = [
  { name: "kws", file: join(CORPUS, "dscnn_kws", "model.onnx"), data: join(CORPUS, "dscnn_kws") },
  { name: "tfm", file: join(CORPUS, "tiny_transformer_encoder", "model.onnx"), data: join(CORPUS, "tiny_transformer_encoder") },
];
const SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"];
const TOL = { rtol: 1e-3, atol: 1e-5 };
const target = loadTarget("host");

const work = tempDir("edgec-multi-model-");
afterAll(() => work.cleanup());
const art = join(work.dir, "two");

const edgec = (...args: string[]) => edgecCli(args, { cwd: work.dir, env: { ...process.env, EDGEC_DEBUG: "" } });

async function ortRun(file: string, inputs: Record<string, Tensor>): Promise<Tensor[]> {
  const sess = await ort.InferenceSession.create(file, { logSeverityLevel: 3 });
  const feeds = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, new ort.Tensor("float32", t.data as Float32Array, t.shape)]));
  const res = await sess.run(feeds);
  const outs = sess.outputNames.map((o) => ({ dtype: "float32", shape: res[o].dims.map(Number), data: res[o].data as Float32Array }) as Tensor);
  await sess.release();
  return outs;
}

function expectClose(got: Tensor[], want: Tensor[], what: string) {
  expect(got.length, what).toBe(want.length);
  got.forEach((g, i) => {
    const c = compare(`${what} output ${i}`, g, want[i], TOL);
    expect(c.pass, `${c.name}: ${c.why ?? `max abs ${c.maxAbs}`}`).toBe(true);
  });
}

/** Each model's test-data input and a seeded random one, with onnxruntime's outputs for both. */
type Case = { inputs: Record<string, Tensor>; ref: Tensor[] };
const cases: Record<string, { data: Case; random: Case }> = {};
let manifest: Manifest;

beforeAll(async () => {
  manifest = (await buildSharedArtifact(MODELS, art, { target, extraCflags: SANITIZE })).manifest;
  const r = rng(5);
  for (const m of MODELS) {
    const spec = manifest.models!.find((e) => e.name === m.name)!;
    const data = { [spec.inputs[0].name]: readTensorFile(join(m.data, "test_data_set_0", "input_0.pb")) };
    const random = Object.fromEntries(spec.inputs.map((s) => [s.name, fromNumbers("float32", s.shape, Array.from({ length: numel(s.shape) }, () => r.uniform(-1, 1)))]));
    cases[m.name] = { data: { inputs: data, ref: await ortRun(m.file, data) }, random: { inputs: random, ref: await ortRun(m.file, random) } };
  }
});

describe("an artifact of two models", () => {
  test("shares one arena and one weights zone, each sized for the larger model, not the sum", () => {
    const single = MODELS.map((m) => compileModel(m.file, { target, weights: "file", name: m.name }));
    const arenas = single.map((c) => c.manifest.arenaBytes);
    const sections = single.map((c) => (c.files["weights.bin"] as Uint8Array).byteLength);
    expect(manifest.models!.map((e) => [e.name, e.arenaBytes, e.weights.bytes])).toEqual(MODELS.map((m, i) => [m.name, arenas[i], sections[i]]));
    // Different models need the larger arena and the larger weights, so neither max is the sum.
    expect(arenas[0]).toBeGreaterThan(arenas[1]);
    expect(sections[1]).toBeGreaterThan(sections[0]);
    expect(manifest.arenaBytes).toBe(Math.max(...arenas));
    expect(manifest.weightsZoneBytes).toBe(Math.max(...sections));
    const header = readFileSync(join(art, "model.h"), "utf8");
    expect(header).toContain(`#define EDGEC_SHARED_ARENA_SIZE ${Math.max(...arenas)}\n`);
    expect(header).toContain(`#define EDGEC_WEIGHTS_ZONE_SIZE ${Math.max(...sections)}\n`);
    expect(readFileSync(join(art, "weights.bin")).byteLength).toBe(sections[0] + sections[1]);
  });

  test("the harness runs each model by name, alternating, and agrees with onnxruntime", async () => {
    for (const [name, which] of [["kws", "data"], ["tfm", "data"], ["kws", "random"], ["tfm", "random"]] as const) {
      const c = cases[name][which];
      const { outputs } = await runArtifact(art, c.inputs, 1, { model: name });
      expectClose(outputs, c.ref, `${name} on its ${which} input`);
    }
  });

  test("through the C API, a model's weights are read only when the zone holds another model's", async () => {
    // A program on libmodels.a: runs the models named on its command line in turn with
    // edgec_run_by_name, counting the reads of weights.bin.
    const bytes = (t: TensorSpec) => numel(t.shape) * DTYPES[t.dtype].bytes;
    const rows = manifest.models!.map((e) => `  { "${e.name}", ${e.inputs.length}, ${e.outputs.length}, { ${e.inputs.map(bytes).join(", ")} }, { ${e.outputs.map(bytes).join(", ")} } },`);
    const program = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"

static const struct { const char *name; int inputs, outputs; size_t in[4], out[4]; } specs[] = {
${rows.join("\n")}
};
static int reads;

static int reader(void *ctx, size_t offset, void *dst, size_t bytes) {
  reads++;
  return fseek((FILE *)ctx, (long)offset, SEEK_SET) != 0 || fread(dst, 1, bytes, (FILE *)ctx) != bytes;
}

static FILE *open_file(const char *dir, int step, const char *what, int i, const char *mode) {
  char path[4096];
  FILE *f;
  snprintf(path, sizeof path, "%s/%d/%s%d.bin", dir, step, what, i);
  if (!(f = fopen(path, mode))) exit(3);
  return f;
}

/* usage: sequence WEIGHTS DIR MODEL...: step s runs the s-th MODEL on DIR/s/in<i>.bin, writes DIR/s/out<i>.bin */
int main(int argc, char **argv) {
  FILE *w = fopen(argv[1], "rb");
  void *none[1] = { NULL };
  int s, i, k;
  if (!w) return 3;
  edgec_set_weights_reader(reader, w);
  for (s = 3; s < argc; s++) {
    void *in[4], *out[4];
    for (k = 0; strcmp(specs[k].name, argv[s]) != 0; k++) {}
    for (i = 0; i < specs[k].inputs; i++) {
      FILE *f = open_file(argv[2], s - 3, "in", i, "rb");
      in[i] = malloc(specs[k].in[i]);
      if (!in[i] || fread(in[i], 1, specs[k].in[i], f) != specs[k].in[i]) return 3;
      fclose(f);
    }
    for (i = 0; i < specs[k].outputs; i++) {
      if (!(out[i] = malloc(specs[k].out[i]))) return 3;
    }
    if (edgec_run_by_name(argv[s], (const void *const *)in, out) != 0) return 4;
    for (i = 0; i < specs[k].outputs; i++) {
      FILE *f = open_file(argv[2], s - 3, "out", i, "wb");
      fwrite(out[i], 1, specs[k].out[i], f);
      fclose(f);
      free(out[i]);
    }
    for (i = 0; i < specs[k].inputs; i++) free(in[i]);
  }
  printf("reads=%d unknown=%d\\n", reads, edgec_run_by_name("nope", (const void *const *)none, none));
  fclose(w);
  return 0;
}
`;
    writeFileSync(join(work.dir, "sequence.c"), program);
    const exe = join(work.dir, "sequence");
    await runOk("gcc", ["-std=c99", "-Wall", "-Wextra", "-Werror", ...target.cflags, ...SANITIZE, "-I", art, "-o", exe, join(work.dir, "sequence.c"), join(art, "libmodels.a"), "-lm"]);
    // kws twice (one read), tfm (a read), kws again (its weights are read back into the zone).
    const steps = [["kws", "data"], ["kws", "random"], ["tfm", "data"], ["kws", "data"]] as const;
    const io = join(work.dir, "steps");
    steps.forEach(([name, which], s) => {
      mkdirSync(join(io, String(s)), { recursive: true });
      Object.values(cases[name][which].inputs).forEach((t, i) => writeFileSync(join(io, String(s), `in${i}.bin`), bytesOf(t.data)));
    });
    const out = await runOk(exe, [join(art, "weights.bin"), io, ...steps.map(([name]) => name)]);
    expect(out.trim()).toBe("reads=3 unknown=-3");
    steps.forEach(([name, which], s) => {
      const got = cases[name][which].ref.map((ref, i) => {
        const raw = readFileSync(join(io, String(s), `out${i}.bin`));
        return { ...ref, data: new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4) } as Tensor;
      });
      expectClose(got, cases[name][which].ref, `step ${s}: ${name} on its ${which} input`);
    });
  });

  test("its sources are warning-free under clang too (gcc built them with -Werror)", async () => {
    const sources = ["model.c", "model_kws.c", "model_tfm.c", "run.c"];
    expect(manifest.files.filter((f) => f.endsWith(".c")).sort()).toEqual(sources);
    await runOk("clang", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", ...sources], { cwd: art });
  });

  test("cross-compiled for rpi4, both models run under qemu and agree with onnxruntime", async () => {
    const dir = join(work.dir, "rpi4");
    await buildSharedArtifact(MODELS, dir, { target: loadTarget("rpi4") });
    for (const name of ["tfm", "kws"]) {
      const { outputs } = await runArtifact(dir, cases[name].data.inputs, 1, { model: name });
      expectClose(outputs, cases[name].data.ref, `${name} on rpi4`);
    }
  });

  test("the deploy self-test checks every model in one run of the harness", async () => {
    const m = await ensureSelfTest(art);
    expect(m.selfTest?.dir).toBe("selftest");
    const r = await run(join(art, "run"), ["--check", join(art, "selftest")]);
    expect(r.stdout.trim(), r.stderr).toBe("check: PASS");
    expect(r.code).toBe(0);
  });

  test("an unknown model name is a clear error with a non-zero exit", async () => {
    const harness = await run(join(art, "run"), ["--model", "nope", work.dir, work.dir]);
    expect(harness.code).toBe(2);
    expect(harness.stderr).toBe("run: no model 'nope' in this artifact (it has: kws, tfm)\n");
    const input = join(work.dir, "input.pb");
    writeFileSync(input, readFileSync(join(MODELS[0].data, "test_data_set_0", "input_0.pb")));
    const cli = await edgec("run", art, "--model", "nope", "-i", `input=${input}`, "--output-dir", "out");
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/^edgec: error: .*two: no model 'nope' in the artifact \(it has 'kws', 'tfm'\)\n$/);
    const unnamed = await edgec("run", art, "-i", `input=${input}`, "--output-dir", "out");
    expect(unnamed.code).toBe(2);
    expect(unnamed.stderr).toMatch(/several models \('kws', 'tfm'\): name one with --model/);
  });
});

describe("edgec build, run and verify with several models", () => {
  test("two models of one file name need --names", async () => {
    const r = await edgec("build", MODELS[0].file, MODELS[1].file, "-o", "clash");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^edgec: error: .*dscnn_kws\/model\.onnx and .*tiny_transformer_encoder\/model\.onnx would both be named 'model' in the generated C; name the models with --names a,b\n$/);
  });

  test("build --names, run --model and verify", async () => {
    const built = await edgec("build", MODELS[0].file, MODELS[1].file, "--names", "kws,tfm", "-o", "cli");
    expect(built.code, built.stderr).toBe(0);
    expect(built.stdout).toMatch(/2 models sharing an arena of \d+ B and a weights zone of \d+ B\n {2}kws: .*\n {2}tfm: /);
    // The library's static data is the arena, the zone, the thread pool of each model with parallel
    // loops (its locks, and a cache line per thread) and a few words, not one arena or zone per model.
    const nm = await runOk("nm", ["-S", "--defined-only", join(work.dir, "cli", "libmodels.a")]);
    const data = [...nm.matchAll(/^[0-9a-f]+ ([0-9a-f]+) [bBdD] (\w+)$/gm)].map((x) => [x[2], parseInt(x[1], 16)] as const);
    const bytes = Object.fromEntries(data);
    expect(bytes.edgec_arena).toBe(manifest.arenaBytes);
    expect(bytes.edgec_zone).toBe(manifest.weightsZoneBytes);
    const sum = (xs: (readonly [string, number])[]) => xs.reduce((s, [, n]) => s + n, 0);
    const inPool = (n: string) => /^edgec_(pool|parts)/.test(n);
    const pool = data.filter(([n]) => inPool(n));
    expect(sum(pool)).toBeLessThanOrEqual(2 * (256 + 64 * availableParallelism()));
    expect(sum(data.filter(([n]) => !inPool(n) && !/^edgec_(arena|zone)$/.test(n)))).toBeLessThan(128);

    const input = join(work.dir, "tfm-input.pb");
    writeFileSync(input, readFileSync(join(MODELS[1].data, "test_data_set_0", "input_0.pb")));
    const run = await edgec("run", join(work.dir, "cli"), "--model", "tfm", "-i", `input=${input}`, "--output-dir", "tfm-out");
    expect(run.code, run.stderr).toBe(0);
    expectClose([readTensorFile(join(work.dir, "tfm-out", "output_0.pb"))], cases.tfm.data.ref, "edgec run --model tfm");

    const verify = await edgec("verify", MODELS[0].file, MODELS[1].file, "--names", "kws,tfm", "--data", MODELS[0].data, "--data", MODELS[1].data);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/^kws test_data_set_0 output: .* PASS\ntfm test_data_set_0 output: .* PASS\n$/);
  });
});
