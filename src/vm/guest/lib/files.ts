/**
 * Guest file helpers: stat without throwing, and reads capped in bytes (a control dir is written by a launcher
 * and an engine the guest does not trust, and `/proc` files report size 0).
 */
import fs from "node:fs";

/** `fs.statSync`, or null when the path cannot be stat'ed (missing, no permission). */
export function statSafe(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

export function isFile(p: string): boolean {
  return statSafe(p)?.isFile() ?? false;
}

export function isDir(p: string): boolean {
  return statSafe(p)?.isDirectory() ?? false;
}

/**
 * Read at most `max` bytes of a file: from its start, or its last `max` bytes with `fromEnd`.
 * @returns `{ buf, size }` (`size` = the whole file in bytes, as far as known), or null when it does not exist.
 * @throws the fs error for anything but ENOENT (e.g. EACCES, EISDIR).
 */
export function readCapped(p: string, max: number, fromEnd = false): { buf: Buffer; size: number } | null {
  let fd: number;
  try {
    fd = fs.openSync(p, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  try {
    // /proc files report size 0: read up to `max` whatever the size says (except from the end).
    const size = fs.fstatSync(fd).size;
    const n = fromEnd ? Math.min(size, max) : Math.min(max, Math.max(size, 4096));
    const buf = Buffer.alloc(n);
    let off = 0;
    const start = fromEnd ? size - n : 0;
    while (off < buf.length) {
      const r = fs.readSync(fd, buf, off, buf.length - off, start + off);
      if (r <= 0) break;
      off += r;
    }
    return { buf: buf.subarray(0, off), size: Math.max(size, off) };
  } finally {
    fs.closeSync(fd);
  }
}

/** A small regular file (≤ `max` bytes, default 64 KiB) as UTF-8 text, or null (missing, not a file, too big, unreadable). */
export function readSmallText(p: string, max = 64 * 1024): string | null {
  try {
    const st = fs.statSync(p);
    if (!st.isFile() || st.size > max) return null;
    const r = readCapped(p, max);
    return r ? r.buf.toString("utf8") : null;
  } catch {
    return null;
  }
}
