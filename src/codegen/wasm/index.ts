import { existsSync } from "node:fs";
import { join } from "node:path";
import { $ } from "zx";
import type { Program } from "../../loop/ir.js";
import type { Backend, Files } from "../backend.js";
import { adapterBody, cBackend, ioView, makeGoals, makefileView, type CConfig } from "../c/index.js";
import { renderTemplate } from "../template.js";
import { wrapperFiles } from "./wrapper.js";

/**
 * The Makefile and the `run` launcher of a WebAssembly artifact, over the C backend's sources
 * (`module`: also the model's own module, model.wasm). The launcher is a Node script that runs
 * run.wasm (the C harness as a WASI command) with node:wasi and the native harness's arguments.
 */
function packaging(files: Files, cfg: CConfig, module: boolean): Files {
  const sources = Object.keys(files).filter((f) => f.endsWith(".c") && f !== "run.c" && f !== "module.c").sort();
  return {
    ...files,
    Makefile: renderTemplate("wasm/Makefile", { ...makefileView(cfg, sources), module: module ? [{ weights: files["weights.bin"] ? " weights.bin" : "", weightsZ: files["weights.bin"] ? " weights.z" : "" }] : [] }),
    run: renderTemplate("wasm/run", { version: cfg.opts.version }),
  };
}

/** module.c (the model's exports for JavaScript), the npm package around it, and pack.mjs, which makes the package's compressed files. */
function moduleFiles(p: Program, cfg: CConfig, files: Files): Files {
  const { name, version, source } = cfg.opts;
  const io = (names: string[]) => ioView(p, names).map((x) => ({ ...x, slots: Math.max(1, x.elems) }));
  const inputs = io(p.inputs), outputs = io(p.outputs);
  const weights = files["weights.bin"];
  const weightsBytes = weights instanceof Uint8Array ? weights.byteLength : undefined;
  const tensor = (b: string) => {
    const { value, dtype, shape } = p.buffers.get(b)!;
    return { name: value, dtype, shape };
  };
  return {
    "module.c": renderTemplate("wasm/module.c", {
      version, source, name, target: cfg.target.name, inputs, outputs,
      externalWeights: weightsBytes === undefined ? [] : [{ name, bytes: weightsBytes, slots: Math.max(64, weightsBytes) }],
      adapter: adapterBody(name, inputs, outputs),
    }),
    "pack.mjs": renderTemplate("wasm/pack.mjs", { version }),
    ...wrapperFiles({ name, version, source, target: cfg.target.name, inputs: p.inputs.map(tensor), outputs: p.outputs.map(tensor), weightsBytes }),
  };
}

/**
 * WebAssembly: the C backend's sources compiled by clang for wasm32-wasi (wasi-libc for libm and
 * stdio; no Emscripten), the arena and the weights static data in linear memory. A one-model
 * artifact is also an npm package: model.wasm (module.c over the model, no imports) shipped
 * compressed, its weights apart (model.wasm.gz, data.z, weights.z: see pack.mjs), and index.js,
 * index.d.ts with the model's typed, named inputs and outputs. Every artifact has the `run` harness
 * as run.wasm and a Node launcher, so run, verify and conformance drive it like any target's.
 */
export const wasmBackend: Backend<CConfig> = {
  ...cBackend,
  name: "wasm",
  render(p, cfg) {
    const files = cBackend.render(p, cfg);
    return packaging({ ...files, ...moduleFiles(p, cfg, files) }, cfg, true);
  },
  renderShared(models, cfg) {
    const r = cBackend.renderShared(models, cfg);
    return { ...r, files: packaging(r.files, cfg, false) };
  },
  async package(dir, cfg) {
    // clang is often installed without a WASI sysroot; then, as without a compiler, sources only.
    const libc = await $({ nothrow: true, quiet: true })`${cfg.target.cc} ${cfg.target.cflags} -print-file-name=libc.a`;
    if (libc.exitCode === 0 && !libc.stdout.trim().startsWith("/")) {
      return { built: [], skipped: `no WASI libc for '${cfg.target.cc} ${cfg.target.cflags.join(" ")}' (Debian: apt-get install wasi-libc); sources only` };
    }
    const module = existsSync(join(dir, "module.c")) ? ["model.wasm", "model.wasm.gz"] : [];
    return makeGoals(dir, cfg, ["run", `lib${cfg.opts.name}.a`, ...module]);
  },
};
