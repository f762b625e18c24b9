/**
 * Running commands from tests WITHOUT blocking the worker's event loop. vitest talks to its workers over RPC;
 * a `spawnSync` that lasts seconds starves that channel and, on a busy machine, fails the whole run with
 * `[vitest-worker]: Timeout calling "onTaskUpdate"` even when every test passed. Every command a test runs goes
 * through {@link run} (or a helper built on it), and every wait is {@link waitFor} on an event with a deadline.
 */
import { spawn } from "node:child_process";

export interface ProcResult {
  /** Exit status; 128 + n for a signal n (as a shell reports it), or 1 when neither is known. */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time, ms. */
  ms: number;
  /** True when the deadline killed it. */
  timedOut: boolean;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv | undefined;
  cwd?: string | undefined;
  /** Written to stdin, which is then closed (stdin is always closed: an empty string by default). */
  input?: string | Buffer | undefined;
  /** SIGKILL after this long (default 120 s). */
  timeoutMs?: number | undefined;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };

/** Run `cmd args` asynchronously and collect its output. Never rejects for a non-zero exit; rejects only when it cannot start. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<ProcResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args], { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 120_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? (signal ? 128 + (SIGNALS[signal] ?? 0) : 1),
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        ms: Date.now() - started,
        timedOut,
      });
    });
    child.stdin.on("error", () => undefined); // EPIPE when the command exits without reading stdin
    child.stdin.end(opts.input ?? "");
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Poll until `fn` returns a truthy value (or a promise of one). Throws after `timeoutMs` with `what`, the last
 * error `fn` threw and, when given, `describe()` (what the world looked like: a screen, a log, a status).
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: { timeoutMs: number; intervalMs?: number; what: string; describe?: () => string | Promise<string> },
): Promise<NonNullable<T>> {
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      let state = "";
      if (opts.describe) {
        try {
          state = `\n--- state at the deadline ---\n${await opts.describe()}`;
        } catch (e) {
          state = `\n(could not describe the state: ${String(e)})`;
        }
      }
      throw new Error(`timed out after ${Date.now() - started} ms waiting for ${opts.what}${last ? `; last error: ${String(last)}` : ""}${state}`);
    }
    await sleep(opts.intervalMs ?? 200);
  }
}
