import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { conformanceSuite } from "./suite.js";

// The OpenCL target with every other kernel moved to the CPU: each test then runs C and OpenCL
// kernels in turn, with the copies between host and device memory the run inserts.
const cache = (process.env.EDGEC_OPENCL_CACHE = mkdtempSync(join(tmpdir(), "edgec-clcache-")));
afterAll(() => rmSync(cache, { recursive: true, force: true }));
conformanceSuite("opencl", { label: "opencl, every other kernel on the CPU", place: (k) => (Number(/^k(\d+)/.exec(k.name)![1]) % 2 ? "cpu" : "gpu") });
