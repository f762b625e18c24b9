/**
 * Opening an engine DB READ-ONLY without ever creating or changing a file: the probe's discipline, shared by
 * every guest program (proven by hashing the files before and after in src/__tests__/e2e/probe.test.ts).
 *
 * Open modes, least intrusive first ({@link readOnlyOpenModes}):
 * - `-wal` and `-shm` present: `mode=ro&readonly_shm=1` — the -shm is not even written, so the files a
 *   SIGKILL left stay byte-identical;
 * - no `-wal` (and no `-journal`): `mode=ro&immutable=1` — nothing to replay, no -wal/-shm is created;
 * - plain `mode=ro` only as the fallback.
 * Any read-write connection that closes last would checkpoint the WAL (smithers-engine.md), so none is opened
 * here.
 */
import path from "node:path";
import { Database, constants } from "bun:sqlite";
import { statSafe } from "./files.js";
import { errorCode, errorText } from "./text.js";

/** `file:` URI of an absolute path, with `%`, `?` and `#` escaped (SQLite URI rules). */
export function sqliteUri(p: string): string {
  return "file:" + path.resolve(p).replace(/%/g, "%25").replace(/\?/g, "%3f").replace(/#/g, "%23");
}

/** The URI query strings to try for `p`, least intrusive first (see the module doc). */
export function readOnlyOpenModes(p: string): string[] {
  const wal = statSafe(p + "-wal");
  const shm = statSafe(p + "-shm");
  const modes: string[] = [];
  if (wal && shm) modes.push("mode=ro&readonly_shm=1");
  else if (!wal && !statSafe(p + "-journal")) modes.push("mode=ro&immutable=1");
  modes.push("mode=ro");
  return modes;
}

/**
 * Run `fn(db)` inside ONE read transaction on a read-only connection to `p`, trying the next open mode when
 * one fails to open or lock (CANTOPEN, READONLY, BUSY, PROTOCOL, IOERR); any other error is final.
 * @param opts.busyTimeoutMs SQLite busy timeout, ms.
 * @throws the last SQLite error (see {@link dbErrorText}), or whatever `fn` throws.
 */
export function withReadOnlyDb<T>(p: string, fn: (db: Database) => T, opts: { busyTimeoutMs: number }): T {
  let last: unknown;
  for (const mode of readOnlyOpenModes(p)) {
    let db: Database | undefined;
    try {
      db = new Database(`${sqliteUri(p)}?${mode}`, constants.SQLITE_OPEN_READONLY | constants.SQLITE_OPEN_URI);
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(opts.busyTimeoutMs))}`);
      db.exec("BEGIN");
      try {
        return fn(db);
      } finally {
        try {
          db.exec("COMMIT");
        } catch {
          /* nothing to commit */
        }
      }
    } catch (e) {
      last = e;
      if (!/^SQLITE_(CANTOPEN|READONLY|BUSY|PROTOCOL|IOERR)/.test(errorCode(e))) break;
    } finally {
      try {
        db?.close();
      } catch {
        /* already closed */
      }
    }
  }
  throw last;
}

/** A SQLite error as short text: `locked`, `not a database`, `corrupt: …`, else `CODE: message`. */
export function dbErrorText(e: unknown): string {
  const code = errorCode(e);
  const msg = errorText(e);
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED") || /database is locked/.test(msg)) return "locked";
  if (code === "SQLITE_NOTADB" || /file is not a database/.test(msg)) return "not a database";
  if (code.startsWith("SQLITE_CORRUPT")) return `corrupt: ${msg}`;
  return code ? `${code}: ${msg}` : msg;
}

/** The column names of `table` (empty when the table does not exist). */
export function columnsOf(db: Database, table: string): Set<string> {
  return new Set(db.query<{ name: string }>("SELECT name FROM pragma_table_info(?)").all(table).map((r) => r.name));
}

/** `alias."col"` when the column exists, else `NULL` (the schema differs between engine versions). */
export function columnOrNull(cols: ReadonlySet<string>, alias: string, col: string): string {
  return cols.has(col) ? `${alias}."${col}"` : "NULL";
}

/** The SQLite version bun embeds (e.g. `3.54.0`), read once. */
let sqliteVersionCache: string | undefined;
export function sqliteVersion(): string {
  if (sqliteVersionCache === undefined) {
    const m = new Database(":memory:");
    try {
      sqliteVersionCache = String(m.query<{ v: string }>("SELECT sqlite_version() AS v").get()?.v ?? "");
    } finally {
      m.close();
    }
  }
  return sqliteVersionCache;
}
