import { describe, expect, test } from "vitest";
import { tempDir } from "../helpers/onnx-builder.js";
import { parseHostSpec, readInventory } from "../../src/deploy/inventory.js";

/** Ansible inventories as operators have them: YAML and INI, group vars, children, ranges. */
const work = tempDir("edgec-inventory-");

describe("inventory", () => {
  test("YAML: nested groups, group vars under host vars, defaults", () => {
    const f = work.write(
      "inv.yml",
      `all:
  vars: { edgec_dir: /opt/models, ansible_user: pi }
  children:
    jetsons:
      vars: { edgec_target: jetson }
      hosts:
        j1: { ansible_host: 10.0.0.1, ansible_port: 2222 }
        j2: { ansible_host: 10.0.0.2, ansible_user: nvidia, edgec_dir: apps/edgec }
    pis:
      hosts:
        pi[01:03]:
          ansible_ssh_private_key_file: ~/.ssh/pi
`,
    );
    const hosts = readInventory(f);
    expect(hosts.map((h) => h.name)).toEqual(["j1", "j2", "pi01", "pi02", "pi03"]);
    expect(hosts[0]).toMatchObject({ address: "10.0.0.1", port: 2222, user: "pi", target: "jetson", dir: "/opt/models", groups: ["jetsons"] });
    expect(hosts[1]).toMatchObject({ user: "nvidia", dir: "apps/edgec" });
    expect(hosts[2]).toMatchObject({ address: "pi01", keyFile: "~/.ssh/pi", target: undefined });
    expect(readInventory(f, { limit: "pis" }).length).toBe(3);
  });

  test("INI: host lines, :vars, :children", () => {
    const f = work.write(
      "hosts",
      `# fleet
[rk]
rk1 ansible_host=127.0.0.1 ansible_port=2201 edgec_target=rk3588
rk2 ansible_host=127.0.0.2

[rk:vars]
ansible_user=radxa

[boards:children]
rk

[all:vars]
edgec_dir=edgec-models
`,
    );
    const hosts = readInventory(f);
    expect(hosts).toHaveLength(2);
    expect(hosts[0]).toMatchObject({ name: "rk1", address: "127.0.0.1", port: 2201, user: "radxa", target: "rk3588", dir: "edgec-models" });
    expect(hosts[0].groups).toEqual(["boards", "rk"]);
  });

  test("refuses remote directories that could escape or need quoting", () => {
    for (const dir of ["../x", "a/../../b", "a b", "$(reboot)", "-rf", "a;b"]) {
      const f = work.write("bad.yml", `all:\n  hosts:\n    h: { edgec_dir: "${dir}" }\n`);
      expect(() => readInventory(f), dir).toThrow(/not allowed/);
    }
    expect(parseHostSpec("pi@[::1]:2200")).toMatchObject({ user: "pi", address: "::1", port: 2200 });
    expect(() => parseHostSpec("a b")).toThrow();
  });
});
