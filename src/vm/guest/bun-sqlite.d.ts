/**
 * The subset of bun's built-in `bun:sqlite` module the guest programs use (bun ≥ 1.3; SQLite 3.54 inside, so
 * `octet_length()` exists). Declared here rather than installing bun's full type package, whose globals
 * (`Bun`, web APIs) would leak into the host's type-check. Besides this module, the guest programs use `Bun.stdin`,
 * `Bun.write` and `Bun.gunzipSync` (declared locally in lib/io.ts: node's streams cost ~25–45 ms of bun's start-up);
 * files and processes go through `node:*` modules, which bun implements.
 */
declare module "bun:sqlite" {
  /** What `run()` reports. */
  export interface Changes {
    changes: number;
    lastInsertRowid: number | bigint;
  }
  /** A prepared statement; parameters bind positionally (`?`). */
  export interface Statement<Row> {
    /** The first row, or null/undefined when there is none. */
    get(...params: unknown[]): Row | null | undefined;
    all(...params: unknown[]): Row[];
    run(...params: unknown[]): Changes;
    /** Rows one at a time (bun ≥ 1.1.31). */
    iterate(...params: unknown[]): IterableIterator<Row>;
  }
  export class Database {
    /** `flags`: a bitwise OR of {@link constants} (`SQLITE_OPEN_READONLY | SQLITE_OPEN_URI` for `file:` URIs). */
    constructor(filename?: string, flags?: number);
    /** Prepare (and cache) a statement. */
    query<Row = Record<string, unknown>>(sql: string): Statement<Row>;
    /** Run SQL without results. */
    exec(sql: string): void;
    /**
     * `fn` wrapped in a transaction: calling the result runs BEGIN (DEFERRED; `.immediate()` for BEGIN IMMEDIATE),
     * `fn`, COMMIT — or ROLLBACK and rethrow when `fn` throws.
     */
    transaction<T>(fn: () => T): { (): T; deferred(): T; immediate(): T; exclusive(): T };
    close(): void;
  }
  export const constants: {
    readonly SQLITE_OPEN_READONLY: number;
    readonly SQLITE_OPEN_READWRITE: number;
    readonly SQLITE_OPEN_CREATE: number;
    readonly SQLITE_OPEN_URI: number;
  };
}
