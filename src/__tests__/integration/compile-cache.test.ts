// The built CLI's compile cache across processes (src/fabrik/compile-cache.ts, dist/cli/start.cjs): written in
// FABRIK_HOME when a kind of command first succeeds, grown by new kinds, left alone otherwise; never written by a
// failing command, with NODE_DISABLE_COMPILE_CACHE, or into a FABRIK_HOME that does not exist.
import { describe, it, expect } from "vitest";
import fs from "node:fs";
import module from "node:module";
import path from "node:path";
import { fabrik, makeTestEnv } from "../helpers/cli.js";
import { readCompileCache } from "../../fabrik/compile-cache.js";

const nodeHasOwnCache = typeof (module as { enableCompileCache?: unknown }).enableCompileCache === "function";

describe.skipIf(nodeHasOwnCache)("the compile cache of the built CLI (Node < 22.1)", () => {
  it("records each kind of command once, after it succeeds; the output is the same with and without the cache", async () => {
    const t = makeTestEnv("cc-");
    delete t.env.NODE_COMPILE_CACHE; // the cache in FABRIK_HOME, as users have it
    const file = path.join(t.fabrikHome, "cache", "compile", `v8-${process.version}-${process.arch}.bin`);
    const kinds = () => readCompileCache(fs.readFileSync(file))?.header.kinds;

    // FABRIK_HOME does not exist yet: nothing is written (and the command creates the home itself).
    expect((await fabrik(t, ["--help"])).code).toBe(0);
    expect(fs.existsSync(t.fabrikHome)).toBe(false);

    const first = await fabrik(t, ["runs", "list", "--no-live", "--json"]);
    expect(first.code).toBe(0);
    expect(fs.existsSync(file)).toBe(false); // the home was created by this very command, after the cache was looked for
    const again = await fabrik(t, ["runs", "list", "--no-live", "--json"]);
    expect(again.stdout).toBe(first.stdout);
    expect(kinds()).toEqual(["runs list"]);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);

    const mtime = fs.statSync(file).mtimeMs;
    expect((await fabrik(t, ["runs", "list", "--no-live", "--limit", "5"])).code).toBe(0);
    expect(fs.statSync(file).mtimeMs).toBe(mtime); // the same kind: not rewritten

    expect((await fabrik(t, ["runs", "show", "--id", "99", "--no-live"])).code).toBe(4); // fails: not recorded
    expect(kinds()).toEqual(["runs list"]);
    const help = await fabrik(t, ["--help"]);
    expect(kinds()).toEqual(["runs list", "fabrik +help"]);
    const helpNoCache = await fabrik(t, ["--help"], { env: { ...t.env, NODE_DISABLE_COMPILE_CACHE: "1" } });
    expect(helpNoCache.stdout).toBe(help.stdout);
  });

  it("NODE_COMPILE_CACHE=DIR: one cache in DIR, shared by every FABRIK_HOME, none in the homes", async () => {
    const a = makeTestEnv("cc-shared-a-");
    const b = makeTestEnv("cc-shared-b-");
    const dir = path.join(a.tmp, "shared-cache");
    a.env.NODE_COMPILE_CACHE = b.env.NODE_COMPILE_CACHE = dir;
    const file = path.join(dir, `v8-${process.version}-${process.arch}.bin`);
    expect((await fabrik(a, ["runs", "list", "--no-live"])).code).toBe(0);
    expect(readCompileCache(fs.readFileSync(file))?.header.kinds).toEqual(["runs list"]);
    expect((await fabrik(b, ["vm", "list"])).code).toBe(0);
    expect(readCompileCache(fs.readFileSync(file))?.header.kinds).toEqual(["runs list", "vm list"]);
    for (const t of [a, b]) expect(fs.existsSync(path.join(t.fabrikHome, "cache", "compile"))).toBe(false);
  });

  it("NODE_DISABLE_COMPILE_CACHE=1 writes nothing", async () => {
    const t = makeTestEnv("cc-off-");
    delete t.env.NODE_COMPILE_CACHE;
    fs.mkdirSync(t.fabrikHome, { recursive: true });
    expect((await fabrik(t, ["--help"], { env: { ...t.env, NODE_DISABLE_COMPILE_CACHE: "1" } })).code).toBe(0);
    expect(fs.existsSync(path.join(t.fabrikHome, "cache", "compile"))).toBe(false);
  });
});
