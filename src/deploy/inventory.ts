import { readFileSync } from "node:fs";
import { YAML } from "zx";
import { EdgecError } from "../core/diag.js";

/** One device to deploy to, after the inventory's group and host variables are merged. */
export interface Host {
  name: string;
  address: string;
  port?: number;
  user?: string;
  keyFile?: string;
  /** edgec_target: the target the device is (checked against the artifact's) */
  target?: string;
  /** edgec_dir: remote directory, relative to the login directory unless absolute */
  dir: string;
  groups: string[];
}

export const DEFAULT_REMOTE_DIR = "edgec";

type Vars = Record<string, unknown>;
type Entry = { vars: Vars[]; hostVars: Vars; groups: Set<string> };

/** Remote directories are used unquoted by scp, so they are held to a conservative alphabet. */
export function checkRemoteDir(dir: string, where: string): string {
  const d = dir.replace(/^~\//, "");
  if (!/^[A-Za-z0-9._/-]+$/.test(d) || d.startsWith("-") || d.split("/").some((c) => c === ".." ) || /^\/*$/.test(d)) {
    throw new EdgecError(`${where}: remote directory '${dir}' is not allowed (letters, digits, . _ - / only, no '..')`);
  }
  return d.replace(/\/+$/, "");
}

function toHost(name: string, e: Entry, defaultDir: string, file: string): Host {
  const v: Vars = Object.assign({}, ...e.vars, e.hostVars);
  const str = (k: string) => (v[k] === undefined || v[k] === null ? undefined : String(v[k]));
  const port = str("ansible_port") ?? str("ansible_ssh_port");
  if (port !== undefined && !/^\d+$/.test(port)) throw new EdgecError(`${file}: host '${name}': ansible_port '${port}' is not a number`);
  return {
    name,
    address: str("ansible_host") ?? str("ansible_ssh_host") ?? name,
    port: port === undefined ? undefined : Number(port),
    user: str("ansible_user") ?? str("ansible_ssh_user"),
    keyFile: str("ansible_ssh_private_key_file"),
    target: str("edgec_target"),
    dir: checkRemoteDir(str("edgec_dir") ?? defaultDir, `${file}: host '${name}'`),
    groups: [...e.groups].sort(),
  };
}

/** "dev[01:20]" → dev01 … dev20 (Ansible's numeric host ranges). */
function expandRange(pattern: string): string[] {
  const m = /^(.*)\[(\d+):(\d+)\](.*)$/.exec(pattern);
  if (!m) return [pattern];
  const [, pre, a, b, post] = m;
  const out: string[] = [];
  for (let i = Number(a); i <= Number(b); i++) out.push(...expandRange(`${pre}${String(i).padStart(a.length, "0")}${post}`));
  return out;
}

/** YAML inventory: nested groups with hosts, vars and children; group vars deeper in the tree win. */
function parseYaml(doc: unknown, file: string): Map<string, Entry> {
  const hosts = new Map<string, Entry>();
  const walk = (group: string, body: unknown, inherited: Vars[], parents: string[] = []) => {
    if (body === null || body === undefined) return;
    if (typeof body !== "object") throw new EdgecError(`${file}: group '${group}' must be a mapping`);
    const g = body as { hosts?: Record<string, Vars | null>; vars?: Vars; children?: Record<string, unknown> };
    const vars = g.vars ? [...inherited, g.vars] : inherited;
    for (const [pattern, hv] of Object.entries(g.hosts ?? {})) {
      for (const name of expandRange(pattern)) {
        const e = hosts.get(name) ?? { vars: [], hostVars: {}, groups: new Set<string>() };
        e.vars.push(...vars.filter((x) => !e.vars.includes(x)));
        Object.assign(e.hostVars, hv ?? {});
        for (const g of [...parents, group]) if (g !== "all") e.groups.add(g);
        hosts.set(name, e);
      }
    }
    for (const [child, cb] of Object.entries(g.children ?? {})) walk(child, cb, vars, [...parents, group]);
  };
  if (!doc || typeof doc !== "object") throw new EdgecError(`${file}: an inventory must be a mapping of groups`);
  for (const [group, body] of Object.entries(doc)) walk(group, body, []);
  return hosts;
}

const unquote = (s: string) => s.replace(/^(["'])(.*)\1$/, "$2");

/** INI inventory: [group] host lines with key=value, [group:vars], [group:children]. */
function parseIni(text: string, file: string): Map<string, Entry> {
  const members = new Map<string, { hosts: Map<string, Vars>; vars: Vars; children: string[] }>();
  const group = (n: string) => members.get(n) ?? members.set(n, { hosts: new Map(), vars: {}, children: [] }).get(n)!;
  let section = "ungrouped";
  let kind = "hosts";
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/^\s*[#;].*$/, "").trim();
    if (!line) return;
    const sec = /^\[([^\]:]+)(?::(vars|children))?\]$/.exec(line);
    if (sec) {
      [section, kind] = [sec[1], sec[2] ?? "hosts"];
      group(section);
      return;
    }
    const tokens: string[] = line.match(/(?:[^\s"']+|"[^"]*"|'[^']*')+/g) ?? [];
    const first = tokens[0] ?? "";
    const kv = (t: string) => {
      const eq = t.indexOf("=");
      if (eq <= 0) throw new EdgecError(`${file}:${i + 1}: expected key=value, got '${t}'`);
      return [t.slice(0, eq), unquote(t.slice(eq + 1))] as const;
    };
    if (kind === "vars") Object.assign(group(section).vars, Object.fromEntries([kv(line.replace(/\s*=\s*/, "="))]));
    else if (kind === "children") group(section).children.push(first);
    else for (const name of expandRange(first)) group(section).hosts.set(name, Object.fromEntries(tokens.slice(1).map(kv)));
  });
  const hosts = new Map<string, Entry>();
  const visit = (name: string, inherited: Vars[], seen: string[]) => {
    if (seen.includes(name)) throw new EdgecError(`${file}: group '${name}' is its own child`);
    const g = group(name);
    const vars = [...inherited, g.vars];
    for (const [h, hv] of g.hosts) {
      const e = hosts.get(h) ?? { vars: [], hostVars: {}, groups: new Set<string>() };
      e.vars.push(...vars.filter((x) => !e.vars.includes(x)));
      Object.assign(e.hostVars, hv);
      for (const g of [...seen, name]) e.groups.add(g);
      hosts.set(h, e);
    }
    for (const c of g.children) visit(c, vars, [...seen, name]);
  };
  const all = members.get("all")?.vars ?? {};
  const children = new Set([...members.values()].flatMap((g) => g.children));
  for (const name of members.keys()) if (name !== "all" && !children.has(name)) visit(name, [all], []);
  return hosts;
}

/** Reads an Ansible inventory (YAML or INI); `limit` keeps the hosts named so or in a group so named. */
export function readInventory(file: string, opts: { defaultDir?: string; limit?: string } = {}): Host[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new EdgecError(`${file}: cannot read the inventory (${(e as Error).message})`);
  }
  const firstLine = text.split("\n").find((l) => l.trim() && !/^\s*[#;]/.test(l)) ?? "";
  let entries: Map<string, Entry>;
  if (/\.(ya?ml)$/i.test(file) || (!/\.(ini|cfg)$/i.test(file) && !firstLine.trim().startsWith("["))) {
    let doc: unknown;
    try {
      doc = YAML.parse(text);
    } catch (e) {
      throw new EdgecError(`${file}: invalid YAML (${(e as Error).message.split("\n")[0]})`);
    }
    entries = parseYaml(doc, file);
  } else entries = parseIni(text, file);
  const hosts = [...entries].map(([name, e]) => toHost(name, e, opts.defaultDir ?? DEFAULT_REMOTE_DIR, file));
  const kept = opts.limit ? hosts.filter((h) => h.name === opts.limit || h.groups.includes(opts.limit!)) : hosts;
  if (!kept.length) throw new EdgecError(`${file}: no hosts${opts.limit ? ` match --limit '${opts.limit}'` : ""}`);
  return kept;
}

/** "user@host:port" (IPv6 as "[::1]:22") → a host. */
export function parseHostSpec(spec: string, dir = DEFAULT_REMOTE_DIR): Host {
  const m = /^(?:([^@\s]+)@)?(\[[^\]]+\]|[^:@\s[\]]+)(?::(\d+))?$/.exec(spec);
  if (!m) throw new EdgecError(`--host '${spec}': expected [user@]host[:port]`);
  return { name: spec, user: m[1], address: m[2].replace(/^\[|\]$/g, ""), port: m[3] ? Number(m[3]) : undefined, dir: checkRemoteDir(dir, `--host '${spec}'`), groups: [] };
}
