import type { FleetReport } from "./deploy.js";

/**
 * One line per host. On a terminal the block is redrawn in place (at most every 100 ms); otherwise
 * each change is printed as its own line, so logs stay readable.
 */
export class Progress {
  private lines = new Map<string, string>();
  private drawn = 0;
  private timer?: NodeJS.Timeout;
  constructor(private readonly out: NodeJS.WriteStream = process.stderr, private readonly live = !!out.isTTY) {}

  start(hosts: string[]) {
    for (const h of hosts) this.lines.set(h, "waiting");
    if (this.live) this.timer = setInterval(() => this.draw(), 100);
  }

  set(host: string, state: string) {
    this.lines.set(host, state);
    if (!this.live) this.out.write(`${host}: ${state}\n`);
  }

  done(host: string, state: string) {
    this.set(host, state);
  }

  stop() {
    clearInterval(this.timer);
    if (this.live) this.draw();
  }

  private draw() {
    const width = Math.max(...[...this.lines.keys()].map((h) => h.length));
    const text = [...this.lines].map(([h, s]) => `${h.padEnd(width)}  ${s}`.slice(0, (this.out.columns || 120) - 1));
    this.out.write(`${this.drawn ? `\x1b[${this.drawn}A` : ""}${text.map((l) => `\x1b[2K${l}\n`).join("")}`);
    this.drawn = text.length;
  }
}

/** The summary table printed after a fleet command. */
export function formatReport(r: FleetReport): string {
  const rows = r.hosts.map((h) => [h.host, h.address, h.status, h.current ?? "-", h.previous ?? "-", `${(h.ms / 1000).toFixed(1)}s`, h.error ? `${h.step ? `${h.step}: ` : ""}${h.error}` : String(h.info?.model ?? "")]);
  const head = ["host", "address", "status", "current", "previous", "time", r.action === "status" ? "model" : "error"];
  const widths = head.map((x, i) => Math.max(x.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd();
  const total = `${r.action}${r.release ? ` ${r.release}` : ""}: ${r.ok} ok, ${r.failed} failed, ${(r.ms / 1000).toFixed(1)}s`;
  return [line(head), ...rows.map(line), total].join("\n") + "\n";
}
