import { describe, expect, test } from "vitest";
import { status } from "../../src/deploy/deploy.js";
import type { Host } from "../../src/deploy/inventory.js";
import { freePort } from "./devices.js";

/**
 * A host that is down makes ssh exit at once. The remote scripts once went to ssh's stdin, and
 * writing them after ssh had exited raised EPIPE with no handler: node died with exit code 1 before
 * printing anything (a flaky `fleet status`, about one ssh call in fifty). Many down hosts in one
 * process make that near certain (the error would be an unhandled one in this worker); now every
 * host must be reported.
 */
describe("ssh to hosts that are down", () => {
  test("fleet status reports each of 120 down hosts instead of crashing", async () => {
    const port = await freePort();
    const hosts: Host[] = Array.from({ length: 120 }, (_, i) => ({ name: `down${i}`, address: "127.0.0.1", port, dir: "edgec", groups: [] }));
    const r = await status(hosts, { ssh: { options: ["BatchMode=yes"] }, parallel: 8, timeoutS: 60, retries: 0 });
    expect(r.failed).toBe(120);
    for (const h of r.hosts) expect(h.error).toMatch(/Connection refused/);
  });
});
