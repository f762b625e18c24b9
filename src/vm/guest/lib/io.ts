/**
 * How a guest program talks to the host: the request on stdin (JSON text, or that text gzip-compressed — the
 * host compresses large requests, see `encodeGuestRequest` in src/vm/probe.ts), one JSON line per answer on
 * stdout.
 *
 * Through bun's own I/O (`Bun.stdin`, `Bun.write`, `Bun.gunzipSync`), not node's streams: in bun 1.4 the first
 * touch of `process.stdin` costs ~25 ms of start-up, `process.stdout.write` ~19 ms and loading `node:zlib` ~15 ms
 * (measured: 40 runs of a one-line script each, on the 2-core machine), which was most of a probe call's CPU in
 * the VM: a one-run probe took 53 ms of bun time, 33 ms without them. Every guest program runs under bun
 * (src/vm/probe.ts picks it).
 */

/** The part of bun's global `Bun` used here (declared locally so bun's globals never reach the host's types). */
interface BunIo {
  stdin: { arrayBuffer(): Promise<ArrayBuffer> };
  stdout: unknown;
  write(destination: unknown, data: string): Promise<number>;
  gunzipSync(data: Uint8Array): Uint8Array;
}

function bun(): BunIo {
  const b = (globalThis as { Bun?: BunIo }).Bun;
  if (!b) throw new Error("fabrik's guest programs run under bun");
  return b;
}

/** All of stdin as UTF-8 text, gunzipped first when it starts with the gzip magic bytes (1f 8b). */
export async function readStdin(): Promise<string> {
  const b = bun();
  const raw = new Uint8Array(await b.stdin.arrayBuffer());
  return new TextDecoder().decode(raw[0] === 0x1f && raw[1] === 0x8b ? b.gunzipSync(raw) : raw);
}

let pending: Promise<unknown> = Promise.resolve();

/**
 * Write one JSON line on stdout. Lines are written in call order (each write waits for the one before); the
 * promise settles when this line is written, so a program that awaits its last line exits with it flushed.
 */
export function writeJsonLine(value: unknown): Promise<void> {
  const line = JSON.stringify(value) + "\n";
  const done = pending.then(() => bun().write(bun().stdout, line));
  pending = done.catch(() => undefined);
  return done.then(() => undefined);
}

/** bun's version (`process.versions.bun`), or "unknown" under another runtime. */
export function runtimeVersion(): string {
  return (process.versions as Record<string, string | undefined>).bun ?? "unknown";
}
