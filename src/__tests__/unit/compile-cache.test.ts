// The start-up's compile cache (src/fabrik/compile-cache.ts), in-process: a small CommonJS bundle is compiled
// through vm.Script, its V8 data written, read back and accepted; anything that does not match is ignored.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import module from "node:module";
import { commandKind, compileCacheFile, encodeCompileCache, loadBundle, readCompileCache } from "../../fabrik/compile-cache.js";

const nodeHasOwnCache = typeof (module as { enableCompileCache?: unknown }).enableCompileCache === "function";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-cc-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const BUNDLE = `"use strict";
const path = require("node:path");
function twice(n) { return n * 2; }
module.exports = { twice, file: __filename, dir: __dirname, base: path.basename(__filename), strict: (function () { return this === undefined; })() };
`;

describe("commandKind", () => {
  it("names a command by its first two words, skipping option values", () => {
    expect(commandKind(["runs", "show", "--id", "5", "--no-live"])).toBe("runs show");
    expect(commandKind(["runs", "show", "--id", "9"])).toBe("runs show");
    expect(commandKind(["vm", "create", "bench01", "--no-engine"])).toBe("vm create");
    expect(commandKind(["--help"])).toBe("fabrik +help");
    expect(commandKind(["runs", "list", "-h"])).toBe("runs list +help");
    expect(commandKind(["--get-yargs-completions", "runs", ""])).toBe("completion");
    expect(commandKind(["vm", "shell", "x", "--", "ls", "-la"])).toBe("vm shell");
    expect(commandKind(["RUNS", "x".repeat(40)])).toBe("fabrik");
  });
});

describe("the cache file", () => {
  it("round-trips its header and data; anything else is not a cache", () => {
    const bytes = encodeCompileCache({ bundle: "12:34.5", node: "v20.0.0", kinds: ["runs show"] }, Buffer.from([0, 10, 255]));
    const back = readCompileCache(bytes);
    expect(back?.header).toEqual({ bundle: "12:34.5", node: "v20.0.0", kinds: ["runs show"] });
    expect([...back!.data]).toEqual([0, 10, 255]);
    expect(readCompileCache(Buffer.from("not a cache\n{}\n"))).toBeUndefined();
    expect(readCompileCache(Buffer.from("fabrik-v8-cache 1\n{\"bundle\":1}\n"))).toBeUndefined();
    expect(readCompileCache(Buffer.from("fabrik-v8-cache 1\nnot json\n"))).toBeUndefined();
  });

  it("lives in FABRIK_HOME/cache, and only when FABRIK_HOME exists (it is never created here)", () => {
    expect(compileCacheFile(dir, {})).toBe(path.join(dir, "cache", "compile", `v8-${process.version}-${process.arch}.bin`));
    expect(compileCacheFile(path.join(dir, "missing"), {})).toBeUndefined();
    fs.writeFileSync(path.join(dir, "file"), "");
    expect(compileCacheFile(path.join(dir, "file"), {})).toBeUndefined();
  });

  it("lives in NODE_COMPILE_CACHE when that is set, whatever FABRIK_HOME is", () => {
    const shared = path.join(dir, "shared");
    const want = path.join(shared, `v8-${process.version}-${process.arch}.bin`);
    expect(compileCacheFile(dir, { NODE_COMPILE_CACHE: shared })).toBe(want);
    expect(compileCacheFile(path.join(dir, "missing"), { NODE_COMPILE_CACHE: shared })).toBe(want);
    expect(compileCacheFile(dir, { NODE_COMPILE_CACHE: "" })).toBe(path.join(dir, "cache", "compile", `v8-${process.version}-${process.arch}.bin`));
  });
});

describe.skipIf(nodeHasOwnCache)("loadBundle with V8's code cache (Node < 22.1)", () => {
  it("runs the bundle as CommonJS (strict, its own require and paths), writes the cache, then V8 accepts it", () => {
    const file = path.join(dir, "bundle.cjs");
    fs.writeFileSync(file, BUNDLE);
    const cacheFile = path.join(dir, "home", "cache", "compile", "v8.bin");

    const first = loadBundle(file, { cacheFile, kind: "runs show", onExit: false });
    const m = first.exports as { twice: (n: number) => number; file: string; dir: string; base: string; strict: boolean };
    expect(m.twice(21)).toBe(42);
    expect(m).toMatchObject({ file, dir, base: "bundle.cjs", strict: true });
    expect(first.report).toEqual({ mode: "v8", accepted: false, willWrite: true });
    first.save();
    expect(fs.statSync(cacheFile).mode & 0o777).toBe(0o600);
    expect(readCompileCache(fs.readFileSync(cacheFile))?.header.kinds).toEqual(["runs show"]);

    const second = loadBundle(file, { cacheFile, kind: "runs show", onExit: false });
    expect((second.exports as typeof m).twice(4)).toBe(8);
    expect(second.report).toEqual({ mode: "v8", accepted: true, willWrite: false });

    // A new kind of command: accepted, and the cache is rewritten to cover both.
    const third = loadBundle(file, { cacheFile, kind: "vm list", onExit: false });
    expect(third.report).toEqual({ mode: "v8", accepted: true, willWrite: true });
    third.save();
    expect(readCompileCache(fs.readFileSync(cacheFile))?.header.kinds).toEqual(["runs show", "vm list"]);
  });

  it("ignores a cache made from another build of the bundle, and one that is not V8's data", () => {
    const file = path.join(dir, "bundle.cjs");
    fs.writeFileSync(file, BUNDLE);
    const cacheFile = path.join(dir, "v8.bin");
    loadBundle(file, { cacheFile, kind: "a", onExit: false }).save();
    // Same length, new content (a rebuild): the header's mtime no longer matches.
    fs.writeFileSync(file, BUNDLE.replace("n * 2", "n + n"));
    fs.utimesSync(file, new Date(), new Date(Date.now() + 5000));
    const rebuilt = loadBundle(file, { cacheFile, kind: "a", onExit: false });
    expect(rebuilt.report.accepted).toBe(false);
    expect((rebuilt.exports as { twice: (n: number) => number }).twice(3)).toBe(6);

    // A header that matches but data V8 cannot use: rejected, the bundle still runs. (A source this process has
    // not compiled yet: V8 would take an earlier compilation of the same text from its own in-memory cache.)
    fs.writeFileSync(file, BUNDLE + "// another build\n");
    const st = fs.statSync(file);
    fs.writeFileSync(cacheFile, encodeCompileCache({ bundle: `${st.size}:${st.mtimeMs}`, node: process.version, kinds: ["a"] }, Buffer.from("garbage")));
    const garbage = loadBundle(file, { cacheFile, kind: "a", onExit: false });
    expect(garbage.report).toEqual({ mode: "v8", accepted: false, willWrite: true });
    expect((garbage.exports as { twice: (n: number) => number }).twice(5)).toBe(10);
  });

  it("is off without a cache file or with NODE_DISABLE_COMPILE_CACHE, and never writes then", () => {
    const file = path.join(dir, "bundle.cjs");
    fs.writeFileSync(file, BUNDLE);
    const cacheFile = path.join(dir, "v8.bin");
    const off = loadBundle(file, { cacheFile, kind: "a", env: { NODE_DISABLE_COMPILE_CACHE: "1" }, onExit: false });
    expect(off.report.mode).toBe("off");
    expect((off.exports as { twice: (n: number) => number }).twice(1)).toBe(2);
    off.save();
    expect(fs.existsSync(cacheFile)).toBe(false);
    expect(loadBundle(file, { cacheFile: undefined, kind: "a", onExit: false }).report.mode).toBe("off");
  });
});
