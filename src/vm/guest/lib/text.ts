/**
 * Guest helpers for values that come out of files and DB rows the guest does not trust: string caps, number
 * coercion, error-message extraction. Shared by every guest program (src/vm/guest/*.ts); the host validates
 * the same caps again with zod (src/vm/probe-schema.ts).
 */

/** `s` as a string of at most `n` characters (bytes are decoded as UTF-8); null stays null. */
export function cap(s: unknown, n: number): string | null {
  if (s === null || s === undefined) return null;
  const t = typeof s === "string" ? s : s instanceof Uint8Array ? Buffer.from(s).toString("utf8") : String(s);
  return t.length > n ? t.slice(0, n) : t;
}

/** A non-negative epoch-ms/size value (bigint accepted), truncated to an integer; else null. */
export function ms(x: unknown): number | null {
  const v = typeof x === "bigint" ? Number(x) : x;
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.trunc(v) : null;
}

/** A safe integer (bigint accepted); else null. */
export function int(x: unknown): number | null {
  const v = typeof x === "bigint" ? Number(x) : x;
  return typeof v === "number" && Number.isSafeInteger(v) ? v : null;
}

/** A finite number (bigint accepted); else null. */
export function num(x: unknown): number | null {
  const v = typeof x === "bigint" ? Number(x) : x;
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** The message of anything thrown, capped at `max` characters. */
export function errorText(e: unknown, max = 300): string {
  const m = e instanceof Error && e.message ? e.message : typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e);
  return m.length > max ? m.slice(0, max) : m;
}

/** The SQLite/errno code of a thrown error (`SQLITE_BUSY`, `ENOENT`), or "". */
export function errorCode(e: unknown): string {
  const c = typeof e === "object" && e !== null && "code" in e ? (e as { code: unknown }).code : undefined;
  return typeof c === "string" ? c : "";
}

/**
 * An engine `error_json` value → its `.message` (or the JSON string itself, or the raw text), capped at `chars`.
 * `text` null with a known byte size means the value was too big to read: says so instead.
 */
export function errorJsonMessage(text: unknown, bytes: unknown, chars: number): string | null {
  if (text === null || text === undefined) {
    const n = int(bytes);
    return n !== null ? cap(`(error_json of ${n} bytes not read)`, chars) : null;
  }
  const t = typeof text === "string" ? text : (cap(text, 1024 * 1024) ?? "");
  try {
    const j: unknown = JSON.parse(t);
    if (j && typeof j === "object" && typeof (j as { message?: unknown }).message === "string") return cap((j as { message: string }).message, chars);
    if (typeof j === "string") return cap(j, chars);
  } catch {
    /* not JSON: the raw text */
  }
  return cap(t, chars);
}

/** The last `limit` bytes of a UTF-8 value, starting on a character boundary (no broken first character). */
export function utf8Tail(bytes: Uint8Array, limit: number): string {
  let b = Buffer.from(bytes);
  if (b.length > limit) b = b.subarray(b.length - limit);
  let i = 0;
  while (i < b.length && i < 4 && ((b[i] ?? 0) & 0xc0) === 0x80) i++;
  return b.subarray(i).toString("utf8");
}

/**
 * The value that replaces an oversized one: a marker saying how much was cut, then as much of the value's tail as
 * fits, the whole at most `limit` bytes (UTF-8). `error_json` stays valid JSON (the engine parses it):
 * `{"name":"FabrikTruncated","message":"<marker> <tail>"}`; `response_text` is plain text `<marker>\n<tail>`.
 * @param tail the value's last bytes (at least `limit` of them when it is longer)
 * @param totalBytes the value's whole size, bytes
 */
export function truncatedValue(col: "response_text" | "error_json", tail: Uint8Array, totalBytes: number, limit: number): string {
  const build = (budget: number) => {
    const kept = utf8Tail(tail, Math.max(0, budget));
    const marker = `[fabrik --fix: truncated ${totalBytes - Buffer.byteLength(kept)} bytes]`;
    return col === "error_json" ? JSON.stringify({ name: "FabrikTruncated", message: `${marker} ${kept}` }) : `${marker}\n${kept}`;
  };
  // Shrink the kept tail by what the marker (and JSON escaping) added, until the whole fits.
  let budget = limit;
  let value = build(budget);
  for (let i = 0; i < 64 && budget > 0 && Buffer.byteLength(value) > limit; i++) {
    budget -= Buffer.byteLength(value) - limit;
    value = build(budget);
  }
  return value;
}
