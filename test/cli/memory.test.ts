import { existsSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../helpers/onnx-builder.js";
import { edgecCli } from "../helpers/run.js";

/**
 * The memory side of the CLI: `inspect` reports the schedule, the live-memory curve and the arena
 * against its lower bound (and plots the curve); `build --memory-budget` refuses a budget the model
 * cannot fit, saying the smallest peak edgec can reach, and leaves nothing behind.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MODEL = join(ROOT, "..", "shared", "corpus", "models", "squeezenet1_1_c10_64", "model.onnx");
const work = tempDir("edgec-cli-memory-");
const childTmp = join(work.dir, "tmp");
mkdirSync(childTmp);
afterAll(() => work.cleanup());

const edgec = (...args: string[]) => edgecCli(args, { cwd: work.dir, env: { ...process.env, TMPDIR: childTmp } });

describe("memory in the CLI", () => {
  it("inspect --json gives the schedule's peak, the graph order's peak, the arena and its lower bound", async () => {
    const r = await edgec("inspect", MODEL, "--json", "--memory-plot", "live.svg");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.peakBytes).toBeGreaterThan(0);
    expect(j.peakBytes).toBeLessThanOrEqual(j.topoPeakBytes);
    expect(j.lowerBoundBytes).toBe(j.peakBytes);
    expect(j.arenaBytes).toBeGreaterThanOrEqual(j.lowerBoundBytes);
    expect(j.scheduleOptimal).toBe(true);
    expect(j.dpScheduleOptimal).toBe(true);
    expect(j.dpPeakBytes).toBeGreaterThanOrEqual(j.peakBytes);
    expect(j.schedule).toHaveLength(j.kernels);
    expect(Math.max(...j.schedule.map((s: { liveBytes: number }) => s.liveBytes))).toBe(j.peakBytes);
    expect(Math.max(...j.topoCurve)).toBe(j.topoPeakBytes);
    const svg = readFileSync(join(work.dir, "live.svg"), "utf8");
    expect(svg).toMatch(/^<svg /);
    expect(svg.match(/<polyline /g)).toHaveLength(2);
    expect((await edgec("inspect", MODEL)).stdout).toMatch(/^memory +peak .*optimal order/m);
  });

  it("build --memory-budget fails below the arena, naming the smallest peak (optimized for memory), and builds at it", async () => {
    const j = JSON.parse((await edgec("inspect", MODEL, "--json", "--optimize", "memory")).stdout);
    expect(j.optimize).toBe("memory");
    const fast = JSON.parse((await edgec("inspect", MODEL, "--json")).stdout);
    expect(fast.optimize).toBe("speed");
    expect(fast.rewrites).not.toContain("fuse (memory-first)");
    expect(j.peakBytes).toBeLessThan(fast.peakBytes);
    const low = await edgec("build", MODEL, "-o", "tight", "--memory-budget", `${Math.floor(j.peakBytes / 2048)}K`);
    expect(low.code).toBe(2);
    expect(low.stderr).toMatch(new RegExp(`over the budget of ${Math.floor(j.peakBytes / 2048) * 1024} \\(--memory-budget\\): its smallest peak of live tensors is ${j.peakBytes} bytes \\(proven`));
    expect(low.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(work.dir, "tight"))).toBe(false);
    expect(readdirSync(childTmp)).toEqual([]);
    const ok = await edgec("build", MODEL, "-o", "fits", "--memory-budget", "4M", "--stop-after", "codegen");
    expect(ok.code, ok.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(work.dir, "fits", "manifest.json"), "utf8"));
    expect(manifest.arenaBytes).toBeLessThanOrEqual(4 * 1024 * 1024);
  });

  it("rejects a budget that is not a size", async () => {
    const r = await edgec("build", MODEL, "-o", "x", "--memory-budget", "12Q");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--memory-budget: '12Q' is not a size/);
  });
});
