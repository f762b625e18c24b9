/**
 * How a guest program talks to the host: the request on stdin (JSON text, or that text gzip-compressed — the
 * host compresses large requests, see `encodeGuestRequest` in src/vm/probe.ts), one JSON line per answer on
 * stdout.
 */
import { gunzipSync } from "node:zlib";

/** All of stdin as UTF-8 text, gunzipped first when it starts with the gzip magic bytes (1f 8b). */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === "string" ? Buffer.from(c) : (c as Buffer));
  const raw = Buffer.concat(chunks);
  return (raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw).toString("utf8");
}

/** Write one JSON line on stdout. */
export function writeJsonLine(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + "\n");
}

/** bun's version (`process.versions.bun`), or "unknown" under another runtime. */
export function runtimeVersion(): string {
  return (process.versions as Record<string, string | undefined>).bun ?? "unknown";
}
