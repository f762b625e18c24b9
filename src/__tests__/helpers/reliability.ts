/**
 * Tools of the reliability suite (src/__tests__/reliability/, docs/reliability.md): what "nothing was lost",
 * "nothing ran" and "nothing reached the terminal" mean, as functions every case uses the same way.
 *
 * - {@link treeHashes}: the sha256 of every file under a folder (symlinks and FIFOs by kind, never followed or
 *   opened), so a test can say "byte-identical" about a control dir or a FABRIK_HOME;
 * - {@link registryDump}: the registry's rows, table by table (a WAL DB's files change on checkpoints; its rows
 *   must not);
 * - {@link expectClean}: no escape sequence, no control character but newline and tab, in what fabrik printed;
 * - {@link guestHomeOf} / {@link hostPathIn}: where a guest path lives on this host (taken from `vm list --json`,
 *   never hardcoded: the stand-in's guest user may change);
 * - {@link holdPort}: keep a TCP port busy (the old SSH port of a restarted VM), accepting and dropping connections.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { expect } from "vitest";
import { fabrik, json, waitFor, type TestEnv } from "./cli.js";

/** sha256 of a file's bytes, hex. */
export function sha256File(p: string): string {
  return createHash("sha256").update(fs.readFileSync(p)).digest("hex");
}

/**
 * Every entry under `dir` (relative path → `sha256:<hex>` for a file, `dir`, `symlink -> target`, `fifo`, …),
 * sorted. Symlinks are never followed and FIFOs never opened. `ignore` drops matching relative paths.
 */
export function treeHashes(dir: string, ignore?: RegExp): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, e.name);
      const rel = path.relative(dir, p);
      if (ignore?.test(rel)) continue;
      if (e.isSymbolicLink()) out[rel] = `symlink -> ${fs.readlinkSync(p)}`;
      else if (e.isDirectory()) {
        out[rel] = "dir";
        walk(p);
      } else if (e.isFile()) out[rel] = `sha256:${sha256File(p)}`;
      else if (e.isFIFO()) out[rel] = "fifo";
      else out[rel] = "other";
    }
  };
  walk(dir);
  return out;
}

/** The registry's rows (every table, in rowid order), read-only: what "the registry lost nothing" compares. */
export async function registryDump(fabrikHome: string): Promise<Record<string, unknown[]>> {
  const Database = (await import("better-sqlite3")).default;
  const db = new Database(path.join(fabrikHome, "registry.db"), { readonly: true, fileMustExist: true });
  try {
    const out: Record<string, unknown[]> = {};
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[];
    for (const { name } of tables) out[name] = db.prepare(`SELECT * FROM "${name.replace(/"/g, '""')}" ORDER BY rowid`).all();
    return out;
  } finally {
    db.close();
  }
}

/** `PRAGMA integrity_check` of the registry: "ok", or what is wrong. */
export async function registryIntegrity(fabrikHome: string): Promise<string> {
  const Database = (await import("better-sqlite3")).default;
  const db = new Database(path.join(fabrikHome, "registry.db"), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[]).map((r) => r.integrity_check).join("; ");
  } finally {
    db.close();
  }
}

/** Escape sequences and control characters other than newline and tab (C0, DEL, C1 — 0x9b is an 8-bit CSI). */
// eslint-disable-next-line no-control-regex
export const UNSAFE_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

/** Fail with the offending context when `text` (what fabrik printed) holds an escape or a control character. */
export function expectClean(text: string, where: string): void {
  const m = UNSAFE_CHARS.exec(text);
  if (m) {
    const at = m.index;
    expect.fail(`${where}: control character 0x${m[0].charCodeAt(0).toString(16)} at ${at}: ${JSON.stringify(text.slice(Math.max(0, at - 40), at + 40))}`);
  }
}

/** The VM's guest home, as `fabrik vm list --json` reports it. */
export async function guestHomeOf(t: TestEnv, vm: string): Promise<string> {
  const rows = json<{ name: string; guest_home: string | null }[]>(await fabrik(t, ["vm", "list", "--json"]));
  const home = rows.find((r) => r.name === vm)?.guest_home;
  if (!home) throw new Error(`vm list --json has no guest_home for ${vm}`);
  return home;
}

/** The VM's SSH port (`vm list --json` → `ssh: "127.0.0.1:PORT"`), or undefined (stopped, no SSH). */
export async function sshPortOf(t: TestEnv, vm: string): Promise<number | undefined> {
  const rows = json<{ name: string; ssh: string | null }[]>(await fabrik(t, ["vm", "list", "--json"]));
  const m = /:(\d+)$/.exec(rows.find((r) => r.name === vm)?.ssh ?? "");
  return m ? Number(m[1]) : undefined;
}

/**
 * Where guest path `p` of stand-in VM `vm` is on this host: the stand-in bind-mounts `$LIMA_HOME/<vm>/guest-home`
 * on the guest home; anything outside the guest home (e.g. /tmp) is shared with the host at the same path.
 * Tests read VM files this way to hash them without a CLI round trip per file.
 */
export function hostPathIn(t: TestEnv, vm: string, home: string, p: string): string {
  if (p === home || p.startsWith(`${home}/`)) return path.join(t.limaHome, vm, "guest-home", p.slice(home.length));
  return p;
}

/** Listen on 127.0.0.1:`port` and drop every connection at once (an old SSH port taken by something else). */
export async function holdPort(port: number): Promise<net.Server> {
  const srv = net.createServer((sock) => sock.destroy());
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(port, "127.0.0.1", () => resolve());
  });
  return srv;
}

/** A folder any guest user can use (the stand-in's guest user may not be root): mode 0777 on `dir`. */
export function openToGuest(dir: string): string {
  fs.chmodSync(dir, 0o777);
  return dir;
}

/**
 * Wait until the launcher has logged more than `after` engine exits in the run log at host path `log` (one line
 * per launch or resume): an event on a file, cheap to watch from the host.
 */
export async function waitEngineExitIn(log: string, after = 0, timeoutMs = 180_000): Promise<void> {
  const exits = () => {
    try {
      return fs.readFileSync(log, "utf8").match(/engine exited with code -?\d+/g)?.length ?? 0;
    } catch {
      return 0;
    }
  };
  await waitFor(() => exits() > after, {
    timeoutMs,
    intervalMs: 100,
    what: `more than ${after} "engine exited" line(s) in ${log}`,
    describe: () => {
      try {
        return fs.readFileSync(log, "utf8").split("\n").slice(-30).join("\n");
      } catch (e) {
        return String(e);
      }
    },
  });
}

/**
 * bun code (`bun -e DB_DUMP_HASH <db>`) printing `{"hash","rows"}`: the schema and every row of every table in a
 * total order, hashed — "the same data" for a WAL DB, whose files change on any checkpoint (a connection that
 * closes last folds the WAL into the main file) while its rows do not. Opens read-only; creates nothing.
 */
export const DB_DUMP_HASH = `const { Database } = require("bun:sqlite");
const { createHash } = require("node:crypto");
const d = new Database(process.argv[1], { readonly: true });
const h = createHash("sha256");
let rows = 0;
for (const t of d.query("select name, sql from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name").all()) {
  h.update(t.name + "\\0" + t.sql + "\\0");
  const n = d.query("select count(*) as n from pragma_table_info(?)").get(t.name).n;
  const order = Array.from({ length: n }, (_, i) => i + 1).join(", ");
  for (const r of d.query('select * from "' + t.name.replace(/"/g, '""') + '" order by ' + order).values()) {
    h.update(JSON.stringify(r, (k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : typeof v === "bigint" ? String(v) : v)) + "\\n");
    rows++;
  }
}
console.log(JSON.stringify({ hash: h.digest("hex"), rows }));`;

/** {@link DB_DUMP_HASH} of a DB in a VM, run there with the engine's bun through `fabrik vm shell`. */
export async function dbDumpHash(t: TestEnv, vm: string, bun: string, db: string): Promise<{ hash: string; rows: number }> {
  const r = await fabrik(t, ["vm", "shell", vm, "--", bun, "-e", DB_DUMP_HASH, db]);
  if (r.code !== 0) throw new Error(`dump of ${db} failed (exit ${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as { hash: string; rows: number };
}
