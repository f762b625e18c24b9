/**
 * Units, in one place: durations (ms) and sizes (bytes) as people read and type them. Formatting is done by
 * well-kept libraries (`pretty-ms`, `pretty-bytes`, `ms`); this module only fixes the house style.
 */
import prettyMs from "pretty-ms";
import prettyBytes from "pretty-bytes";
import ms from "ms";

/** A duration for messages, up to two units: `45s`, `1m 44s`, `3h 2m`, `2d 3h` (ms → text). */
export function formatDuration(durationMs: number): string {
  if (!Number.isFinite(durationMs)) return "-";
  const v = Math.max(0, durationMs);
  return v < 1000 ? `${Math.round(v)}ms` : prettyMs(v, { unitCount: 2, secondsDecimalDigits: 0 });
}

/** A compact age for tables, largest unit only: `45s`, `12m`, `3h`, `2d`; `-` when unknown. */
export function formatAge(ageMs: number | null | undefined): string {
  if (ageMs === null || ageMs === undefined || !Number.isFinite(ageMs)) return "-";
  return prettyMs(Math.max(1000, ageMs), { compact: true });
}

/** The guide's long form (`heartbeat_age: 45 minutes`): largest unit, in words; `unknown` when unknown. */
export function formatAgeLong(ageMs: number | null | undefined): string {
  if (ageMs === null || ageMs === undefined || !Number.isFinite(ageMs)) return "unknown";
  return prettyMs(Math.max(1000, ageMs), { compact: true, verbose: true });
}

/**
 * Bytes in binary units with 3 significant digits: `1.5 KiB`, `121 KiB`, `400 MiB`; `-` when unknown. (No
 * fraction-digit option: with one, pretty-bytes formats through Intl, whose first use loads ICU data — ~20 ms of a
 * `runs show`.)
 */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return "-";
  return prettyBytes(bytes, { binary: true });
}

const DAY_MS = 86_400_000;
let isoDayStartMs = NaN;
let isoDayPrefix = "";
const pad2 = (n: number) => (n < 10 ? "0" : "") + n;

/**
 * An epoch-ms time as ISO-8601 UTC (`2026-11-29T14:09:27.000Z`), exactly as `Date#toISOString` writes it (a unit test
 * compares the two). `runs list` writes four per run: the date part is kept for the day last asked (lists are
 * ordered by time, so most times fall on it), the rest is arithmetic — 100 000 runs no longer allocate 400 000 Dates.
 * A time that is not a whole number of ms, or outside years 1970–9999, goes through `Date` (which throws RangeError
 * for an invalid one, as before).
 */
export function isoTime(epochMs: number): string {
  let inDay = epochMs - isoDayStartMs;
  if (!(inDay >= 0 && inDay < DAY_MS)) {
    if (!Number.isSafeInteger(epochMs) || epochMs < 0 || epochMs >= 253_402_300_800_000) return new Date(epochMs).toISOString();
    isoDayStartMs = epochMs - (epochMs % DAY_MS);
    isoDayPrefix = new Date(isoDayStartMs).toISOString().slice(0, 11);
    inDay = epochMs - isoDayStartMs;
  } else if (!Number.isInteger(epochMs)) {
    return new Date(epochMs).toISOString();
  }
  const ms = inDay % 1000;
  const s = Math.floor(inDay / 1000);
  return `${isoDayPrefix}${pad2(Math.floor(s / 3600))}:${pad2(Math.floor(s / 60) % 60)}:${pad2(s % 60)}.${ms < 10 ? "00" : ms < 100 ? "0" : ""}${ms}Z`;
}

/** ISO-8601 UTC (`2026-11-29T14:09:27.000Z`), or `-`. */
export function formatTime(epochMs: number | null | undefined): string {
  return epochMs === null || epochMs === undefined ? "-" : new Date(epochMs).toISOString();
}

/**
 * Parse a duration a user typed: `90s`, `30m`, `2h`, `7d`, `1w`, `500ms`, `1.5h` (the `ms` package's forms; a
 * bare number is NOT accepted, so a missing unit is never guessed). Returns ms, or undefined when it is not a
 * positive duration.
 */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (!/^\d+(\.\d+)?\s*[a-zA-Z]+$/.test(t)) return undefined;
  const v = ms(t as ms.StringValue);
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? v : undefined;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  tb: 1000 ** 4,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
};

/**
 * Parse a size a user typed: `200MB`, `1.5GiB`, `512KiB`, `10k`, `4096B` (a unit is required, so a missing one is
 * never guessed). `KB`/`MB`/`GB` are decimal (10^3…), `KiB`/`MiB`/`GiB` and the short `k`/`m`/`g` binary (2^10…).
 * Returns bytes (an integer), or undefined when it is not a positive size.
 */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]+)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const v = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(v) && v > 0 ? v : undefined;
}
