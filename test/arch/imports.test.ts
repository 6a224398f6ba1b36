import { describe, expect, it } from "vitest";
import { Project } from "ts-morph";
import { relative, sep } from "node:path";

/** The layers of STYLE.md §1 and what each may import; imports flow one way. */
const ALLOWED: Record<string, string[]> = {
  core: [],
  target: ["core"],
  "frontend/onnx": ["core", "graph"],
  graph: ["core", "target"],
  loop: ["graph", "core", "target"],
  codegen: ["loop", "core", "target"],
  driver: ["core", "target", "frontend/onnx", "graph", "loop", "codegen", "deploy"],
  deploy: ["core"],
  cli: ["driver", "deploy", "target", "core", "frontend/onnx"],
};

const layerOf = (file: string): string => {
  const rel = relative("src", file).split(sep).join("/");
  return Object.keys(ALLOWED).filter((l) => rel.startsWith(`${l}/`)).sort((a, b) => b.length - a.length)[0] ?? "?";
};

describe("architecture", () => {
  const project = new Project({ tsConfigFilePath: "tsconfig.json", skipAddingFilesFromTsConfig: false });
  const files = project.getSourceFiles().filter((f) => relative(".", f.getFilePath()).startsWith("src"));

  it("finds the sources", () => {
    expect(files.length).toBeGreaterThan(20);
  });

  it("imports flow core → target → graph → loop → codegen → driver → cli", () => {
    const bad: string[] = [];
    for (const f of files) {
      const from = layerOf(relative(".", f.getFilePath()));
      for (const imp of f.getImportDeclarations()) {
        const target = imp.getModuleSpecifierSourceFile();
        if (!target || !relative(".", target.getFilePath()).startsWith("src")) continue;
        const to = layerOf(relative(".", target.getFilePath()));
        if (to !== from && !ALLOWED[from]?.includes(to)) bad.push(`${relative(".", f.getFilePath())} (${from}) imports ${to}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it("only codegen/template.ts touches Handlebars and only frontend/onnx touches onnx-proto", () => {
    const users = (pkg: string) =>
      files.filter((f) => f.getImportDeclarations().some((i) => i.getModuleSpecifierValue() === pkg)).map((f) => relative("src", f.getFilePath()).split(sep).join("/"));
    expect(users("handlebars")).toEqual(["codegen/template.ts"]);
    expect(users("onnx-proto").every((f) => f.startsWith("frontend/onnx/"))).toBe(true);
  });
});
