import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Conformance files spawn compilers and qemu; two workers match the CI machine's two cores.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    pool: "forks",
    maxConcurrency: 2,
  },
});
