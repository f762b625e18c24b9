/**
 * fabrik's guest evidence program (runs in the VM with bun; bundled into `dist/guest/evidence.js`). The VM side of
 * `fabrik runs evidence` (host: src/fabrik/evidence-service.ts; wire: src/vm/evidence-schema.ts): into a NEW
 * folder under `$HOME/.fabrik/tmp/` it writes
 * - `snapshot.db`: a consistent copy of the run's DB made with `VACUUM INTO` from a READ-ONLY connection (the
 *   WAL's content included; the engine's files are never written), then, in the copy only, every secret masked
 *   (src/core/secrets.ts: values under secret keys or columns, known values, token shapes), big values cut when
 *   over budget, `secure_delete` on and a final VACUUM so no masked byte survives in a free page;
 * - `files/…`: run.sh, heartbeat.json, exit_code, the pid files, fabrik-run.json and resume-N.sh, masked;
 * - `log-tail.txt`: the last N lines of reports/smithers.log, masked line by line;
 * and prints ONE JSON line (EvidenceResult) saying what it wrote, what was cut and what was masked. The host then
 * fetches the folder (tar) and removes it.
 *
 * Run as `bun evidence.js` with the request JSON on stdin; exit 0 with `ok:false` and `error` for a failure it
 * can describe, 2 for a bad request.
 */
import fs from "node:fs";
import path from "node:path";
import { Database, constants } from "bun:sqlite";
import { SecretMasker, secretEnvValues } from "../../core/secrets.js";
import type { EvidenceFile, EvidenceRequestWire, EvidenceResult } from "../evidence-schema.js";
import { readOnlyOpenModes, sqliteUri, sqliteVersion } from "./lib/db.js";
import { readCapped, statSafe } from "./lib/files.js";
import { readStdin, runtimeVersion, writeJsonLine } from "./lib/io.js";
import { readPidFile } from "./lib/proc.js";
import { cap, errorText } from "./lib/text.js";

type Row = Record<string, unknown>;

/** Control-dir files copied (when present), besides resume-N.sh. */
const CONTROL_FILES = ["run.sh", "heartbeat.json", "exit_code", "launcher.pid", "smithers.pid", "engine.pid", "fabrik-run.json"];
const FILE_MAX_BYTES = 1024 * 1024;

function parseRequest(raw: string): EvidenceRequestWire {
  const j: unknown = JSON.parse(raw);
  if (!j || typeof j !== "object" || Array.isArray(j)) throw new Error("request is not a JSON object");
  const src = j as Row;
  if (src.v !== 1) throw new Error(`unsupported request version ${JSON.stringify(src.v)}`);
  const absOrNull = (k: string): string | null => {
    const x = src[k];
    if (x === null || x === undefined) return null;
    if (typeof x !== "string" || !x.startsWith("/") || x.includes("\0") || x.length > 4096) throw new Error(`${k} must be an absolute path`);
    return path.resolve(x);
  };
  const pos = (k: string): number => {
    const x = src[k];
    if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) throw new Error(`${k} must be a whole number`);
    return x;
  };
  const out = absOrNull("out_dir");
  const home = process.env.HOME ?? "";
  if (!out || !home.startsWith("/") || !out.startsWith(path.join(home, ".fabrik", "tmp") + "/evidence-")) throw new Error("out_dir must be a new folder $HOME/.fabrik/tmp/evidence-…");
  return {
    v: 1,
    control_dir: absOrNull("control_dir"),
    db_path: absOrNull("db_path"),
    smithers_run_id: typeof src.smithers_run_id === "string" ? src.smithers_run_id.slice(0, 200) : "",
    out_dir: out,
    log_lines: pos("log_lines"),
    log_max_bytes: pos("log_max_bytes"),
    snapshot_max_bytes: pos("snapshot_max_bytes"),
    truncate_value_bytes: Math.max(1024, pos("truncate_value_bytes")),
    known_secrets: Array.isArray(src.known_secrets) ? (src.known_secrets as unknown[]).filter((x): x is string => typeof x === "string" && x.length <= 4096).slice(0, 1000) : [],
  };
}

/** Secret values in the environments: this program's (the guest user's login environment) and the run's live processes'. */
function environmentSecrets(controlDir: string | null): string[] {
  const out = new Set(secretEnvValues(process.env as Record<string, string | undefined>));
  if (controlDir) {
    for (const f of ["launcher.pid", "smithers.pid", "engine.pid"]) {
      let pid: number | "garbage" | null = null;
      try {
        pid = readPidFile(path.join(controlDir, f));
      } catch {
        pid = null;
      }
      if (typeof pid !== "number") continue;
      try {
        const r = readCapped(`/proc/${pid}/environ`, 1024 * 1024);
        if (!r) continue;
        const env: Record<string, string> = {};
        for (const kv of r.buf.toString("utf8").split("\0")) {
          const i = kv.indexOf("=");
          if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
        }
        for (const v of secretEnvValues(env)) out.add(v);
      } catch {
        /* not readable (another user, gone) */
      }
    }
  }
  return [...out];
}

function writeFile(out: string, name: string, text: string): number {
  const p = path.join(out, name);
  fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
  fs.writeFileSync(p, text, { mode: 0o600 });
  return Buffer.byteLength(text);
}

function copyControlFiles(req: EvidenceRequestWire, m: SecretMasker, files: EvidenceFile[], missing: string[]): void {
  const dir = req.control_dir;
  if (!dir) return;
  let names = [...CONTROL_FILES];
  try {
    names = names.concat(fs.readdirSync(dir).filter((n) => /^resume-\d+\.sh$/.test(n)).sort((a, b) => Number(a.slice(7, -3)) - Number(b.slice(7, -3))));
  } catch {
    missing.push("(control dir)");
    return;
  }
  for (const name of names) {
    const src = path.join(dir, name);
    const st = statSafe(src);
    if (!st || !st.isFile()) {
      missing.push(name);
      continue;
    }
    const r = readCapped(src, FILE_MAX_BYTES);
    if (!r) continue;
    const cut = r.size > FILE_MAX_BYTES ? `first ${FILE_MAX_BYTES} of ${r.size} bytes` : null;
    const text = m.text(r.buf.toString("utf8"));
    files.push({ name: `files/${name}`, source: src, bytes: writeFile(req.out_dir, `files/${name}`, text), cut });
  }
}

function copyLogTail(req: EvidenceRequestWire, m: SecretMasker, files: EvidenceFile[], missing: string[]): void {
  if (!req.control_dir) return;
  const src = path.join(req.control_dir, "reports", "smithers.log");
  const r = (() => {
    try {
      return readCapped(src, req.log_max_bytes, true);
    } catch {
      return null;
    }
  })();
  if (!r) {
    missing.push("reports/smithers.log");
    return;
  }
  let lines = r.buf.toString("utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  const partialFirst = r.size > r.buf.length;
  if (partialFirst) lines = lines.slice(1); // the first line was cut in the middle
  const total = lines.length;
  if (lines.length > req.log_lines) lines = lines.slice(-req.log_lines);
  const cut =
    partialFirst || total > req.log_lines
      ? `last ${lines.length} line(s)${partialFirst ? ` of the last ${req.log_max_bytes} bytes` : ""} of a ${r.size}-byte log`
      : null;
  const text = lines.map((l) => m.text(l)).join("\n") + (lines.length ? "\n" : "");
  files.push({ name: "log-tail.txt", source: src, bytes: writeFile(req.out_dir, "log-tail.txt", text), cut });
}

function quoteId(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Replace every known secret's bytes in a blob with `*` (same length); null when there was none. */
function maskBlob(b: Uint8Array, m: SecretMasker): Uint8Array | null {
  const buf = Buffer.from(b);
  let changed = false;
  for (const k of m.knownValues()) {
    const needle = Buffer.from(k, "utf8");
    for (let i = buf.indexOf(needle); i >= 0; i = buf.indexOf(needle, i + needle.length)) {
      buf.fill(0x2a, i, i + needle.length);
      m.counts.known = (m.counts.known ?? 0) + 1;
      changed = true;
    }
  }
  return changed ? buf : null;
}

/** Mask every TEXT (and known values in every BLOB) of every table, in one transaction; values changed are rewritten by rowid or primary key. */
function maskDb(db: Database, m: SecretMasker): string[] {
  const dropped: string[] = [];
  // Virtual tables (full-text indexes) cannot be rewritten value by value: they are left out (their shadow tables,
  // which hold the text, are ordinary tables and are masked like the rest).
  for (const { name } of db.query<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'").all()) {
    db.exec(`DROP TABLE ${quoteId(name)}`);
    dropped.push(name);
  }
  const tables = db.query<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all();
  db.transaction(() => {
    for (const { name } of tables) {
      const cols = db.query<{ name: string; pk: number }>("SELECT name, pk FROM pragma_table_info(?)").all(name);
      if (cols.length === 0) continue;
      let key: string[];
      try {
        db.query(`SELECT rowid FROM ${quoteId(name)} LIMIT 1`).all();
        key = ["rowid"];
      } catch {
        key = cols.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name);
        if (key.length === 0) continue;
      }
      const keyCols = key.map((k, i) => `${k === "rowid" ? "rowid" : quoteId(k)} AS "__k${i}"`).join(", ");
      const updates: { col: string; value: unknown; keys: unknown[] }[] = [];
      for (const row of db.query<Row>(`SELECT ${keyCols}, ${cols.map((c) => quoteId(c.name)).join(", ")} FROM ${quoteId(name)}`).iterate()) {
        const keys = key.map((_, i) => row[`__k${i}`]);
        for (const c of cols) {
          const v = row[c.name];
          if (typeof v === "string") {
            const masked = m.text(v, c.name);
            if (masked !== v) updates.push({ col: c.name, value: masked, keys });
          } else if (v instanceof Uint8Array) {
            const masked = maskBlob(v, m);
            if (masked) updates.push({ col: c.name, value: masked, keys });
          }
        }
      }
      const where = key.map((k, i) => `${k === "rowid" ? "rowid" : quoteId(k)} IS ?${i + 2}`).join(" AND ");
      for (const u of updates) db.query(`UPDATE ${quoteId(name)} SET ${quoteId(u.col)} = ?1 WHERE ${where}`).run(u.value as never, ...(u.keys as never[]));
    }
  })();
  return dropped;
}

/** Cut every TEXT/BLOB value longer than `keep` bytes to its last `keep` bytes (text: characters). Returns how many were cut. */
function cutBigValues(db: Database, keep: number): number {
  let n = 0;
  const tables = db.query<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all();
  db.transaction(() => {
    for (const { name } of tables) {
      for (const c of db.query<{ name: string }>("SELECT name FROM pragma_table_info(?)").all(name)) {
        const col = quoteId(c.name);
        const r = db.query(`UPDATE ${quoteId(name)} SET ${col} = substr(${col}, -?1) WHERE typeof(${col}) IN ('text', 'blob') AND octet_length(${col}) > ?1`).run(keep);
        n += r.changes;
      }
    }
  })();
  return n;
}

function snapshot(req: EvidenceRequestWire, m: SecretMasker, files: EvidenceFile[]): EvidenceResult["snapshot"] {
  const src = req.db_path;
  if (!src) return null;
  const st = statSafe(src);
  const result: NonNullable<EvidenceResult["snapshot"]> = {
    name: null,
    source_db: cap(src, 4096) ?? "",
    source_db_bytes: st?.size ?? null,
    source_wal_bytes: statSafe(src + "-wal")?.size ?? null,
    bytes: null,
    tables: {},
    integrity: null,
    cut: null,
  };
  if (!st || !st.isFile()) {
    result.cut = "the run's DB does not exist";
    return result;
  }
  if (req.snapshot_max_bytes === 0) {
    result.cut = "left out: --max-size leaves no room for the DB";
    return result;
  }
  const out = path.join(req.out_dir, "snapshot.db");
  // The copy needs about the DB's size (main file plus WAL) in the VM; never fill its disk for evidence.
  try {
    const sf = fs.statfsSync(req.out_dir);
    const free = Number(sf.bavail) * Number(sf.bsize);
    const need = st.size + (result.source_wal_bytes ?? 0) + 64 * 1024 * 1024;
    if (free < need) {
      result.cut = `left out: ${free} bytes free in the VM, a copy needs about ${need}`;
      return result;
    }
  } catch {
    /* statfs unsupported: try anyway */
  }
  // A consistent copy, WAL included, from a read-only connection: the engine's files are not written.
  let last: unknown;
  let made = false;
  for (const mode of readOnlyOpenModes(src)) {
    let ro: Database | undefined;
    try {
      ro = new Database(`${sqliteUri(src)}?${mode}`, constants.SQLITE_OPEN_READONLY | constants.SQLITE_OPEN_URI);
      ro.exec("PRAGMA busy_timeout = 5000");
      ro.query("VACUUM INTO ?").run(out);
      made = true;
      break;
    } catch (e) {
      last = e;
      fs.rmSync(out, { force: true });
    } finally {
      try {
        ro?.close();
      } catch {
        /* closed */
      }
    }
  }
  if (!made) throw new Error(`cannot snapshot ${src}: ${errorText(last)}`);
  fs.chmodSync(out, 0o600);
  const db = new Database(out);
  try {
    db.exec("PRAGMA journal_mode = DELETE");
    db.exec("PRAGMA secure_delete = ON");
    for (const { name } of db.query<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all()) {
      result.tables[cap(name, 300) ?? ""] = db.query<{ c: number }>(`SELECT count(*) AS c FROM ${quoteId(name)}`).get()?.c ?? 0;
    }
    const size = statSafe(out)?.size ?? 0;
    if (size > req.snapshot_max_bytes) {
      const n = cutBigValues(db, req.truncate_value_bytes);
      result.cut = `${n} value(s) over ${req.truncate_value_bytes} bytes cut to their last ${req.truncate_value_bytes} (the copy was ${size} bytes, budget ${req.snapshot_max_bytes})`;
    }
    const dropped = maskDb(db, m);
    if (dropped.length) result.cut = `${result.cut ? `${result.cut}; ` : ""}virtual table(s) left out: ${dropped.join(", ")}`.slice(0, 500);
    db.exec("VACUUM");
    result.integrity = cap(db.query<{ integrity_check: string }>("PRAGMA integrity_check(5)").all().map((r) => r.integrity_check).join("; "), 500);
  } finally {
    db.close();
  }
  for (const suffix of ["-journal", "-wal", "-shm"]) fs.rmSync(out + suffix, { force: true });
  const size = statSafe(out)?.size ?? 0;
  if (size > req.snapshot_max_bytes) {
    fs.rmSync(out, { force: true });
    result.cut = `${result.cut ? `${result.cut}; ` : ""}left out: ${size} bytes even after cutting, over the budget of ${req.snapshot_max_bytes}`;
    return result;
  }
  result.name = "snapshot.db";
  result.bytes = size;
  files.push({ name: "snapshot.db", source: src, bytes: size, cut: result.cut });
  return result;
}

async function main(): Promise<void> {
  let req: EvidenceRequestWire;
  try {
    req = parseRequest(await readStdin());
  } catch (e) {
    process.stderr.write(`fabrik-evidence: bad request: ${errorText(e)}\n`);
    process.exitCode = 2;
    return;
  }
  const files: EvidenceFile[] = [];
  const missing: string[] = [];
  const envSecrets = environmentSecrets(req.control_dir);
  const m = new SecretMasker([...req.known_secrets, ...envSecrets]);
  const result: EvidenceResult = {
    v: 1,
    ok: false,
    error: null,
    files,
    missing,
    snapshot: null,
    masked: m.counts,
    env_secrets: envSecrets.length,
    runtime: { bun: cap(runtimeVersion(), 100) ?? "", sqlite: cap(sqliteVersion(), 40) ?? "" },
  };
  try {
    fs.mkdirSync(path.dirname(req.out_dir), { recursive: true, mode: 0o700 });
    fs.mkdirSync(req.out_dir, { mode: 0o700 });
    copyControlFiles(req, m, files, missing);
    copyLogTail(req, m, files, missing);
    result.snapshot = snapshot(req, m, files);
    result.ok = true;
  } catch (e) {
    result.error = cap(errorText(e, 1500), 2000);
  }
  await writeJsonLine(result);
}

void main();
