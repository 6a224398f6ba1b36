import { mkdirSync, renameSync, rmSync, mkdtempSync, writeFileSync, existsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { tmpdir } from "node:os";
import { Command, CommanderError, Option } from "commander";
import { EdgecError } from "../core/diag.js";
import type { Tensor } from "../core/tensor.js";
import { npyBytes, readTensorFile, tensorToProto } from "../frontend/onnx/tensor-io.js";
import { buildArtifact, buildSharedArtifact, modelNames, readManifest } from "../driver/artifact.js";
import type { Optimize, PipelineOptions } from "../driver/pipeline.js";
import { pickModel, runArtifact } from "../driver/run.js";
import { verifyModel, verifyModels } from "../driver/verify.js";
import { specializeInputs } from "../driver/inputs.js";
import { VERSION } from "../driver/version.js";
import { listTargets, loadTarget } from "../target/load.js";
import { forDevice, type DeviceKind } from "../target/device.js";
import { inspectModel, formatInspect, memoryPlotSvg } from "../driver/inspect.js";
import { runConformance } from "../driver/conformance.js";
import { benchModel, formatBench } from "../driver/bench.js";
import { readCosts } from "../driver/costs.js";
import { profileModel } from "../driver/profile.js";
import { parseHostSpec } from "../deploy/inventory.js";
import { addDeployCommands } from "./deploy.js";

/** "x=1x3x224x224" (repeatable) → { x: [1,3,224,224] } */
function parseShape(spec: string, acc: Record<string, number[]> = {}): Record<string, number[]> {
  const m = /^(.+)=(\d+(?:[x,]\d+)*)$/.exec(spec);
  if (!m) throw new EdgecError(`--input-shape '${spec}': expected NAME=DxDxD, e.g. input=1x3x224x224`);
  acc[m[1]] = m[2].split(/[x,]/).map(Number);
  return acc;
}

function parseInput(spec: string, acc: Record<string, string> = {}): Record<string, string> {
  const i = spec.indexOf("=");
  if (i <= 0) throw new EdgecError(`--input '${spec}': expected NAME=FILE (.pb or .npy)`);
  acc[spec.slice(0, i)] = spec.slice(i + 1);
  return acc;
}

const num = (what: string) => (v: string) => {
  const x = Number(v);
  if (!Number.isFinite(x)) throw new EdgecError(`${what}: '${v}' is not a number`);
  return x;
};

const whole = (what: string, min: number) => (v: string) => {
  const x = Number(v);
  if (!Number.isInteger(x) || x < min) throw new EdgecError(`${what}: '${v}' is not a whole number >= ${min}`);
  return x;
};

/**
 * `here`: the command runs what it builds on this machine (run, verify, bench, conformance; see
 * forDevice). `several`: an artifact of several models, which the GPU backend cannot build yet, so
 * placement defaults to the target's own backend.
 */
function pipelineOptions(o: { optimize?: Optimize; memoryBudget?: number; scheduleTimeLimit?: number; target?: string; device?: DeviceKind; placement?: DeviceKind; costs?: string; objective?: PipelineOptions["objective"]; inputShape?: Record<string, number[]>; name?: string; dumpIr?: string[]; stopAfter?: string; weights?: string; fuse?: boolean }, here = false, several = false): PipelineOptions {
  const target = loadTarget(o.target ?? "host");
  // A target with an OpenCL GPU places each kernel where it runs fastest unless told otherwise.
  const placement = o.placement ?? o.device ?? (o.costs || (!several && target.devices.some((d) => d.kind === "gpu" && d.api === "opencl")) ? "auto" : undefined);
  if (o.costs && placement !== "auto") throw new EdgecError(`--costs places kernels on the CPU or the GPU by measured times; it goes with --placement auto, not ${placement}`);
  if (o.objective && placement !== "auto") throw new EdgecError(`--objective is what --placement auto minimises; ${placement ? `--placement ${placement} places every kernel on one side` : `target '${target.name}' has no OpenCL GPU to place kernels on`}`);
  return {
    fuse: o.fuse,
    weights: o.weights as PipelineOptions["weights"],
    target: forDevice(target, placement, here),
    placement: placement === "auto" ? "auto" : undefined,
    costs: o.costs ? readCosts(o.costs) : undefined,
    objective: o.objective,
    inputShapes: o.inputShape,
    name: o.name,
    dumpAfter: o.dumpIr?.map((d) => d.replace(/^after:/, "")),
    dump: (title, text) => process.stdout.write(`// ----- ${title} -----\n${text}`),
    stopAfter: o.stopAfter as PipelineOptions["stopAfter"],
    memoryBudget: o.memoryBudget,
    optimize: o.optimize,
    scheduleTimeLimitMs: o.scheduleTimeLimit === undefined ? undefined : o.scheduleTimeLimit * 1000,
  };
}

/** "300000", "512K", "1.5M", "2MiB" → bytes (K, M, G are powers of 1024). */
export function parseBytes(what: string) {
  return (v: string) => {
    const m = /^(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?$/i.exec(v.trim());
    if (!m) throw new EdgecError(`${what}: '${v}' is not a size (bytes, or a number with K, M or G, e.g. 512K)`);
    return Math.floor(Number(m[1]) * 1024 ** " KMG".indexOf(m[2].toUpperCase() || " "));
  };
}

const optimizeOpt = () =>
  new Option("--optimize <goal>", "the graph rewrites that lower peak memory: speed takes those that cost no measurable time, memory also fuses for memory at some cost in speed (default: speed, or memory where speed's build is over --memory-budget)").choices(["speed", "memory"]);
const scheduleOpt = () => new Option("--schedule-time-limit <seconds>", "stop the memory scheduler after this much CPU time and use the best order found").argParser(num("--schedule-time-limit"));
const targetOpt = () => new Option("-t, --target <name>", "target name, alias or JSON file (see `edgec targets`)").default("host");
const placementOpt = () => new Option("--placement <where>", "run the kernels on the target's CPU, on its OpenCL GPU, or each where the cost model (or --costs) predicts the fastest run; default: auto on targets with an OpenCL GPU; run, verify, bench and conformance use this machine's OpenCL").choices(["cpu", "gpu", "auto"]);
const objectiveOpt = () => new Option("--objective <what>", "what --placement auto minimises: one inference's latency, or the time between results of a stream (a two-stage CPU/GPU pipeline that run_stream overlaps)").choices(["latency", "throughput"]);
const costsOpt = () => new Option("--costs <file>", "place kernels by the times `edgec profile` measured instead of the cost model's estimates (implies --placement auto)");
const deviceOpt = () => new Option("--device <kind>", "the same as --placement").choices(["cpu", "gpu", "auto"]);
const namesOpt = () => new Option("--names <a,b>", "C prefixes of several models, in order (default: their file names)").argParser((v: string) => v.split(","));
const shapeOpt = () => new Option("--input-shape <name=dims>", "pin an input's shape, e.g. x=1x3x224x224 (repeatable)").argParser(parseShape);

/** Writes every output into `outDir` via a temp dir renamed into place. */
function writeOutputs(outDir: string, names: string[], outputs: Tensor[], format: string) {
  const dir = resolve(outDir);
  mkdirSync(dirname(dir), { recursive: true });
  const tmp = mkdtempSync(join(dirname(dir), ".edgec-out-"));
  try {
    outputs.forEach((t, i) => {
      const file = join(tmp, `output_${i}.${format}`);
      writeFileSync(file, format === "npy" ? npyBytes(t) : tensorToProto(t, names[i]));
    });
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/**
 * The given inputs' shapes, to pin the model's symbolic dims when `run` builds it. A missing input or
 * a tensor that contradicts a declared dim is reported before building, in terms of the input.
 */
export function program(): Command {
  const cli = new Command("edgec")
    .description("Compile ONNX models to dependency-free C for edge devices")
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: (s, write) => write(`edgec: ${s}`) });

  cli
    .command("build")
    .description("compile MODEL into an artifact directory (sources, Makefile, library, run harness, manifest.json); several models make one artifact sharing one arena and one weights zone")
    .argument("<models...>", "ONNX model file(s)")
    .addOption(targetOpt())
    .addOption(placementOpt())
    .addOption(costsOpt())
    .addOption(objectiveOpt())
    .addOption(deviceOpt())
    .requiredOption("-o, --output <dir>", "artifact directory to create")
    .addOption(shapeOpt())
    .addOption(optimizeOpt())
    .option("--no-fuse", "no fusion: one kernel per ONNX node")
    .option("--memory-budget <bytes>", "fail unless the activation memory (arena and kernel scratch) fits, e.g. 512K or 2M", parseBytes("--memory-budget"))
    .addOption(scheduleOpt())
    .option("--name <ident>", "C prefix of the generated API of one model (default: model)")
    .addOption(namesOpt())
    .addOption(new Option("--weights <where>", "compile weights in (embed) or write weights.bin for the caller to load (file); auto: file above 16 MiB").choices(["auto", "embed", "file"]).default("auto"))
    .option("--dump-ir <after:pass>", "print the IR after a pass (repeatable; after:all for every pass)", (v: string, a: string[] = []) => [...a, v])
    .addOption(new Option("--stop-after <phase>", "stop after a phase: codegen writes sources without compiling them").choices(["codegen"]))
    .action(async (models: string[], o) => {
      if (models.length === 1) {
        if (o.names) throw new EdgecError("--names names several models; name one with --name");
        const r = await buildArtifact(models[0], o.output, pipelineOptions(o));
        const m = r.manifest;
        console.log(`built ${r.dir} for ${m.target}: ${m.kernels} kernels, arena ${m.arenaBytes} B, weights ${m.weightBytes} B${m.optimize === "memory" ? ", optimized for memory" : ""}${r.skipped ? ` (${r.skipped})` : ""}`);
        return;
      }
      const names = modelNames(models, o.names);
      const r = await buildSharedArtifact(models.map((file, i) => ({ file, name: names[i] })), o.output, pipelineOptions(o, false, true));
      const m = r.manifest;
      console.log(`built ${r.dir} for ${m.target}: ${m.models!.length} models sharing an arena of ${m.arenaBytes} B and a weights zone of ${m.weightsZoneBytes} B${r.skipped ? ` (${r.skipped})` : ""}`);
      for (const e of m.models!) console.log(`  ${e.name}: ${e.kernels} kernels, arena ${e.arenaBytes} B, weights ${e.weightBytes} B${e.optimize === "memory" ? ", optimized for memory" : ""}`);
    });

  cli
    .command("run")
    .description("run a model or artifact directory on input tensors and write its outputs")
    .argument("<model-or-dir>", "ONNX model file or artifact directory")
    .addOption(targetOpt())
    .addOption(placementOpt())
    .addOption(costsOpt())
    .addOption(objectiveOpt())
    .addOption(deviceOpt())
    .option("-i, --input <name=file>", "input tensor file, .pb or .npy (repeatable)", parseInput)
    .requiredOption("--output-dir <dir>", "where output_<i>.pb (or .npy) files go")
    .addOption(new Option("--format <fmt>", "output file format").choices(["pb", "npy"]).default("pb"))
    .addOption(shapeOpt())
    .addOption(optimizeOpt())
    .option("--no-fuse", "no fusion: one kernel per ONNX node")
    .option("--model <name>", "the model to run in an artifact of several")
    .action(async (what: string, o) => {
      const given = Object.fromEntries(Object.entries((o.input ?? {}) as Record<string, string>).map(([k, f]) => [k, readTensorFile(f)]));
      let dir = what;
      let tmp: string | undefined;
      let runInputs = given;
      if (!existsSync(what)) throw new EdgecError(`${what}: no such file or directory`);
      try {
        if (!statSync(what).isDirectory()) {
          if (o.model) throw new EdgecError(`--model picks a model of an artifact directory; ${what} is a model file`);
          const spec = specializeInputs(what, given, o.inputShape);
          runInputs = spec.runInputs;
          tmp = mkdtempSync(join(tmpdir(), "edgec-run-"));
          dir = (await buildArtifact(what, join(tmp, "artifact"), { ...pipelineOptions(o, true), inputShapes: spec.inputShapes, bind: spec.bind })).dir;
        }
        const picked = pickModel(readManifest(dir), dir, o.model);
        const r = await runArtifact(dir, runInputs, 1, { model: o.model });
        writeOutputs(o.outputDir, picked.outputs.map((x) => x.name), r.outputs, o.format);
        console.log(`wrote ${r.outputs.length} output${r.outputs.length === 1 ? "" : "s"} to ${o.outputDir}`);
      } finally {
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
    });

  cli
    .command("verify")
    .description("build MODEL, run it on reference data and compare (exit 0 pass, 1 mismatch, 2 bad input); several models are verified in one artifact, taking turns")
    .argument("<models...>", "ONNX model file(s)")
    .requiredOption("--data <dir>", "folder with test_data_set_*/ or input_*.pb + output_*.pb (one per model, in order)", (v: string, a: string[] = []) => [...a, v])
    .addOption(targetOpt())
    .addOption(placementOpt())
    .addOption(costsOpt())
    .addOption(objectiveOpt())
    .addOption(deviceOpt())
    .addOption(shapeOpt())
    .addOption(optimizeOpt())
    .option("--no-fuse", "no fusion: one kernel per ONNX node")
    .addOption(namesOpt())
    .option("--rtol <x>", "relative tolerance", num("--rtol"), 1e-3)
    .option("--atol <x>", "absolute tolerance", num("--atol"), 1e-5)
    .action(async (models: string[], o) => {
      if (o.data.length !== models.length) throw new EdgecError(`${models.length} model${models.length === 1 ? "" : "s"} and ${o.data.length} --data folder${o.data.length === 1 ? "" : "s"}: give one per model, in order`);
      const tol = { rtol: o.rtol, atol: o.atol };
      const names = models.length > 1 ? modelNames(models, o.names) : [];
      const results =
        models.length === 1
          ? await verifyModel(models[0], o.data[0], pipelineOptions(o, true), tol)
          : await verifyModels(models.map((file, i) => ({ file, name: names[i], data: o.data[i] })), pipelineOptions(o, true, true), tol);
      let ok = true;
      for (const r of results) {
        const model = "model" in r ? `${r.model} ` : "";
        for (const c of r.outputs) {
          console.log(`${model}${r.dataSet} ${c.name}: max abs ${c.maxAbs.toExponential(2)}, max rel ${c.maxRel.toExponential(2)}  ${c.pass ? "PASS" : "FAIL"}${c.why ? ` (${c.why})` : ""}`);
        }
        ok &&= r.pass;
      }
      if (!ok) process.exitCode = 1;
    });

  cli
    .command("inspect")
    .description("show ops, shapes, parameters, MACs and memory of MODEL")
    .argument("<model>", "ONNX model file")
    .addOption(targetOpt())
    .addOption(placementOpt())
    .addOption(costsOpt())
    .addOption(objectiveOpt())
    .addOption(deviceOpt())
    .addOption(shapeOpt())
    .addOption(optimizeOpt())
    .option("--no-fuse", "no fusion: one kernel per ONNX node")
    .option("--json", "machine-readable output")
    .option("--memory-plot <file.svg>", "write the live-memory curve per kernel (edgec's order and the graph's own) as an SVG chart")
    .addOption(scheduleOpt())
    .action((model: string, o) => {
      const info = inspectModel(model, pipelineOptions(o));
      if (o.memoryPlot) writeFileSync(o.memoryPlot, memoryPlotSvg(info));
      console.log(o.json ? JSON.stringify(info, null, 2) : formatInspect(info));
    });

  cli
    .command("bench")
    .description("build MODEL, time it on a seeded random input; latency, peak memory, FLOP/s against the FMA peak, optionally against onnxruntime")
    .argument("<model>", "ONNX model file")
    .addOption(targetOpt())
    .addOption(placementOpt())
    .addOption(costsOpt())
    .addOption(objectiveOpt())
    .addOption(deviceOpt())
    .addOption(shapeOpt())
    .addOption(optimizeOpt())
    .option("--threads <n>", "threads the model runs on (default: the target's cores)", whole("--threads", 1))
    .option("--runs <n>", "timed runs (rounds of 5)", whole("--runs", 1), 20)
    .option("--warmup <n>", "untimed runs first", whole("--warmup", 0), 3)
    .option("--compare-ort", "also time onnxruntime on the same input, alternating with edgec, and check the outputs agree (exit 1 if not): onnxruntime-node, or onnxruntime-web's wasm backend (SIMD, one thread) for WebAssembly targets")
    .option("--compare-unfused", "also time the model built with --no-fuse (one kernel per ONNX node) in the same rounds, and check it computes the same")
    .option("--build-dir <dir>", "build the artifact here and reuse it while up to date (default: a temporary directory)")
    .option("--json", "print one JSON object")
    .action(async (model: string, o) => {
      const r = await benchModel(model, { ...pipelineOptions(o, true), threads: o.threads, runs: o.runs, warmup: o.warmup, compareOrt: !!o.compareOrt, compareUnfused: !!o.compareUnfused, buildDir: o.buildDir });
      console.log(o.json ? JSON.stringify(r) : formatBench(r));
      if (r.agree === false) throw new EdgecError(`${model}: edgec's outputs differ from onnxruntime's (${r.checks!.filter((c) => !c.pass).map((c) => `'${c.name}' max abs ${c.maxAbs.toExponential(2)}`).join(", ")})`, 1);
    });

  cli
    .command("profile")
    .description("time every kernel of MODEL on the target's CPU and on its OpenCL GPU, and copies between them, on this machine or on a device over SSH; writes a costs file for --costs")
    .argument("<model>", "ONNX model file")
    .addOption(targetOpt())
    .requiredOption("-o, --output <costs.json>", "the costs file to write")
    .option("--host <user@host[:port]>", "measure on this device over SSH (the system ssh client) instead of on this machine")
    .option("--runs <n>", "timed runs of each build (medians)", whole("--runs", 2), 20)
    .addOption(shapeOpt())
    .addOption(optimizeOpt())
    .option("--no-fuse", "no fusion: one kernel per ONNX node")
    .option("-F, --ssh-config <file>", "ssh configuration file instead of ~/.ssh/config")
    .option("--ssh-option <opt>", "extra ssh option, e.g. ProxyJump=bastion (repeatable)", (v: string, a: string[] = []) => [...a, v])
    .option("--insecure-accept-new-host-keys", "accept (and record) unknown host keys; changed keys are still refused")
    .action(async (model: string, o) => {
      if (!existsSync(model)) throw new EdgecError(`${model}: no such file`);
      const host = o.host ? parseHostSpec(o.host) : undefined;
      const opts = pipelineOptions({ ...o, placement: "gpu" }, !host);
      const costs = await profileModel(model, { ...opts, target: loadTarget(o.target), runs: o.runs, host, ssh: { configFile: o.sshConfig, options: o.sshOption, acceptNewHostKeys: !!o.insecureAcceptNewHostKeys } });
      const out = resolve(o.output);
      mkdirSync(dirname(out), { recursive: true });
      const tmp = `${out}.tmp-${process.pid}`;
      writeFileSync(tmp, JSON.stringify(costs, null, 2) + "\n");
      renameSync(tmp, out);
      const ks = Object.values(costs.kernels);
      const sum = (f: (k: (typeof ks)[number]) => number | undefined) => ks.reduce((t, k) => t + (f(k) ?? 0), 0);
      console.log(`wrote ${o.output}: ${ks.length} kernels measured on ${costs.machine}; sum of kernel times ${sum((k) => k.cpuMs).toFixed(3)} ms on ${costs.devices.cpu}, ${sum((k) => k.gpuMs).toFixed(3)} ms on ${costs.devices.gpu}; a copy ${costs.copy.latencyUs.toFixed(1)} us + ${costs.copy.GBs.toFixed(2)} GB/s`);
    });

  cli
    .command("targets")
    .description("list the known targets")
    .action(() => {
      for (const t of listTargets()) {
        const aka = t.aliases.length ? ` (also: ${t.aliases.join(", ")})` : "";
        console.log(`${t.name.padEnd(12)} ${t.triple.padEnd(20)} ${t.description}${aka}${t.buildable ? "" : " [not buildable yet]"}`);
      }
    });

  cli
    .command("conformance")
    .description("verify every ONNX test folder (model.onnx + test_data_set_*) under the given folders; print a table per op")
    .argument("<dirs...>", "folders of test folders, or test folders")
    .addOption(targetOpt())
    .addOption(placementOpt())
    .addOption(deviceOpt())
    .option("-j, --jobs <n>", "tests in parallel", num("--jobs"), 2)
    .option("--sanitize", "compile with -fsanitize=address,undefined")
    .option("--json <file>", "also write the results as JSON")
    .action(async (dirs: string[], o) => {
      const failed = await runConformance(dirs, { ...pipelineOptions(o, true), jobs: o.jobs, sanitize: !!o.sanitize, json: o.json });
      if (failed) process.exitCode = 1;
    });

  addDeployCommands(cli);
  return cli;
}

/** Runs the CLI; returns the exit code. Known errors print one line, never a stack trace. */
export async function main(argv: string[]): Promise<number> {
  process.exitCode = 0;
  try {
    await program().parseAsync(argv, { from: "user" });
    return Number(process.exitCode ?? 0);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof EdgecError) {
      process.stderr.write(`edgec: error: ${e.message}\n`);
      return e.exitCode;
    }
    process.stderr.write(`edgec: internal error: ${(e as Error).message}\n`);
    if (process.env.EDGEC_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    return 3;
  }
}
