import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Benchmarks measure speed and run only through `make bench-*` (EDGEC_BENCH=1), never in `make test`.
    exclude: process.env.EDGEC_BENCH ? [] : ["test/**/*.bench.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Conformance files spawn compilers and qemu; two workers match the CI machine's two cores.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    pool: "forks",
    maxConcurrency: 2,
  },
});
