import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { conformanceSuite } from "./suite.js";

// OpenCL through PoCL on this machine's CPU (no GPU here): every kernel of every test runs as an
// OpenCL kernel, the host code built with gcc. Program binaries are cached in a fresh directory, so
// every test compiles its kernels (PoCL keeps its own cache in ~/.cache/pocl). `edgec conformance
// --target opencl -j 2` took 52 to 85 s over the corpus on the 2-core CI machine.
const cache = (process.env.EDGEC_OPENCL_CACHE = mkdtempSync(join(tmpdir(), "edgec-clcache-")));
afterAll(() => rmSync(cache, { recursive: true, force: true }));
conformanceSuite("opencl");
