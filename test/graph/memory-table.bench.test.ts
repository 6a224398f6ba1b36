import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";
import { IRREGULAR_SUITE } from "../helpers/irregular.js";
import { formatTable, memoryRow } from "../helpers/memory-table.js";

/**
 * Issue 5's table: peak activation memory of every irregular network in the graph's own order, with
 * edgec's dynamic-program schedule, and with the rewrites it keeps; the arena against its lower
 * bound; the time the graph passes take with the default scheduling limit. Printed and written to
 * build/memory-table.md. Run it with `make bench-memory`.
 */
test("memory table", async () => {
  const rows = [];
  for (const net of IRREGULAR_SUITE) {
    rows.push(memoryRow(net));
    // Let vitest's worker talk to its parent between networks; one can take 20 s.
    await new Promise((resolve) => setImmediate(resolve));
  }
  const table = formatTable(rows);
  const out = fileURLToPath(new URL("../../build", import.meta.url));
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "memory-table.md"), table + "\n");
  console.log(table);
  expect(rows.every((r) => r.rewritten <= r.dp && r.dp <= r.topo)).toBe(true);
}, 3_600_000);
