import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { loadTarget } from "../../src/target/load.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";
import { expectLikeOrt } from "../helpers/against-ort.js";
import { run } from "../helpers/run.js";

/**
 * The generated C's own thread pool, through the C API an application uses: threads are made at the
 * first run on more than one and kept; runs on 1, 2 and 3 threads (shares that do not divide the
 * loops evenly), with pauses long enough for the pool's threads to go to sleep, give the bytes a run
 * on one thread gives, in the program and in a child of fork(); a thread a lower count leaves out
 * sleeps; built a second time under ThreadSanitizer, which reports any data race
 * between the caller and the pool's threads.
 */
const work = tempDir("edgec-threads-");
afterAll(() => work.cleanup());

const APP = `#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "model.h"

/* the program's threads, by id, into ids; returns how many */
static int tasks(long *ids, int max) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;
  if (!d) return -1;
  while ((e = readdir(d)) != NULL) if (e->d_name[0] != '.' && n < max) ids[n++] = atol(e->d_name);
  closedir(d);
  return n;
}

/* clock ticks the thread has run (user and system) */
static long ticks(long id) {
  char path[64], line[512], *p = NULL;
  unsigned long user = 0, sys = 0;
  FILE *f;
  snprintf(path, sizeof path, "/proc/self/task/%ld/stat", id);
  if (!(f = fopen(path, "r"))) return -1;
  if (fgets(line, sizeof line, f)) p = strrchr(line, ')');
  fclose(f);
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &user, &sys) != 2) return -1;
  return (long)(user + sys);
}

int main(void) {
  static float x[8 * 13 * 13], first[4 * 13 * 13], y[4 * 13 * 13];
  const struct timespec nap = { 0, 200000000 };
  net_inputs in = { x };
  net_outputs out = { y }, ref = { first };
  size_t i;
  long start[16], two[16], three[16], third = 0;
  /* threads made since the start (a sanitizer has its own) */
  const int before = tasks(start, 16);
  int n2, n3, j, k;
  alarm(60); /* a loop waiting for a thread that never comes would never end */
  for (i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)((i * 7919) % 113) / 56.0f - 1.0f;
  net_set_threads(1);
  if (net_run(&in, &ref) != 0) return 1;
  printf("threads made by a run on one thread: %d\\n", tasks(two, 16) - before);
  printf("set 3: %d, set 9: %d\\n", net_set_threads(3), net_set_threads(9));
  /* the pool's third thread: the one a first run on three makes */
  net_set_threads(2);
  net_run(&in, &out);
  n2 = tasks(two, 16);
  net_set_threads(3);
  net_run(&in, &out);
  n3 = tasks(three, 16);
  for (k = 0; k < n3; k++) {
    for (j = 0; j < n2 && two[j] != three[k]; j++) continue;
    if (j == n2) third = three[k];
  }
  for (i = 0; i < 120; i++) {
    net_set_threads(1 + (int)(i % 3));
    /* long enough for the pool's threads to stop spinning and sleep */
    if (i % 40 == 39) nanosleep(&nap, NULL);
    memset(y, 0xff, sizeof y);
    if (net_run(&in, &out) != 0) return 1;
    if (memcmp(first, y, sizeof y) != 0) {
      printf("run %zu on %d threads differs\\n", i, 1 + (int)(i % 3));
      return 1;
    }
  }
  printf("threads made by runs on up to three: %d\\n", tasks(three, 16) - before);
  /* a thread the count leaves out sleeps, where one that takes part spins between loops */
  net_set_threads(2);
  k = (int)ticks(third);
  for (i = 0; i < 20000; i++) net_run(&in, &out);
  printf("ticks of the third thread in runs on two: %ld\\n", ticks(third) - k);
  /* a child of fork() has only the thread that forked: its runs make a pool of their own */
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    alarm(60); /* a child does not inherit the parent's alarm */
    memset(y, 0xff, sizeof y);
    _exit(net_run(&in, &out) != 0 || memcmp(first, y, sizeof y) != 0);
  }
  int status;
  if (child < 0 || waitpid(child, &status, 0) != child) return 1;
  printf("child: %d\\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}
`;

/**
 * The pool's split of one loop, driven directly (the program includes model.c): every iteration runs
 * exactly once, in 3,000 loops on 2 and 3 threads racing for the last chunks; when thread 1 is slow
 * (2 ms an iteration), the others take most of its share; when the other threads are asleep as a
 * loop begins, the caller takes from their shares before they wake; a fixed loop's iterations run
 * on the threads whose shares they are; and a thread's share is not lost when its part's tag comes
 * round again (after 65,535 loops it was left out of, or 65,535 fixed ones).
 */
const SPLIT = `#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include "model.c"

#define N 97
static int runs[N], by[N], slow;

static void count(const void *args, int32_t lo, int32_t hi, int32_t tid) {
  const struct timespec ms = { 0, 2000000 };
  int32_t i;
  (void)args;
  for (i = lo; i < hi; i++) {
    if (slow && tid == 1) nanosleep(&ms, NULL);
    __atomic_fetch_add(&runs[i], 1, __ATOMIC_RELAXED);
    by[i] = tid;
  }
}

static void nothing(const void *args, int32_t lo, int32_t hi, int32_t tid) {
  (void)args, (void)lo, (void)hi, (void)tid;
}

int main(void) {
  const struct timespec nap = { 0, 20000000 };
  int threads, i, k, taken;
  int32_t lo, hi;
  alarm(60);
  for (threads = 2; threads <= 3; threads++) {
    net_set_threads(threads);
    memset(runs, 0, sizeof runs);
    for (k = 0; k < 3000; k++) edgec_pool_run(N, count, NULL, 1);
    for (i = 0; i < N; i++) if (runs[i] != 3000) {
      printf("%d threads: iteration %d ran %d times in 3000 loops\\n", threads, i, runs[i]);
      return 1;
    }
    slow = 1;
    memset(runs, 0, sizeof runs);
    edgec_pool_run(N, count, NULL, 1);
    slow = 0;
    for (i = 0; i < N; i++) if (runs[i] != 1) return 1;
    edgec_share(N, 1, threads, &lo, &hi);
    for (taken = 0, i = lo; i < hi; i++) taken += by[i] != 1;
    printf("%d threads: %d of %d\\n", threads, taken, hi - lo);
    /* the other threads asleep when the loop begins: the caller, done with its share at once, sets
     * up theirs and takes from them */
    edgec_share(N, 0, threads, &lo, &hi);
    for (taken = 0, k = 0; k < 200 && !taken; k++) {
      nanosleep(&nap, NULL);
      memset(runs, 0, sizeof runs);
      edgec_pool_run(N, count, NULL, 1);
      for (i = 0; i < N; i++) if (runs[i] != 1) return 1;
      for (i = 0; i < N; i++) taken += (i < lo || i >= hi) && by[i] == 0;
    }
    printf("%d threads asleep: %d in %d loops\\n", threads, taken, k);
    /* a fixed loop: each thread its share, however slow */
    slow = 1;
    edgec_pool_run(N, count, NULL, 0);
    slow = 0;
    for (i = 0; i < N; i++) {
      for (k = 0; k < threads; k++) {
        edgec_share(N, k, threads, &lo, &hi);
        if (i >= lo && i < hi) break;
      }
      if (by[i] != k) {
        printf("fixed loop on %d threads: iteration %d ran on thread %d\\n", threads, i, by[i]);
        return 1;
      }
    }
  }
  /* 65,536 loops apart (the parts' tags come round again): a thread let back in after 65,535 loops
   * on fewer still runs its share, and so do the threads of 65,535 fixed loops (whose parts nobody
   * takes from) */
  for (k = 0; k < 2; k++) {
    net_set_threads(3);
    edgec_pool_run(N, count, NULL, 1);
    net_set_threads(2);
    for (i = 0; i < 65535; i++) edgec_pool_run(N, nothing, NULL, !k);
    net_set_threads(3);
    memset(runs, 0, sizeof runs);
    edgec_pool_run(N, count, NULL, 1);
    for (i = 0; i < N; i++) if (runs[i] != 1) {
      printf("%s: iteration %d ran %d times\\n", k ? "after fixed loops" : "let back in", i, runs[i]);
      return 1;
    }
  }
  return 0;
}
`;

describe("the thread pool", () => {
  it("makes its threads once, at the first run on more than one, and gives one thread's results on 1, 2 and 3 threads, sleeping and woken, race-free under ThreadSanitizer", async () => {
    const file = work.write("net.onnx", modelBytes({
      inputs: [valueInfo("x", T.FLOAT, [1, 8, 13, 13])],
      initializers: [
        tensorProto("w", T.FLOAT, [16, 8, 3, 3], { floatData: Array.from({ length: 16 * 8 * 9 }, (_, i) => ((i * 37) % 19) / 9 - 1) }),
        tensorProto("w2", T.FLOAT, [4, 16, 1, 1], { floatData: Array.from({ length: 64 }, (_, i) => ((i * 11) % 7) / 3 - 1) }),
      ],
      nodes: [node("Conv", ["x", "w"], ["c"], [attr.ints("pads", [1, 1, 1, 1])]), node("Relu", ["c"], ["r"]), node("Conv", ["r", "w2"], ["y"])],
      outputs: [valueInfo("y", T.FLOAT)],
    }));
    const dir = join(work.dir, "net");
    // Four cores whatever this machine has, and every loop split, so that the pool runs each loop.
    await buildArtifact(file, dir, { target: { ...loadTarget("host"), cores: 4, parallelMinWork: 0 }, name: "net" });
    expect(readFileSync(join(dir, "model.c"), "utf8")).toMatch(/EDGEC_PARALLEL_RUN\(\d+, \w+, &edgec_args\);/);
    writeFileSync(join(dir, "app.c"), APP);
    for (const sanitizer of [[], ["-fsanitize=thread", "-g"]]) {
      const exe = join(dir, sanitizer.length ? "app-tsan" : "app");
      const cc = await run("gcc", ["-std=c99", "-O2", "-march=native", "-pthread", "-Wall", "-Wextra", "-Werror", ...sanitizer, "-o", exe, join(dir, "app.c"), join(dir, "model.c"), "-lm"], { cwd: dir });
      expect(cc.code, cc.stderr).toBe(0);
      const r = await run(exe, [], { cwd: dir, env: { ...process.env, TSAN_OPTIONS: "halt_on_error=1 exitcode=66 die_after_fork=0" } });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/ThreadSanitizer/);
      // ThreadSanitizer starts a thread of its own with the first one the program makes.
      const third = /^ticks of the third thread in runs on two: (\d+)$/m.exec(r.stdout);
      expect(third, "ticks of the third thread").not.toBeNull();
      expect(r.stdout.replace(third![0], "ticks")).toBe(`threads made by a run on one thread: 0\nset 3: 3, set 9: 4\nthreads made by runs on up to three: ${sanitizer.length ? 3 : 2}\nticks\nchild: 0\n`);
      expect(Number(third![1]), "clock ticks the thread a lower count leaves out ran").toBeLessThanOrEqual(2);
    }
    writeFileSync(join(dir, "split.c"), SPLIT);
    for (const sanitizer of [[], ["-fsanitize=thread", "-g"]]) {
      const exe = join(dir, sanitizer.length ? "split-tsan" : "split");
      const cc = await run("gcc", ["-std=c99", "-O2", "-march=native", "-pthread", "-Wall", "-Wextra", "-Werror", ...sanitizer, "-o", exe, join(dir, "split.c"), "-lm"], { cwd: dir });
      expect(cc.code, cc.stderr).toBe(0);
      const r = await run(exe, [], { cwd: dir, env: { ...process.env, TSAN_OPTIONS: "halt_on_error=1 exitcode=66" } });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/ThreadSanitizer/);
      // Thread 1 sleeps 2 ms an iteration of its share (48 and 32) and takes a quarter of it first: the
      // others, done with theirs, take most of the rest.
      const taken = [...r.stdout.matchAll(/^(\d) threads: (\d+) of (\d+)$/gm)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])]);
      expect(taken.map(([t, , share]) => [t, share])).toEqual([[2, 48], [3, 32]]);
      for (const [, n, share] of taken) expect(n, "iterations of the slow thread's share that others ran").toBeGreaterThanOrEqual(share / 2);
      // Waking takes tens of microseconds; the caller's share, a fraction of one.
      // On a busy machine a woken thread may take the caller's core first: up to 200 loops, stopping at
      // the first in which the caller took from a sleeping thread's share.
      const asleep = [...r.stdout.matchAll(/^(\d) threads asleep: (\d+) in \d+ loops$/gm)].map((m) => Number(m[2]));
      expect(asleep.length).toBe(2);
      for (const n of asleep) expect(n, "iterations of sleeping threads' shares the caller ran, in 200 loops").toBeGreaterThan(0);
    }
  });
});


describe("which loops the pool splits", () => {
  it("counts a statement's floating-point operations: a SiLU over a map is split where a Relu over it is not, and matches onnxruntime on two threads", async () => {
    // 32×128×128 floats are 65,536 vector statements of 8 lanes, half the least work split.
    const target = { ...loadTarget("host"), cores: 2, vectorBytes: 32, parallelMinWork: 131072 };
    const x = Float32Array.from({ length: 32 * 128 * 128 }, (_, i) => ((i * 7919) % 2001) / 200 - 5);
    for (const [act, split] of [["silu", true], ["relu", false]] as const) {
      const nodes = act === "silu" ? [node("Sigmoid", ["x"], ["s"]), node("Mul", ["x", "s"], ["y"])] : [node("Relu", ["x"], ["y"])];
      const file = work.write(`${act}.onnx`, modelBytes({ inputs: [valueInfo("x", T.FLOAT, [1, 32, 128, 128])], nodes, outputs: [valueInfo("y", T.FLOAT)] }));
      const dir = join(work.dir, act);
      await expectLikeOrt(file, dir, x, [1, 32, 128, 128], ["y"], { target });
      expect(/EDGEC_PARALLEL_RUN\(\d+, \w+, &edgec_args\);/.test(readFileSync(join(dir, "model.c"), "utf8")), act).toBe(split);
    }
  });
});
