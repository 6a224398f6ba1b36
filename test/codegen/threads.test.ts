import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildArtifact } from "../../src/driver/artifact.js";
import { loadTarget } from "../../src/target/load.js";
import { attr, modelBytes, node, T, tempDir, tensorProto, valueInfo } from "../helpers/onnx-builder.js";
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

static int tasks(void) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* the state (R running, S sleeping...) of the thread made last */
static char newest_state(void) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  long newest = 0;
  char path[64], line[256], *p;
  FILE *f;
  while ((e = readdir(d)) != NULL) if (atol(e->d_name) > newest) newest = atol(e->d_name);
  closedir(d);
  snprintf(path, sizeof path, "/proc/self/task/%ld/stat", newest);
  f = fopen(path, "r");
  if (!f || !fgets(line, sizeof line, f) || !(p = strrchr(line, ')'))) return '?';
  fclose(f);
  return p[2];
}

int main(void) {
  static float x[8 * 13 * 13], first[4 * 13 * 13], y[4 * 13 * 13];
  const struct timespec nap = { 0, 200000000 };
  net_inputs in = { x };
  net_outputs out = { y }, ref = { first };
  size_t i;
  /* threads made since the start */
  const int before = tasks();
  alarm(60); /* a loop waiting for a thread that never comes would never end */
  for (i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)((i * 7919) % 113) / 56.0f - 1.0f;
  net_set_threads(1);
  if (net_run(&in, &ref) != 0) return 1;
  printf("threads made by a run on one thread: %d\\n", tasks() - before);
  printf("set 3: %d, set 9: %d\\n", net_set_threads(3), net_set_threads(9));
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
  printf("threads made by runs on up to three: %d\\n", tasks() - before);
  /* a thread the count leaves out sleeps, where the others spin between loops */
  net_set_threads(2);
  for (i = 0; i < 50; i++) net_run(&in, &out);
  printf("the third thread after runs on two: %c\\n", newest_state());
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
      expect(r.stdout).toBe(`threads made by a run on one thread: 0\nset 3: 3, set 9: 4\nthreads made by runs on up to three: ${sanitizer.length ? 3 : 2}\nthe third thread after runs on two: S\nchild: 0\n`);
    }
  });
});

