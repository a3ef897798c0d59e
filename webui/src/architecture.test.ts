/**
 * The layout rules of style.md §8(d), checked on every test run: kebab-case file and folder
 * names, and one-way imports (shared code -> features -> app, and no feature importing another
 * except the declared, one-way dependencies below; the app composes features).
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = dirname(fileURLToPath(import.meta.url));

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? [path, ...walk(path)] : [path];
  });
}

const paths = walk(SRC).map((path) => relative(SRC, path).split("\\").join("/"));
const sourceFiles = paths.filter((p) => /\.(ts|tsx)$/.test(p));

// Speech records what it generates as sessions, so it may use the sessions store; never the reverse.
// Conversion picks its target among the library's voices and takes its clip through the voices' clip field.
const FEATURE_DEPENDENCIES: Record<string, string[]> = { speech: ["sessions"], convert: ["voices"] };

function importsOf(file: string): string[] {
  const text = readFileSync(join(SRC, file), "utf8");
  return [...text.matchAll(/from\s+"(@\/[^"]+)"/g)].map((m) => m[1].slice(2));
}

describe("source layout", () => {
  it("names every file and folder in kebab-case", () => {
    const kebab = /^[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+)*$/;
    const offenders = paths.filter((p) => !kebab.test(p.split("/").pop()!));
    expect(offenders).toEqual([]);
  });

  it("keeps imports one-way: shared code never imports features or the app", () => {
    const shared = sourceFiles.filter((f) => /^(lib|components|config|stores|utils)\//.test(f));
    const offenders = shared.flatMap((f) =>
      importsOf(f)
        .filter((target) => /^(features|app)\//.test(target))
        .map((target) => `${f} -> ${target}`),
    );
    expect(offenders).toEqual([]);
  });

  it("keeps features independent of each other, but for the declared dependencies", () => {
    const offenders = sourceFiles
      .filter((f) => f.startsWith("features/"))
      .flatMap((f) => {
        const own = f.split("/")[1];
        return importsOf(f)
          .filter((target) => target.startsWith("features/"))
          .filter((target) => ![own, ...(FEATURE_DEPENDENCIES[own] ?? [])].includes(target.split("/")[1]))
          .map((target) => `${f} -> ${target}`);
      });
    expect(offenders).toEqual([]);
  });

  it("keeps lib/ to preconfigured libraries: no application state in it", () => {
    const stateful = sourceFiles.filter((f) => f.startsWith("lib/") && /from\s+"zustand"/.test(readFileSync(join(SRC, f), "utf8")));
    expect(stateful).toEqual([]);
  });

  it("keeps files small", () => {
    const long = sourceFiles.filter((f) => readFileSync(join(SRC, f), "utf8").split("\n").length > 400);
    expect(long).toEqual([]);
  });
});
