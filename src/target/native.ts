import { execFileSync } from "node:child_process";
import { availableParallelism } from "node:os";
import type { Target } from "./schema.js";

const probed = new Map<string, { bytes: number; registers: number }>();

/** Vector width and register count implied by the compiler's predefined macros for these flags (asked once per process). */
function probeVectors(cc: string, cflags: string[]): { bytes: number; registers: number } {
  const key = [cc, ...cflags].join(" ");
  if (!probed.has(key)) probed.set(key, askCompiler(cc, cflags));
  return probed.get(key)!;
}

function askCompiler(cc: string, cflags: string[]): { bytes: number; registers: number } {
  let macros = "";
  try {
    macros = execFileSync(cc, [...cflags, "-dM", "-E", "-x", "c", "/dev/null"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    // No compiler here: fall back to the baseline every x86-64 and aarch64 CPU has.
  }
  const has = (m: string) => macros.includes(`#define ${m} `);
  if (has("__AVX512F__")) return { bytes: 64, registers: 32 };
  if (has("__AVX2__") || has("__AVX__")) return { bytes: 32, registers: 16 };
  if (has("__aarch64__")) return { bytes: 16, registers: 32 };
  return { bytes: 16, registers: 16 };
}

/**
 * A target whose JSON says 0 for `cores` or `vectorBytes` means "whatever the build machine has"
 * (the host target built with -march=native): those are read off this machine and its compiler.
 */
export function resolveNative(t: Target): Target {
  if (t.cores > 0 && t.vectorBytes > 0) return t;
  const v = t.vectorBytes > 0 ? undefined : probeVectors(t.cc, t.cflags);
  return {
    ...t,
    cores: t.cores > 0 ? t.cores : availableParallelism(),
    vectorBytes: v ? v.bytes : t.vectorBytes,
    vectorRegisters: t.vectorRegisters > 0 ? t.vectorRegisters : v ? v.registers : 16,
  };
}
