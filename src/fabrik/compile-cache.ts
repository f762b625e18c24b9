/**
 * Loading the CLI bundle (`dist/cli/fabrik.cjs`) with a compile cache, so a command does not compile the same
 * JavaScript again at every start.
 *
 * - Node ≥ 22.1 has its own (`module.enableCompileCache(dir)`): it is used as it is.
 * - Node 20 has none, and V8 spends about a third of a cache-only command's CPU compiling fabrik's code (measured
 *   with `node --cpu-prof`: yargs, the command tree, the registry). There the bundle is compiled through
 *   `vm.Script` with V8's code cache (`cachedData`): the cache is produced at the end of a successful command, so it
 *   holds every function that command ran, and it grows (is rewritten) only the first time each kind of command
 *   (`runs show`, `vm create`, `--help`, …) succeeds.
 *
 * The cache is one file, `$FABRIK_HOME/cache/compile/v8-<node version>-<arch>.bin`: a header line (JSON: the
 * bundle's size and mtime, the Node version, the kinds of command it covers) and V8's data. It is only a cache: a
 * header that does not match the bundle, data V8 rejects (another V8, other flags), an unreadable or unwritable
 * file — each just means compiling as without it. FABRIK_HOME is never created here (a command reports an
 * unusable one); `NODE_DISABLE_COMPILE_CACHE=1` (Node's own switch) turns the cache off, and `NODE_COMPILE_CACHE=DIR`
 * (Node's own variable too) puts it in DIR instead, shared by every FABRIK_HOME (the test suite does, so its
 * hundreds of short-lived FABRIK_HOMEs do not each compile the bundle again).
 */
import fs from "node:fs";
import path from "node:path";
import vm from "node:vm";
import { createRequire } from "node:module";
import module from "node:module";

const MAGIC = "fabrik-v8-cache 1";
/** The most kinds of command one cache records; past it the file is no longer rewritten. */
const MAX_KINDS = 64;

/** The header line of a cache file. */
export interface CompileCacheHeader {
  /** `<size>:<mtime ms>` of the bundle the data was produced from. */
  bundle: string;
  /** `process.version` that produced it. */
  node: string;
  /** The kinds of command ({@link commandKind}) whose functions the data holds. */
  kinds: string[];
}

/**
 * The kind of command `argv` runs, as a cache label: its first two command words (`runs show`, `vm create`),
 * `+help` when it asks for help, `completion` for shell completion. Values of options are skipped (they do not
 * look like command words), so `runs show --id 5` and `runs show --id 9` are one kind.
 */
export function commandKind(argv: readonly string[]): string {
  const words: string[] = [];
  let help = false;
  for (const a of argv) {
    if (a === "--") break;
    if (a === "--get-yargs-completions") return "completion";
    if (a === "--help" || a === "-h") help = true;
    else if (!a.startsWith("-") && words.length < 2 && /^[a-z][a-z-]{0,19}$/.test(a)) words.push(a);
  }
  return (words.join(" ") || "fabrik") + (help ? " +help" : "");
}

/**
 * The cache file: in `env.NODE_COMPILE_CACHE` when that is set (created when missing), else in FABRIK_HOME
 * `home` — undefined when that does not exist (a command will say why).
 */
export function compileCacheFile(home: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const name = `v8-${process.version}-${process.arch}.bin`;
  if (env.NODE_COMPILE_CACHE) return path.join(path.resolve(env.NODE_COMPILE_CACHE), name);
  try {
    if (!fs.statSync(home).isDirectory()) return undefined;
  } catch {
    return undefined;
  }
  return path.join(home, "cache", "compile", name);
}

/** Parse a cache file: its header and V8's data, or undefined when it is not one. */
export function readCompileCache(buf: Buffer): { header: CompileCacheHeader; data: Buffer } | undefined {
  const nl1 = buf.indexOf(10);
  if (nl1 < 0 || buf.toString("latin1", 0, nl1) !== MAGIC) return undefined;
  const nl2 = buf.indexOf(10, nl1 + 1);
  if (nl2 < 0) return undefined;
  try {
    const h = JSON.parse(buf.toString("utf8", nl1 + 1, nl2)) as Partial<CompileCacheHeader>;
    if (typeof h.bundle !== "string" || typeof h.node !== "string" || !Array.isArray(h.kinds)) return undefined;
    return { header: { bundle: h.bundle, node: h.node, kinds: h.kinds.filter((k): k is string => typeof k === "string") }, data: buf.subarray(nl2 + 1) };
  } catch {
    return undefined;
  }
}

/** A cache file's bytes: the magic line, the header line, V8's data. */
export function encodeCompileCache(header: CompileCacheHeader, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${MAGIC}\n${JSON.stringify(header)}\n`, "utf8"), data]);
}

/** Write `bytes` to `file` atomically (a temporary file renamed over it), mode 0600; errors are ignored. */
function writeQuietly(file: string, bytes: Buffer): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(tmp, bytes, { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      /* nothing to remove */
    }
  }
}

/** What {@link loadBundle} did with the cache (for tests and the bench). */
export interface LoadReport {
  /** `node`: Node's own compile cache; `v8`: this module's; `off`: none. */
  mode: "node" | "v8" | "off";
  /** V8 accepted cached data for this load. */
  accepted: boolean;
  /** The cache will be (re)written when the process exits with status 0. */
  willWrite: boolean;
}

/**
 * Load the CommonJS bundle `file` and return its `module.exports`, with a compile cache in `cacheFile` (undefined:
 * none). `kind` is the kind of command about to run ({@link commandKind}). With `onExit` false the caller writes
 * the cache itself through the returned `save()` (tests); by default it is written when the process exits with
 * status 0, if V8's data was missing, rejected, or lacks this kind of command.
 */
export function loadBundle(
  file: string,
  opts: { cacheFile: string | undefined; kind: string; env?: NodeJS.ProcessEnv; onExit?: boolean },
): { exports: unknown; report: LoadReport; save: () => void } {
  const env = opts.env ?? process.env;
  const off = !opts.cacheFile || (env.NODE_DISABLE_COMPILE_CACHE !== undefined && env.NODE_DISABLE_COMPILE_CACHE !== "");
  const nodeCache = (module as { enableCompileCache?: (dir?: string) => unknown }).enableCompileCache;
  if (off || nodeCache) {
    if (!off) nodeCache!(env.NODE_COMPILE_CACHE ? path.resolve(env.NODE_COMPILE_CACHE) : path.join(path.dirname(opts.cacheFile!), "node"));
    return { exports: createRequire(file)(file), report: { mode: off ? "off" : "node", accepted: false, willWrite: false }, save: () => undefined };
  }
  const cacheFile = opts.cacheFile!;
  const source = fs.readFileSync(file, "utf8");
  const st = fs.statSync(file);
  const bundle = `${st.size}:${st.mtimeMs}`;
  let cached: ReturnType<typeof readCompileCache>;
  try {
    cached = readCompileCache(fs.readFileSync(cacheFile));
  } catch {
    cached = undefined;
  }
  const usable = cached && cached.header.bundle === bundle && cached.header.node === process.version ? cached : undefined;
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    ...(usable ? { cachedData: usable.data } : {}),
  });
  const accepted = usable !== undefined && !script.cachedDataRejected;
  const kinds = accepted ? usable!.header.kinds : [];
  const willWrite = !kinds.includes(opts.kind) && kinds.length < MAX_KINDS;
  const save = () => writeQuietly(cacheFile, encodeCompileCache({ bundle, node: process.version, kinds: [...kinds, opts.kind] }, script.createCachedData()));
  if (willWrite && opts.onExit !== false) {
    process.once("exit", (code) => {
      if (code === 0) save();
    });
  }
  const mod = { exports: {} as unknown };
  (script.runInThisContext() as (...args: unknown[]) => void).call(mod.exports, mod.exports, createRequire(file), mod, file, path.dirname(file));
  return { exports: mod.exports, report: { mode: "v8", accepted, willWrite }, save };
}
