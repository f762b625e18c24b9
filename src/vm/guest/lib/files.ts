/**
 * Guest file helpers: stat without throwing, and reads capped in bytes (a control dir is written by a launcher
 * and an engine the guest does not trust, and `/proc` files report size 0).
 *
 * Reads never block and never follow a symbolic link: a FIFO planted as `exit_code` would otherwise hang the
 * probe (open(2) on a FIFO waits for a writer), and a link planted as `heartbeat.json` would read whatever it
 * points at. The launcher only ever writes regular files there; anything else is reported, not read.
 */
import fs from "node:fs";

/** Flags of every read: no blocking open (FIFOs), no symbolic link followed. */
const READ_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW;

/** An error for a path that is not something fabrik reads (code `ENOTREG` or `ELOOP`), with a one-line message. */
function notRegular(kind: string): Error {
  return Object.assign(new Error(`${kind}, not read`), { code: kind.startsWith("a symbolic link") ? "ELOOP" : "ENOTREG" });
}

/** `fs.statSync`, or null when the path cannot be stat'ed (missing, no permission). */
export function statSafe(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/** `fs.lstatSync` (a symbolic link is reported as one, not followed), or null. */
export function lstatSafe(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
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
 * Read at most `max` bytes of a regular file: from its start, or its last `max` bytes with `fromEnd`. Never
 * blocks on a FIFO, never follows a symbolic link (the last path component).
 * @returns `{ buf, size }` (`size` = the whole file in bytes, as far as known), or null when it does not exist.
 * @throws an Error with code `ENOTREG` (a FIFO, socket, device or folder) or `ELOOP` (a symbolic link), or the
 *   fs error for anything else but ENOENT (e.g. EACCES).
 */
export function readCapped(p: string, max: number, fromEnd = false): { buf: Buffer; size: number } | null {
  let fd: number;
  try {
    fd = fs.openSync(p, READ_FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    if (code === "ELOOP") throw notRegular("a symbolic link");
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw notRegular(st.isFIFO() ? "a FIFO" : st.isDirectory() ? "a folder" : "not a regular file");
    // /proc files report size 0: read up to `max` whatever the size says (except from the end).
    const size = st.size;
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

/** A small regular file (≤ `max` bytes, default 64 KiB) as UTF-8 text, or null (missing, not a regular file — a link, a FIFO —, too big, unreadable). */
export function readSmallText(p: string, max = 64 * 1024): string | null {
  try {
    const st = fs.lstatSync(p);
    if (!st.isFile() || st.size > max) return null;
    const r = readCapped(p, max);
    return r ? r.buf.toString("utf8") : null;
  } catch {
    return null;
  }
}
