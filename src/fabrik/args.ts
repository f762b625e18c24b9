/**
 * The one strict parser for each kind of value a user types. Used as yargs `coerce` functions, so a bad value
 * is a usage error (exit 2) before any command runs, with a one-line message that says what to type instead.
 *
 * Numbers are decimal digits only: `1e99`, `0x10`, `1.0`, ` 7`, `-1` and integers beyond 2^53 − 1 are refused
 * (yargs' own number parsing accepts them and silently rounds).
 */
import { UsageError } from "../core/errors.js";
import { parseDuration, parseSize } from "../core/units.js";
import { assertVmName } from "../vm/names.js";
import { SUPPORTED_ENGINES, isSupportedEngineVersion } from "../vm/engine-recipe.js";

const DIGITS = /^(0|[1-9][0-9]*)$/;

/**
 * yargs turns an error thrown by a `coerce` function into its own YError (message kept, class and hint lost);
 * the usage error is parked here so the CLI's failure handler can throw the original ({@link takeArgError}).
 */
let parked: UsageError | undefined;
function refuse(message: string, hint: string): never {
  parked = new UsageError(message, hint);
  throw parked;
}

/** The usage error a coerce function threw, if `message` is its message (then forgotten). */
export function takeArgError(message: string | undefined): UsageError | undefined {
  const e = parked;
  parked = undefined;
  return e && e.message === message ? e : undefined;
}

function wholeNumber(flag: string, raw: unknown, min: number, example: string): number {
  const text = Array.isArray(raw) ? raw.at(-1) : raw;
  const s = typeof text === "number" ? String(text) : typeof text === "string" ? text : "";
  const n = Number(s);
  if (!DIGITS.test(s) || !Number.isSafeInteger(n) || n < min) {
    refuse(`${flag} must be a whole number${min > 0 ? ` ≥ ${min}` : " ≥ 0"} in decimal digits, got ${JSON.stringify(text)}`, `e.g. ${flag} ${example}`);
  }
  return n;
}

/** A host run id (`--id 113`): a positive integer. */
export function runId(flag = "--id") {
  return (raw: unknown): number => wholeNumber(flag, raw, 1, "113; see `fabrik runs list`");
}

/** A count (`--tail 50`, `--limit 20`): an integer ≥ `min`. */
export function count(flag: string, min = 0, example = "20") {
  return (raw: unknown): number => wholeNumber(flag, raw, min, example);
}

/** A TCP port (`--port 2222`): a whole number 1..65535. */
export function port(flag = "--port") {
  return (raw: unknown): number => {
    const n = wholeNumber(flag, raw, 1, "2222");
    if (n > 65535) refuse(`${flag} must be a TCP port (1..65535), got ${n}`, `e.g. ${flag} 2222`);
    return n;
  };
}

/** Seconds as a positive decimal number (`--interval 2`, `--timeout 0.5`): digits with an optional fraction. */
export function seconds(flag: string, minS = 0) {
  return (raw: unknown): number => {
    const text = Array.isArray(raw) ? raw.at(-1) : raw;
    const s = typeof text === "number" ? String(text) : typeof text === "string" ? text : "";
    const n = Number(s);
    if (!/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(s) || !Number.isFinite(n) || n <= 0 || n < minS) {
      refuse(`${flag} must be a number of seconds${minS > 0 ? ` ≥ ${minS}` : " > 0"}, got ${JSON.stringify(text)}`, `e.g. ${flag} ${Math.max(minS, 2)}`);
    }
    return n;
  };
}

/** A duration with a unit (`--since 2h`, `--older-than 30d`, `--grace 30s`), as ms. */
export function duration(flag: string) {
  return (raw: unknown): number => {
    const text = Array.isArray(raw) ? raw.at(-1) : raw;
    const v = typeof text === "string" ? parseDuration(text) : undefined;
    if (v === undefined) refuse(`${flag} must be a duration with a unit, got ${JSON.stringify(text)}`, `e.g. ${flag} 30s, 15m, 2h or 7d`);
    return v;
  };
}

/** A VM name (Lima's rule, every driver). */
export function vmName(raw: unknown): string {
  try {
    return assertVmName(typeof raw === "string" ? raw : String(raw));
  } catch (err) {
    if (err instanceof UsageError) refuse(err.message, err.hint ?? "");
    throw err;
  }
}

/** Several VM names. */
export function vmNames(raw: unknown): string[] {
  return (Array.isArray(raw) ? raw : [raw]).map(vmName);
}

/** An engine version fabrik supports (`--engine 0.32.0`); anything else is a usage error naming the supported ones. */
export function engineVersion(raw: unknown): string {
  const v = typeof raw === "string" ? raw.trim() : String(raw);
  if (!isSupportedEngineVersion(v)) {
    refuse(`--engine ${JSON.stringify(v)} is not an engine version fabrik supports`, `use one of ${SUPPORTED_ENGINES.join(", ")}`);
  }
  return v;
}

/** A size with a unit (`--max-size 200MB`, `1.5GiB`), as bytes (core/units.ts `parseSize`). */
export function size(flag: string) {
  return (raw: unknown): number => {
    const text = Array.isArray(raw) ? raw.at(-1) : raw;
    const v = typeof text === "string" ? parseSize(text) : undefined;
    if (v === undefined) refuse(`${flag} must be a size with a unit, got ${JSON.stringify(text)}`, `e.g. ${flag} 200MB, 1GiB or 512KiB`);
    return v;
  };
}
