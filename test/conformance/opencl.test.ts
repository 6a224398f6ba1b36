import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { conformanceSuite } from "./suite.js";

// OpenCL through PoCL on this machine's CPU (no GPU here): every kernel of every test runs as an
// OpenCL kernel, the host code built with gcc. Program binaries are cached in a fresh directory, so
// every test compiles its kernels. About 90 s with two jobs on the 2-core CI machine.
process.env.EDGEC_OPENCL_CACHE = mkdtempSync(join(tmpdir(), "edgec-clcache-"));
conformanceSuite("opencl");
