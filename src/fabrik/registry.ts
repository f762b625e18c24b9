/**
 * The host run registry: fabrik's cache of every run it launched or imported, in SQLite (better-sqlite3).
 *
 * - WAL journal and a 10 s busy timeout; every write is one `BEGIN IMMEDIATE` transaction, so many fabrik
 *   processes (a watch writing while lists read) never fail with SQLITE_BUSY.
 * - The schema is versioned with `PRAGMA user_version` and upgraded by {@link MIGRATIONS}; a registry
 *   written by a newer fabrik is refused, never modified.
 * - The file (and its -wal/-shm) is created with mode 0600.
 * - A corrupt file gives a {@link ConfigError} naming it; fabrik never deletes or rewrites it.
 *
 * This module is the only place that runs host SQL.
 */
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import Database from "better-sqlite3";
import type BetterSqlite3 from "better-sqlite3";
import { ConfigError } from "../core/errors.js";
import type { DriverName } from "../vm/driver.js";
import { ACTIVE_RUN_STATUSES, type CachedRunStatus, type RunStatus } from "../core/status.js";

/** One run as cached on the host. Times are epoch milliseconds. */
export interface RunRecord {
  /** Host id: the `113` in `--id 113`. */
  id: number;
  vm: string;
  driver: DriverName;
  /** A user label (`--name`), or null. */
  label: string | null;
  /** Absolute control dir in the guest: `~/work/<vm>/.runs/<run-dir>`. */
  control_dir: string;
  /** Absolute workflow path in the guest. */
  workflow_path: string;
  /** Where the workflow came from on the host (null for imports). */
  workflow_source: string | null;
  input_json: string | null;
  /** The engine's run id (`fabrik-113` for runs fabrik launched). */
  smithers_run_id: string;
  /** Absolute path of the Smithers DB in the guest. */
  smithers_db_path: string;
  engine_version: string | null;
  /** fabrik's last verdict on the run (never `unreachable`; see core/status.ts). */
  status: CachedRunStatus;
  exit_code: number | null;
  failure_reason: string | null;
  created_at_ms: number;
  started_at_ms: number | null;
  finished_at_ms: number | null;
  updated_at_ms: number;
  /** Last live check: when, what was concluded, and the raw observation (JSON). */
  last_check_at_ms: number | null;
  last_check_status: string | null;
  last_check_json: string | null;
  resume_count: number;
  last_resumed_at_ms: number | null;
  launcher_pid: number | null;
  engine_pid: number | null;
  /** 1 when registered by `runs import`. */
  imported: number;
  /**
   * A change fabrik asked the VM to make and has not yet seen through: a {@link PendingLaunch} as JSON, written
   * BEFORE the VM is asked (the journal), cleared when the outcome is recorded. null when nothing is pending.
   */
  pending_json: string | null;
}

/**
 * A journalled launch: `fabrik run` (kind `launch`) or `run resume` (kind `resume`) wrote this before starting the
 * launcher in the VM. The launcher writes `launch_id` into every heartbeat.json, so if fabrik dies before recording
 * the outcome, a later live check sees the launch happened and records it (resume_count, launcher pid, the event).
 */
export interface PendingLaunch {
  kind: "launch" | "resume";
  launch_id: string;
  /** When it was journalled, host clock (epoch ms). */
  at_ms: number;
  /** What the history should say once it completes (reason, backup path, script …). */
  detail: Record<string, unknown>;
}

/** The columns of a run a listing shows (`runs list`, cache-only views): everything but the input and bookkeeping. */
export const RUN_LIST_COLUMNS = [
  "id", "vm", "driver", "label", "control_dir", "workflow_path", "smithers_run_id", "smithers_db_path", "engine_version", "status",
  "exit_code", "failure_reason", "created_at_ms", "started_at_ms", "finished_at_ms", "last_check_at_ms", "last_check_json",
  "resume_count", "launcher_pid", "engine_pid",
] as const satisfies readonly (keyof RunRecord)[];

/** A run as a listing reads it ({@link RUN_LIST_COLUMNS}). */
export type RunListRecord = Pick<RunRecord, (typeof RUN_LIST_COLUMNS)[number]>;

/** A raw row of {@link RUN_LIST_COLUMNS} (in that order) as a record: one object literal, one shape for every row. */
function listRecord(v: unknown[]): RunListRecord {
  return {
    id: v[0] as number,
    vm: v[1] as string,
    driver: v[2] as DriverName,
    label: v[3] as string | null,
    control_dir: v[4] as string,
    workflow_path: v[5] as string,
    smithers_run_id: v[6] as string,
    smithers_db_path: v[7] as string,
    engine_version: v[8] as string | null,
    status: v[9] as CachedRunStatus,
    exit_code: v[10] as number | null,
    failure_reason: v[11] as string | null,
    created_at_ms: v[12] as number,
    started_at_ms: v[13] as number | null,
    finished_at_ms: v[14] as number | null,
    last_check_at_ms: v[15] as number | null,
    last_check_json: v[16] as string | null,
    resume_count: v[17] as number,
    launcher_pid: v[18] as number | null,
    engine_pid: v[19] as number | null,
  };
}

/** Fields needed to insert a run; everything else defaults to null/0. */
export type NewRun = Pick<RunRecord, "vm" | "driver" | "control_dir" | "workflow_path" | "smithers_run_id" | "smithers_db_path" | "status"> &
  Partial<Omit<RunRecord, "id" | "updated_at_ms">>;

/** A VM fabrik knows about, and the driver that runs it. */
export interface VmRecord {
  name: string;
  driver: DriverName;
  /** The guest user's home, as the driver reported it. */
  guest_home: string | null;
  created_at_ms: number;
  template: string | null;
  /** `ssh` driver only (null otherwise): where the machine is, as `vm add` recorded it. */
  ssh_host?: string | null;
  ssh_port?: number | null;
  ssh_user?: string | null;
  /** Absolute path of the private key; null: the default keys and ssh-agent. */
  ssh_identity?: string | null;
  /** Absolute path of the known_hosts file; null: `~/.ssh/known_hosts`. */
  ssh_known_hosts?: string | null;
  /** Jump host `user@host:port`, or null. */
  ssh_jump?: string | null;
}

/** A VM of the `ssh` driver as `vm add` records it (all address fields set). */
export type SshVmRecord = VmRecord & { driver: "ssh"; ssh_host: string; ssh_port: number; ssh_user: string };

/** One entry in a run's history (launch, resume, failure, import, status change). */
export interface RunEvent {
  id: number;
  run_id: number;
  at_ms: number;
  kind: string;
  detail_json: string | null;
}

/**
 * One probe of a VM as `fabrik doctor`, `fabrik fleet` and `fabrik supervise` recorded it: the history `fleet`
 * judges a VM's health over (degraded after one failed probe in a row, down after three). Times epoch ms (host).
 */
export interface VmProbeRecord {
  id: number;
  vm: string;
  at_ms: number;
  /** 1 when the probe answered, 0 when it failed. */
  ok: number;
  /** 1 when a command ran in the VM (even if the probe then failed, e.g. for want of bun), 0 when not, null unknown. */
  reachable: number | null;
  /** The driver's status at the time (`Running`, `Stopped`, …). */
  vm_status: string | null;
  duration_ms: number | null;
  /** Why the probe failed, when it did. */
  error: string | null;
  /** A summary of what it saw (engines, free disk, clock skew …), JSON. */
  facts_json: string | null;
  /** Which command probed: `doctor`, `fleet`, `supervise`, `prune`. */
  source: string;
}

/** A supervisor's claim on a run: only the holder acts on the run until `expires_at_ms` (host clock, epoch ms). */
export interface SupervisorLease {
  run_id: number;
  /** `<host>:<pid>:<random>` of the `fabrik supervise` process. */
  holder: string;
  acquired_at_ms: number;
  expires_at_ms: number;
}

export interface RunFilter {
  vm?: string | undefined;
  statuses?: readonly RunStatus[] | undefined;
  sinceMs?: number | undefined;
  limit?: number | undefined;
  /** Skip this many rows of the ordered list first (resuming a listing). */
  offset?: number | undefined;
}

/** Current schema version; bump with a new entry in {@link MIGRATIONS}. */
export const SCHEMA_VERSION = 5;

/** Migrations, index i upgrades version i to i+1. Each runs in one transaction. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE vms (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL CHECK (driver IN ('lima','local')),
    guest_home TEXT,
    created_at_ms INTEGER NOT NULL,
    template TEXT
  );
  CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm TEXT NOT NULL,
    driver TEXT NOT NULL,
    label TEXT,
    control_dir TEXT NOT NULL,
    workflow_path TEXT NOT NULL,
    workflow_source TEXT,
    input_json TEXT,
    smithers_run_id TEXT NOT NULL,
    smithers_db_path TEXT NOT NULL,
    engine_version TEXT,
    status TEXT NOT NULL,
    exit_code INTEGER,
    failure_reason TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    updated_at_ms INTEGER NOT NULL,
    last_check_at_ms INTEGER,
    last_check_status TEXT,
    last_check_json TEXT,
    resume_count INTEGER NOT NULL DEFAULT 0,
    last_resumed_at_ms INTEGER,
    launcher_pid INTEGER,
    engine_pid INTEGER,
    imported INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX runs_by_time ON runs (created_at_ms DESC);
  CREATE INDEX runs_by_vm ON runs (vm, created_at_ms DESC);
  CREATE INDEX runs_by_status ON runs (status, created_at_ms DESC);
  CREATE UNIQUE INDEX runs_identity ON runs (vm, smithers_db_path, smithers_run_id);
  CREATE TABLE run_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail_json TEXT
  );
  CREATE INDEX run_events_by_run ON run_events (run_id, at_ms);
  `,
  // v2: `status` holds fabrik's verdict (core/status.ts RUN_STATUSES) instead of a coarser host vocabulary:
  // `waiting` becomes the parked status last seen live (else waiting-approval), and a run whose last live
  // verdict was orphaned or stale says so instead of failed/running.
  `
  UPDATE runs SET status = CASE
    WHEN status = 'waiting' AND last_check_status IN ('waiting-approval','waiting-event','waiting-timer','waiting-quota','paused') THEN last_check_status
    WHEN status = 'waiting' THEN 'waiting-approval'
    WHEN status IN ('failed','running') AND last_check_status IN ('orphaned','stale') THEN last_check_status
    ELSE status END;
  `,
  // v3: the launch journal (see PendingLaunch).
  `
  ALTER TABLE runs ADD COLUMN pending_json TEXT;
  `,
  // v4: fleet health — every probe of a VM by doctor/fleet/supervise (see VmProbeRecord) — and supervisor leases
  // (see SupervisorLease). Self-contained: only new tables.
  `
  CREATE TABLE vm_probes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    reachable INTEGER,
    vm_status TEXT,
    duration_ms INTEGER,
    error TEXT,
    facts_json TEXT,
    source TEXT NOT NULL
  );
  CREATE INDEX vm_probes_by_vm ON vm_probes (vm, at_ms DESC, id DESC);
  CREATE TABLE supervisor_leases (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    holder TEXT NOT NULL,
    acquired_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
  );
  `,
  // v5: the `ssh` driver: the driver CHECK admits 'ssh' (SQLite cannot alter a CHECK, so the table is rebuilt) and
  // an ssh VM carries its address, identity, known_hosts file and jump host (see VmRecord).
  `
  CREATE TABLE vms_v5 (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL CHECK (driver IN ('lima','local','ssh')),
    guest_home TEXT,
    created_at_ms INTEGER NOT NULL,
    template TEXT,
    ssh_host TEXT,
    ssh_port INTEGER CHECK (ssh_port IS NULL OR ssh_port BETWEEN 1 AND 65535),
    ssh_user TEXT,
    ssh_identity TEXT,
    ssh_known_hosts TEXT,
    ssh_jump TEXT,
    CHECK (driver <> 'ssh' OR (ssh_host IS NOT NULL AND ssh_port IS NOT NULL AND ssh_user IS NOT NULL))
  );
  INSERT INTO vms_v5 (name, driver, guest_home, created_at_ms, template) SELECT name, driver, guest_home, created_at_ms, template FROM vms;
  DROP TABLE vms;
  ALTER TABLE vms_v5 RENAME TO vms;
  `,
];

const RUN_COLUMNS = [
  "vm",
  "driver",
  "label",
  "control_dir",
  "workflow_path",
  "workflow_source",
  "input_json",
  "smithers_run_id",
  "smithers_db_path",
  "engine_version",
  "status",
  "exit_code",
  "failure_reason",
  "created_at_ms",
  "started_at_ms",
  "finished_at_ms",
  "updated_at_ms",
  "last_check_at_ms",
  "last_check_status",
  "last_check_json",
  "resume_count",
  "last_resumed_at_ms",
  "launcher_pid",
  "engine_pid",
  "imported",
  "pending_json",
] as const;
type RunColumn = (typeof RUN_COLUMNS)[number];

const require = createRequire(import.meta.url);

let nativeBinding: string | null | undefined;
/**
 * The compiled better-sqlite3 addon, by path: passing it skips the `bindings` package's search of a dozen
 * candidate paths at every start (measured ~5 ms). null (better-sqlite3 finds it itself) when the build lives
 * elsewhere.
 */
function sqliteAddon(): string | null {
  if (nativeBinding === undefined) {
    try {
      nativeBinding = require.resolve("better-sqlite3/build/Release/better_sqlite3.node");
    } catch {
      nativeBinding = null;
    }
  }
  return nativeBinding;
}

function isCorruption(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? "";
  return code === "SQLITE_NOTADB" || code === "SQLITE_CORRUPT" || code.startsWith("SQLITE_CORRUPT");
}

/** The open registry. Create with {@link Registry.open}; close when done. */
export class Registry {
  readonly file: string;
  private readonly db: BetterSqlite3.Database;

  /** Statements prepared once per open registry, by SQL text (see {@link stmt}). */
  private readonly statements = new Map<string, BetterSqlite3.Statement>();

  private constructor(file: string, db: BetterSqlite3.Database) {
    this.file = file;
    this.db = db;
  }

  /**
   * The prepared statement for `sql`, prepared on first use: a live `runs list` writes back every run it checked
   * (an UPDATE and a SELECT each), and preparing them again per run was half of that cost. Only for statements run
   * to completion (get, run, all): an iteration keeps its statement busy, so iterations prepare their own.
   */
  private stmt(sql: string): BetterSqlite3.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /**
   * Open (creating if needed) the registry at `file` and migrate it to {@link SCHEMA_VERSION}.
   * Throws {@link ConfigError} if the file is corrupt, unreadable or from a newer fabrik.
   */
  static open(file: string, opts: { readonly?: boolean; now?: () => number; home?: string } = {}): Registry {
    ensureHomeDir(path.dirname(file), opts.home !== undefined ? "FABRIK_HOME" : "the registry's folder");
    if (!fs.existsSync(file)) {
      if (opts.readonly) return Registry.openMemory();
      // Create with 0600 before SQLite opens it (SQLite would use the umask).
      fs.closeSync(fs.openSync(file, "a", 0o600));
    }
    // SQLite's -wal/-shm that this open creates: removed again when the registry turns out to be unusable, so a
    // refused registry is left exactly as it was found.
    const newSidecars = ["-wal", "-shm"].map((s) => file + s).filter((p) => !fs.existsSync(p));
    const refuse = (db: BetterSqlite3.Database | undefined, err: unknown): never => {
      try {
        db?.close();
      } catch {
        /* already closed */
      }
      for (const p of newSidecars) {
        try {
          if (fs.statSync(p).size === 0 || p.endsWith("-shm")) fs.rmSync(p);
        } catch {
          /* not there */
        }
      }
      throw err instanceof ConfigError ? err : registryError(file, err);
    };
    let db: BetterSqlite3.Database | undefined;
    try {
      db = new Database(file, { fileMustExist: true, nativeBinding: sqliteAddon() ?? undefined });
      db.pragma("busy_timeout = 10000");
      const mode = db.pragma("journal_mode = WAL", { simple: true });
      if (String(mode).toLowerCase() !== "wal") db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("foreign_keys = ON");
    } catch (err) {
      refuse(db, err);
    }
    const reg = new Registry(file, db!);
    try {
      reg.migrate();
    } catch (err) {
      refuse(db, err);
    }
    for (const suffix of ["", "-wal", "-shm"]) {
      try {
        fs.chmodSync(file + suffix, 0o600);
      } catch {
        /* -wal/-shm may not exist yet */
      }
    }
    return reg;
  }

  /** An empty in-memory registry (for `--no-live` reads before anything was ever written, and tests). */
  static openMemory(): Registry {
    const reg = new Registry(":memory:", new Database(":memory:", { nativeBinding: sqliteAddon() ?? undefined }));
    reg.migrate();
    return reg;
  }

  private migrate(): void {
    const version = Number(this.db.pragma("user_version", { simple: true }));
    if (version > SCHEMA_VERSION) {
      throw new ConfigError(
        `registry ${this.file} was written by a newer fabrik (schema v${version}; this fabrik knows up to v${SCHEMA_VERSION})`,
        "upgrade fabrik, or point FABRIK_HOME elsewhere; the file was left untouched",
      );
    }
    if (version === SCHEMA_VERSION) {
      // Touch the schema so a corrupt file fails here, at open, with the file named.
      this.db.prepare("SELECT count(*) FROM runs").get();
      return;
    }
    const upgrade = this.db.transaction(() => {
      const current = Number(this.db.pragma("user_version", { simple: true }));
      for (let v = current; v < SCHEMA_VERSION; v++) {
        this.db.exec(MIGRATIONS[v]!);
      }
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
    upgrade.immediate();
  }

  close(): void {
    this.db.close();
  }

  private write<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn).immediate();
    } catch (err) {
      if (isCorruption(err)) throw registryError(this.file, err);
      throw err;
    }
  }

  private read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (isCorruption(err)) throw registryError(this.file, err);
      throw err;
    }
  }

  /**
   * Insert a run and return it with its new host id. `smithers_run_id` may be a placeholder that
   * `derive` rewrites (see {@link insertRunWith}).
   */
  insertRun(run: NewRun, now: number = Date.now()): RunRecord {
    return this.insertRunWith(() => run, now);
  }

  /**
   * Register a run found in a VM unless the registry already has one with the same VM, DB path and Smithers run id,
   * in ONE `BEGIN IMMEDIATE` transaction (the look-up and the insert), so two `runs import` at once never both insert
   * it (the second used to fail on the unique index). Returns the row and whether this call inserted it.
   */
  insertRunIfAbsent(run: NewRun, now: number = Date.now()): { row: RunRecord; inserted: boolean } {
    return this.write(() => {
      const existing = this.findRun(run.vm, run.smithers_db_path, run.smithers_run_id);
      if (existing) return { row: existing, inserted: false };
      return { row: this.insertRun(run, now), inserted: true };
    });
  }

  /**
   * Insert a run whose fields depend on its own host id (e.g. `fabrik-<id>`, a control dir named after it),
   * in one transaction: `build(id)` receives the id the row will get.
   */
  insertRunWith(build: (id: number) => NewRun, now: number = Date.now()): RunRecord {
    return this.write(() => {
      const seq = this.stmt("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").get() as { seq: number } | undefined;
      const maxId = (this.stmt("SELECT max(id) AS m FROM runs").get() as { m: number | null }).m ?? 0;
      const id = Math.max(seq?.seq ?? 0, maxId) + 1;
      const run = build(id);
      const row: Record<string, unknown> = {
        label: null,
        workflow_source: null,
        input_json: null,
        engine_version: null,
        exit_code: null,
        failure_reason: null,
        started_at_ms: null,
        finished_at_ms: null,
        last_check_at_ms: null,
        last_check_status: null,
        last_check_json: null,
        resume_count: 0,
        last_resumed_at_ms: null,
        launcher_pid: null,
        engine_pid: null,
        imported: 0,
        pending_json: null,
        ...run,
        created_at_ms: run.created_at_ms ?? now,
        updated_at_ms: now,
      };
      const cols = ["id", ...RUN_COLUMNS];
      this.stmt(`INSERT INTO runs (${cols.join(", ")}) VALUES (${cols.map((c) => "@" + c).join(", ")})`).run({ ...row, id });
      return this.stmt("SELECT * FROM runs WHERE id = ?").get(id) as RunRecord;
    });
  }

  /** Update some fields of a run (bumps `updated_at_ms`). Returns the new row; throws if the id is unknown. */
  updateRun(id: number, patch: Partial<Omit<RunRecord, "id">>, now: number = Date.now()): RunRecord {
    return this.write(() => {
      const keys = Object.keys(patch).filter((k): k is RunColumn => (RUN_COLUMNS as readonly string[]).includes(k) && k !== "updated_at_ms");
      const sets = [...keys.map((k) => `${k} = @${k}`), "updated_at_ms = @updated_at_ms"];
      const info = this.stmt(`UPDATE runs SET ${sets.join(", ")} WHERE id = @id`).run({ ...patch, updated_at_ms: now, id });
      if (info.changes === 0) throw new Error(`run ${id} does not exist`);
      return this.stmt("SELECT * FROM runs WHERE id = ?").get(id) as RunRecord;
    });
  }

  getRun(id: number): RunRecord | undefined {
    return this.read(() => this.stmt("SELECT * FROM runs WHERE id = ?").get(id) as RunRecord | undefined);
  }

  /** Find a run by its identity in the VM (for `runs import`: importing twice does not duplicate). */
  findRun(vm: string, smithersDbPath: string, smithersRunId: string): RunRecord | undefined {
    return this.read(
      () =>
        this.stmt("SELECT * FROM runs WHERE vm = ? AND smithers_db_path = ? AND smithers_run_id = ?").get(vm, smithersDbPath, smithersRunId) as RunRecord | undefined,
    );
  }

  private runQuery(filter: RunFilter, columns: string): { sql: string; params: unknown[] } {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.vm !== undefined) {
      where.push("vm = ?");
      params.push(filter.vm);
    }
    if (filter.statuses && filter.statuses.length > 0) {
      where.push(`status IN (${filter.statuses.map(() => "?").join(", ")})`);
      params.push(...filter.statuses);
    }
    if (filter.sinceMs !== undefined) {
      where.push("created_at_ms >= ?");
      params.push(filter.sinceMs);
    }
    const sql =
      `SELECT ${columns} FROM runs` +
      (where.length ? ` WHERE ${where.join(" AND ")}` : "") +
      " ORDER BY created_at_ms DESC, id DESC" +
      (filter.limit !== undefined || filter.offset !== undefined ? " LIMIT ?" : "") +
      (filter.offset !== undefined ? " OFFSET ?" : "");
    if (filter.limit !== undefined || filter.offset !== undefined) params.push(filter.limit ?? -1);
    if (filter.offset !== undefined) params.push(filter.offset);
    return { sql, params };
  }

  /** Runs, newest first, filtered (whole rows, collected: for bounded lists). */
  listRuns(filter: RunFilter = {}): RunRecord[] {
    const { sql, params } = this.runQuery(filter, "*");
    return this.read(() => this.stmt(sql).all(...params) as RunRecord[]);
  }

  /**
   * Runs, newest first, filtered, one at a time and only the columns a listing shows ({@link RUN_LIST_COLUMNS}):
   * memory stays flat however many rows there are. Rows are read raw (arrays, the fastest way out of SQLite) and
   * turned into records of one fixed shape here. No other registry call may run until the iteration ends (the
   * statement is open).
   */
  *iterateRuns(filter: RunFilter = {}): Generator<RunListRecord, void, undefined> {
    const { sql, params } = this.runQuery(filter, RUN_LIST_COLUMNS.join(", "));
    try {
      for (const v of this.db.prepare(sql).raw(true).iterate(...params) as IterableIterator<unknown[]>) yield listRecord(v);
    } catch (err) {
      if (isCorruption(err)) throw registryError(this.file, err);
      throw err;
    }
  }

  /**
   * Runs, newest first, filtered like {@link iterateRuns}, each as ONE string that SQLite computes from the row
   * with `expression` — the JSON text of a row's view, written by SQLite's JSON functions so that a listing of
   * 100 000 runs neither moves 20 values per row into JavaScript nor serialises them again there.
   * `expression` is fabrik's own SQL (runs-service.ts `CACHED_VIEW_JSON_SQL`), never anything a user typed; it
   * yields NULL for a row it does not cover (then null here).
   */
  *iterateRunsAs(expression: string, filter: RunFilter = {}): Generator<string | null, void, undefined> {
    const { sql, params } = this.runQuery(filter, expression);
    try {
      for (const v of this.db.prepare(sql).pluck(true).iterate(...params) as IterableIterator<string | null>) yield v;
    } catch (err) {
      if (isCorruption(err)) throw registryError(this.file, err);
      throw err;
    }
  }

  /** Append to a run's history. */
  recordEvent(runId: number, kind: string, detail?: unknown, now: number = Date.now()): void {
    this.write(() => {
      this.stmt("INSERT INTO run_events (run_id, at_ms, kind, detail_json) VALUES (?, ?, ?, ?)").run(runId, now, kind, detail === undefined ? null : JSON.stringify(detail));
    });
  }

  /** A run's history, oldest first. */
  runEvents(runId: number): RunEvent[] {
    return this.read(() => this.stmt("SELECT * FROM run_events WHERE run_id = ? ORDER BY at_ms, id").all(runId) as RunEvent[]);
  }

  upsertVm(vm: VmRecord): void {
    this.write(() => {
      this.stmt(
          `INSERT INTO vms (name, driver, guest_home, created_at_ms, template) VALUES (@name, @driver, @guest_home, @created_at_ms, @template)
           ON CONFLICT(name) DO UPDATE SET driver = excluded.driver, guest_home = COALESCE(excluded.guest_home, vms.guest_home),
             template = COALESCE(excluded.template, vms.template)`,
        )
        .run(vm);
    });
  }

  /**
   * Register an ssh VM (`vm add`). Refuses (returns false, nothing written) when a VM of that name exists.
   * @returns true when inserted.
   */
  addSshVm(vm: SshVmRecord): boolean {
    return this.write(() => {
      const info = this.db
        .prepare(
          `INSERT INTO vms (name, driver, guest_home, created_at_ms, template, ssh_host, ssh_port, ssh_user, ssh_identity, ssh_known_hosts, ssh_jump)
           VALUES (@name, 'ssh', @guest_home, @created_at_ms, NULL, @ssh_host, @ssh_port, @ssh_user, @ssh_identity, @ssh_known_hosts, @ssh_jump)
           ON CONFLICT(name) DO NOTHING`,
        )
        .run({ ssh_identity: null, ssh_known_hosts: null, ssh_jump: null, ...vm });
      return info.changes === 1;
    });
  }

  getVm(name: string): VmRecord | undefined {
    return this.read(() => this.stmt("SELECT * FROM vms WHERE name = ?").get(name) as VmRecord | undefined);
  }

  listVms(): VmRecord[] {
    return this.read(() => this.stmt("SELECT * FROM vms ORDER BY name").all() as VmRecord[]);
  }

  deleteVm(name: string): void {
    this.write(() => {
      this.stmt("DELETE FROM vms WHERE name = ?").run(name);
    });
  }

  /** Per VM: number of runs cached as active (core/status.ts ACTIVE_RUN_STATUSES) and the newest run. */
  vmRunSummary(): Map<string, { active: number; lastRunId: number | null; lastRunAtMs: number | null }> {
    const rows = this.read(
      () =>
        this.stmt(
            `SELECT vm, SUM(CASE WHEN status IN (${ACTIVE_RUN_STATUSES.map(() => "?").join(", ")}) THEN 1 ELSE 0 END) AS active,
                    MAX(id) AS last_id, MAX(created_at_ms) AS last_at FROM runs GROUP BY vm`,
          )
          .all(...ACTIVE_RUN_STATUSES) as { vm: string; active: number; last_id: number | null; last_at: number | null }[],
    );
    return new Map(rows.map((r) => [r.vm, { active: r.active, lastRunId: r.last_id, lastRunAtMs: r.last_at }]));
  }

  // ---- fleet health, supervisor leases, prune (issue 14) -------------------------------------------------------

  /** Record one probe of a VM; keeps the newest `keep` records per VM. */
  recordVmProbe(p: Omit<VmProbeRecord, "id">, keep = 100): void {
    this.write(() => {
      this.db
        .prepare(
          "INSERT INTO vm_probes (vm, at_ms, ok, reachable, vm_status, duration_ms, error, facts_json, source) VALUES (@vm, @at_ms, @ok, @reachable, @vm_status, @duration_ms, @error, @facts_json, @source)",
        )
        .run(p);
      this.db
        .prepare("DELETE FROM vm_probes WHERE vm = ? AND id NOT IN (SELECT id FROM vm_probes WHERE vm = ? ORDER BY at_ms DESC, id DESC LIMIT ?)")
        .run(p.vm, p.vm, keep);
    });
  }

  /** A VM's probe history, newest first (at most `limit`). */
  vmProbes(vm: string, limit = 100): VmProbeRecord[] {
    return this.read(() => this.db.prepare("SELECT * FROM vm_probes WHERE vm = ? ORDER BY at_ms DESC, id DESC LIMIT ?").all(vm, limit) as VmProbeRecord[]);
  }

  /** SQLite's `PRAGMA integrity_check`: `["ok"]` when the file is sound, else the problems it found (at most 20). */
  integrityCheck(): string[] {
    return this.read(() => (this.db.prepare("PRAGMA integrity_check(20)").all() as { integrity_check: string }[]).map((r) => r.integrity_check));
  }

  /**
   * Take (or renew) the supervisor lease on a run, in one `BEGIN IMMEDIATE` transaction: an expired lease is
   * dropped first; the lease is granted when nobody else holds it. Returns true when `holder` holds it now.
   */
  acquireLease(runId: number, holder: string, now: number, ttlMs: number): boolean {
    return this.write(() => {
      this.db.prepare("DELETE FROM supervisor_leases WHERE run_id = ? AND (expires_at_ms <= ? OR holder = ?)").run(runId, now, holder);
      const info = this.db
        .prepare("INSERT OR IGNORE INTO supervisor_leases (run_id, holder, acquired_at_ms, expires_at_ms) VALUES (?, ?, ?, ?)")
        .run(runId, holder, now, now + ttlMs);
      return info.changes === 1;
    });
  }

  /** Give a lease back (only its holder can). */
  releaseLease(runId: number, holder: string): void {
    this.write(() => {
      this.db.prepare("DELETE FROM supervisor_leases WHERE run_id = ? AND holder = ?").run(runId, holder);
    });
  }

  /** The lease on a run, expired or not (undefined when none). */
  leaseOf(runId: number): SupervisorLease | undefined {
    return this.read(() => this.db.prepare("SELECT * FROM supervisor_leases WHERE run_id = ?").get(runId) as SupervisorLease | undefined);
  }

  /** Delete runs (their history and leases go with them), in one transaction. Returns how many rows went. */
  deleteRuns(ids: readonly number[]): number {
    if (ids.length === 0) return 0;
    return this.write(() => {
      let n = 0;
      const del = this.db.prepare("DELETE FROM runs WHERE id = ?");
      for (const id of ids) n += del.run(id).changes;
      return n;
    });
  }

  /** Ids of all runs (for shell completion). */
  runIds(limit = 200): number[] {
    return this.read(() => (this.stmt("SELECT id FROM runs ORDER BY id DESC LIMIT ?").all(limit) as { id: number }[]).map((r) => r.id));
  }
}

/**
 * Create `dir` (mode 0700) and its missing parents one level at a time, so an unusable location fails at once
 * with a ConfigError (kind `config`, exit 3): `/dev/null/x` (ENOTDIR), `/proc/1/fabrik` (ENOENT from procfs,
 * on which Node's own recursive mkdir loops forever), a read-only or foreign folder (EACCES, EROFS).
 */
export function ensureHomeDir(dir: string, what: string): void {
  const missing: string[] = [];
  let d = path.resolve(dir);
  for (;;) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(d);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") throw homeError(dir, what, err);
    }
    if (st) {
      if (!st.isDirectory()) throw homeError(dir, what, Object.assign(new Error(`${d} is not a directory`), { code: "ENOTDIR" }));
      break;
    }
    missing.unshift(d);
    const parent = path.dirname(d);
    if (parent === d) break;
    d = parent;
  }
  for (const m of missing) {
    try {
      fs.mkdirSync(m, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw homeError(dir, what, err);
    }
  }
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw homeError(dir, what, err);
  }
}

function homeError(dir: string, what: string, err: unknown): ConfigError {
  const code = (err as NodeJS.ErrnoException).code;
  return new ConfigError(`${what} ${dir} is not usable${code ? ` (${code})` : ""}: ${(err as Error).message}`, "point FABRIK_HOME at a writable folder", { cause: err });
}

function registryError(file: string, err: unknown): ConfigError {
  const code = (err as { code?: string }).code;
  if (isCorruption(err)) {
    return new ConfigError(
      `registry ${file} is corrupt (${code}): ${(err as Error).message}`,
      "move it aside and let fabrik create a new one, or point FABRIK_HOME elsewhere; fabrik did not modify it",
      { cause: err },
    );
  }
  return new ConfigError(`cannot open registry ${file}: ${(err as Error).message}`, "check the file and its permissions", { cause: err });
}
