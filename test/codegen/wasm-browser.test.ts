import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, resolve } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compare } from "../../src/driver/verify.js";
import { CORPUS } from "../conformance/suite.js";
import { tempDir } from "../helpers/onnx-builder.js";
import { buildCorpusPackage } from "../helpers/wasm-package.js";

/**
 * The wasm32 npm package in a real browser: Debian's Chromium, headless, driven by playwright-core,
 * loads examples/browser/index.html over HTTP from a loopback server; the page imports the package's
 * index.js, which fetches and inflates model.wasm.gz and data.z (or weights.z), and its outputs are compared with the
 * corpus's reference outputs.
 */
const CHROMIUM = "/usr/bin/chromium";
const PAGE = resolve("examples/browser");
const TOL = { rtol: 1e-3, atol: 1e-5 };
const work = tempDir("edgec-wasm-browser-");
const MIME: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

/** Serves the page at / and the packages built into `work` at /models/NAME/. */
function serve(): Promise<Server> {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url!, "http://x").pathname));
    const file = path === "/" ? join(PAGE, "index.html") : path.startsWith("/models/") ? join(work.dir, path.slice("/models/".length)) : join(PAGE, path);
    if (!file.startsWith(work.dir) && !file.startsWith(PAGE)) return res.writeHead(403).end();
    if (!existsSync(file) || !statSync(file).isFile()) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": MIME[extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done(server)));
}

/** The corpus model `name` built as a wasm32 package into work/NAME, with its first data set (inputs as plain arrays, for the page). */
async function packaged(name: string, weights?: "file") {
  const { manifest, inputs, refs } = await buildCorpusPackage(join(CORPUS, "models", name), join(work.dir, name), weights);
  return { manifest, inputs: Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, Array.from(t.data as Float32Array)])), refs };
}

let server: Server;
let browser: Browser;
let base: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: \`make setup\` installs Debian's chromium`);
  server = await serve();
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // As root Chromium needs --no-sandbox; the rest keep it off a network it cannot reach.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  server?.close();
  work.cleanup();
});

/** Opens the page on package NAME and waits until it has loaded the model (or failed). */
async function open(name: string): Promise<Page> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/?model=models/${name}`);
  await page.waitForFunction(() => "edgec" in window, undefined, { timeout: 30_000 });
  expect(errors).toEqual([]);
  expect(await page.evaluate(() => (window as unknown as { edgec: { error?: string } }).edgec.error)).toBeUndefined();
  return page;
}

type PageApi = { run(given: Record<string, number[]>): Record<string, number[]>; rawRun(given: Record<string, unknown>): unknown };

describe("wasm32 package in headless Chromium", () => {
  it.each([
    ["dscnn_kws", "in data.z"],
    ["tiny_transformer_encoder", "in weights.z"],
  ])("%s (weights %s): the page's run() gives the reference outputs", async (name, weights) => {
    const { manifest, inputs, refs } = await packaged(name, weights === "in weights.z" ? "file" : undefined);
    const page = await open(name);
    const outputs = await page.evaluate((given) => (window as unknown as { edgec: PageApi }).edgec.run(given), inputs);
    expect(Object.keys(outputs)).toEqual(manifest.outputs.map((o) => o.name));
    manifest.outputs.forEach((o, i) => {
      const c = compare(o.name, { dtype: "float32", shape: o.shape, data: Float32Array.from(outputs[o.name]) }, refs[i], TOL);
      expect(c.pass, `${name} ${o.name}: ${c.why ?? `max abs ${c.maxAbs}`}`).toBe(true);
    });
    // The page's own first run, on zeros, is shown to a person.
    expect(await page.textContent("#log")).toMatch(/first run on zeros: [\d.]+ ms/);
    await page.close();
  }, 120_000);

  it("an input of the wrong length throws the package's RangeError in the browser", async () => {
    await packaged("dscnn_kws");
    const page = await open("dscnn_kws");
    const error = await page.evaluate(() => {
      try {
        (window as unknown as { edgec: PageApi }).edgec.rawRun({ input: new Float32Array(3) });
        return "no error";
      } catch (e) {
        return `${(e as Error).name}: ${(e as Error).message}`;
      }
    });
    expect(error).toBe("RangeError: edgec: input 'input' has 3 elements; the model takes float32 [1x1x49x10], 490 elements");
    await page.close();
  }, 120_000);

  it("a missing package shows an error on the page instead of hanging", async () => {
    const page = await browser.newPage();
    await page.goto(`${base}/?model=models/none`);
    await page.waitForFunction(() => "edgec" in window, undefined, { timeout: 30_000 });
    expect(await page.textContent("#log")).toMatch(/^error: /);
    await page.close();
  }, 60_000);
});
