import { mkdirSync, readFileSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";
import { run } from "../helpers/run.js";

/**
 * `edgec build` writes edgec.d naming the model and the JSON file its target was loaded from, a
 * user's own `--target FILE.json` included, so make re-runs edgec when that file changes.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const work = tempDir("edgec-depfile-");
afterAll(() => work.cleanup());

const EDGEC = `${process.execPath} ${join(ROOT, "bin", "edgec.js")}`;
const make = async (target: string, out: string) => {
  const r = await run("make", ["--no-print-directory", "-C", work.dir, `EDGEC=${EDGEC}`, `TARGET=${target}`, `OUT=${out}`]);
  return { code: r.code, out: r.stdout + r.stderr };
};
/** The rule line of OUT/edgec.d (its first line is the cache key). */
const deps = (out: string) => readFileSync(join(work.dir, out, "edgec.d"), "utf8").split("\n")[1];

describe("edgec.d", () => {
  work.write(
    "model.onnx",
    modelBytes({
      nodes: [node("Add", ["x", "c"], ["y"])],
      inputs: [valueInfo("x", T.FLOAT, [1, 4])],
      outputs: [valueInfo("y", T.FLOAT, [1, 4])],
      initializers: [tensorProto("c", T.FLOAT, [1, 4], { floatData: [1, 2, 3, 4] })],
    }),
  );
  work.write("Makefile", "$(OUT)/edgec.d: model.onnx\n\t$(EDGEC) build model.onnx --target $(TARGET) -o $(OUT) --stop-after codegen\n-include $(OUT)/edgec.d\n");

  test("a custom --target file is a dependency (not targets/<its name>.json), and changing it re-runs edgec", async () => {
    // The user's tuned copy of the host target keeps its name: edgec.d must name the copy.
    const host = JSON.parse(readFileSync(join(ROOT, "targets", "host.json"), "utf8")) as { cflags: string[] };
    mkdirSync(join(work.dir, "boards"));
    work.write("boards/tuned.json", JSON.stringify({ ...host, cflags: [...host.cflags, "-DTUNED"] }));
    const first = await make("boards/tuned.json", "tuned");
    expect(first.code, first.out).toBe(0);
    expect(deps("tuned")).toBe("tuned/edgec.d: model.onnx boards/tuned.json");
    expect((await make("boards/tuned.json", "tuned")).out).toMatch(/is up to date|Nothing to be done/);
    const later = new Date(Date.now() + 2000);
    utimesSync(join(work.dir, "boards", "tuned.json"), later, later);
    const touched = await make("boards/tuned.json", "tuned");
    expect(touched.code, touched.out).toBe(0);
    expect(touched.out).toMatch(/edgec\.js build model\.onnx --target boards\/tuned\.json/);
  });

  test("a built-in target named by an alias depends on its file under targets/", async () => {
    const r = await make("raspberrypi4", "rpi4");
    expect(r.code, r.out).toBe(0);
    expect(deps("rpi4")).toBe(`rpi4/edgec.d: model.onnx ${join(ROOT, "targets", "rpi4.json")}`);
  });
});
