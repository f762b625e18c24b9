/**
 * `fabrik run attach --id N`: print the last lines of a run's log (`<control dir>/reports/smithers.log`), then
 * follow it until the run ends, then say how it ended. Detaching (Ctrl-C) never touches the run.
 *
 * - stdout carries the log's lines only, each passed through {@link sanitizeText} (the VM is untrusted: no
 *   terminal escape sequence reaches the terminal); while following, only complete lines are printed.
 *   Notices (reconnecting, the final "run N finished: …" line) go to stderr.
 * - The log is followed through a {@link VmSession} (persistent SSH when the driver offers it), which resumes
 *   after a dropped connection from the exact byte offset it had delivered.
 * - A resume appends to the same log (with `[fabrik HH:MM:SS] ===== fabrik resume …` marker lines), so an
 *   attach simply keeps showing it.
 * - "Ended" is judged from the probe by {@link judgeRunEnd} (exit_code written, the engine's run status
 *   terminal, or engine and launcher both dead — and the launcher no longer writing). Then the rest of the log
 *   is read from the follower's offset, so the whole log is printed before the final line.
 */
import { StringDecoder } from "node:string_decoder";
import type { Context } from "./context.js";
import { NotFoundError, UsageError, VmUnavailableError, InterruptedError } from "../core/errors.js";
import { ExitCode, runOutcomeExitCode } from "./exit-codes.js";
import { DEFAULTS } from "./config.js";
import type { Sink } from "./io.js";
import { sanitizeText } from "../core/sanitize.js";
import { CONTROL_FILES } from "../vm/launcher.js";
import type { ProbeRequest, ProbeRunResult } from "../vm/probe-schema.js";
import { openVmSession, type FileFollower, type VmSession } from "../vm/session.js";
import { NoBunError, ProbeError } from "../vm/probe.js";

/** The `fabrik run attach` options (flags `--id`, `--tail`, `--follow/--no-follow`, `--exit-status`). */
export interface AttachOptions {
  id: number;
  /** Lines of history printed first (default 50 in the CLI). */
  tail: number;
  /** Keep following until the run ends (`--no-follow`: print the tail and return). */
  follow: boolean;
  /** Return the run's outcome as the exit code (see {@link outcomeExitCode}). */
  exitStatus: boolean;
}

/** How often the run's state is probed while following, ms: SSH (an open channel, ~1 ms) vs driver (a process per probe). */
export const ATTACH_POLL_MS = { ssh: 1_000, driver: 2_000 } as const;

/** How long a run may look ended while its launcher still lives (writing its last log lines), ms. */
export const LAUNCHER_SETTLE_MS = 10_000;

/** Engine run statuses after which the run will not change without a resume. */
const TERMINAL_DB_STATUSES = new Set(["finished", "failed", "cancelled", "continued"]);

/** How a run ended, as attach reports it. */
export interface RunOutcome {
  /** `done`, `failed`, `cancelled`, or `not-done` (stopped without finishing: crashed, orphaned, waiting). */
  kind: "done" | "failed" | "cancelled" | "not-done";
  /** What to print: `done`, `failed`, `cancelled`, `waiting-approval`, `orphaned`, … */
  label: string;
  /** The launcher's exit_code, when written. */
  exitCode: number | null;
}

/** {@link judgeRunEnd}'s answer. */
export interface RunEndJudgement {
  /** The run has ended and its log is complete. */
  ended: boolean;
  /** The run has ended but its launcher still lives (it writes exit_code and a last log line): wait a little. */
  settling: boolean;
  /** Set when `ended` or `settling`. */
  outcome: RunOutcome | undefined;
}

/**
 * Has the run ended? A minimal, pure decision over one probe result:
 *
 * | signal of the end | launcher alive | → |
 * |---|---|---|
 * | exit_code written, or engine run status finished/failed/cancelled/continued, or (a pid is known and neither engine nor launcher lives) | no / unknown | ended |
 * | (same) | yes | settling (the launcher writes exit_code, then one log line) |
 * | none | – | not ended |
 *
 * The outcome comes from the engine's status when it is terminal, else from exit_code (0 done, 2 cancelled,
 * 3 waiting-approval, other failed) when the DB does not say otherwise, else `orphaned`.
 */
export function judgeRunEnd(r: ProbeRunResult | undefined): RunEndJudgement {
  const none: RunEndJudgement = { ended: false, settling: false, outcome: undefined };
  if (!r) return none;
  const c = r.control;
  const run = r.db?.run ?? null;
  const exitCode = c?.exit_code ?? null;
  const dbStatus = run?.status ?? null;
  const launcherAlive = c?.launcher?.alive === true;
  const enginePids = [c?.engine, c?.child, run?.owner].filter((p) => p !== null && p !== undefined);
  const pidKnown = enginePids.length > 0 || (c?.launcher !== null && c?.launcher !== undefined);
  const engineAlive = enginePids.some((p) => p!.alive);
  const dbTerminal = dbStatus !== null && TERMINAL_DB_STATUSES.has(dbStatus);
  const allDead = pidKnown && !engineAlive && !launcherAlive;
  if (exitCode === null && !dbTerminal && !allDead) return none;
  const outcome = outcomeOf(dbStatus, exitCode);
  return launcherAlive ? { ended: false, settling: true, outcome } : { ended: true, settling: false, outcome };
}

function outcomeOf(dbStatus: string | null, exitCode: number | null): RunOutcome {
  if (dbStatus === "finished" || dbStatus === "continued") return { kind: "done", label: "done", exitCode };
  if (dbStatus === "failed") return { kind: "failed", label: "failed", exitCode };
  if (dbStatus === "cancelled") return { kind: "cancelled", label: "cancelled", exitCode };
  if (dbStatus !== null) {
    // The engine's record says it is not over (running, waiting-*, paused) but nothing runs it any more.
    return { kind: "not-done", label: dbStatus === "running" ? "orphaned" : dbStatus, exitCode };
  }
  if (exitCode === 0) return { kind: "done", label: "done", exitCode };
  if (exitCode === 2) return { kind: "cancelled", label: "cancelled", exitCode };
  if (exitCode === 3) return { kind: "not-done", label: "waiting-approval", exitCode };
  if (exitCode !== null) return { kind: "failed", label: "failed", exitCode };
  return { kind: "not-done", label: "orphaned", exitCode };
}

/** `--exit-status`: done → 0, failed → 8, cancelled → 9, not done → 10 (see `fabrik help exit-codes`). */
export function outcomeExitCode(o: RunOutcome): number {
  return runOutcomeExitCode(o.kind);
}

/** The stderr line that ends an attach: `run 113 finished: done (exit 0)`. */
export function renderOutcomeLine(id: number, o: RunOutcome): string {
  const code = o.exitCode === null ? "no exit code" : `exit ${o.exitCode}`;
  return o.kind === "not-done" ? `run ${id} ended without finishing: ${o.label} (${code})` : `run ${id} finished: ${o.label} (${code})`;
}

/** Longest partial line kept while waiting for its newline, chars; beyond it the text is printed as a line. */
const MAX_PENDING_LINE = 1024 * 1024;

/**
 * Turns the log's bytes into sanitised lines on `sink`: UTF-8 decoded across chunk boundaries, one write per
 * chunk, a partial last line held back until its newline arrives (or {@link flush}).
 */
export class LogLinePrinter {
  private readonly decoder = new StringDecoder("utf8");
  private pending = "";
  lines = 0;

  constructor(private readonly sink: Sink) {}

  push(chunk: Buffer): void {
    const text = this.pending + this.decoder.write(chunk);
    const parts = text.split("\n");
    this.pending = parts.pop()!;
    if (this.pending.length > MAX_PENDING_LINE) {
      parts.push(this.pending);
      this.pending = "";
    }
    this.write(parts);
  }

  /** Print what is left (a last line without newline), e.g. once the log is final. */
  flush(): void {
    const rest = this.pending + this.decoder.end();
    this.pending = "";
    if (rest !== "") this.write([rest]);
  }

  private write(lines: string[]): void {
    if (lines.length === 0) return;
    this.lines += lines.length;
    this.sink.write(lines.map((l) => sanitizeText(l.endsWith("\r") ? l.slice(0, -1) : l) + "\n").join(""));
  }
}

/**
 * `sh -c TAIL_SCRIPT fabrik-tail FILE N`: prints FILE's current size in bytes on the first line, then the last N
 * lines of the file's first SIZE bytes in base64 — so following can start exactly at SIZE. Reads a window
 * from the end (64 KiB, growing 4× until it holds more than N newlines), never the whole file.
 * A missing file prints `0`.
 */
export const TAIL_SCRIPT = `f=$1 n=$2
[ -f "$f" ] || { echo 0; exit 0; }
s=$(wc -c < "$f") || exit 1
s=$((s + 0))
echo "$s"
[ "$n" -gt 0 ] || exit 0
w=65536
while :; do
  if [ "$w" -ge "$s" ]; then start=0; else start=$((s - w)); fi
  c=$(tail -c +$((start + 1)) -- "$f" | head -c $((s - start)) | tr -dc '\\n' | wc -c)
  if [ "$start" -eq 0 ] || [ "$c" -gt "$n" ]; then break; fi
  w=$((w * 4))
done
tail -c +$((start + 1)) -- "$f" | head -c $((s - start)) | tail -n "$n" | base64
`;

/** `sh -c READ_FROM_SCRIPT fabrik-read FILE K`: FILE from byte K (1-based, as `tail -c +K`) to its end, in base64. */
export const READ_FROM_SCRIPT = `tail -c "+$2" -- "$1" | base64`;

function decodeBase64Lines(lines: string[]): Buffer {
  return Buffer.from(lines.join("").replace(/\s+/g, ""), "base64");
}

/** The last `lines` lines of `file` and the byte size they end at. */
export async function readLogTail(session: VmSession, file: string, lines: number, timeoutMs: number): Promise<{ size: number; bytes: Buffer }> {
  const r = await session.exec(["sh", "-c", TAIL_SCRIPT, "fabrik-tail", file, String(lines)], { timeoutMs });
  const out = r.stdout.split("\n");
  const size = Number(out[0]);
  if (r.exitCode !== 0 || !Number.isSafeInteger(size) || size < 0) {
    throw new VmUnavailableError(session.vm, `VM ${session.vm}: cannot read ${file} (exit ${r.exitCode}: ${r.stderr.trim().slice(0, 200)})`);
  }
  return { size, bytes: decodeBase64Lines(out.slice(1)) };
}

/** `file` from byte `offset` (0-based) to its current end. */
export async function readLogFrom(session: VmSession, file: string, offset: number, timeoutMs: number): Promise<Buffer> {
  const r = await session.exec(["sh", "-c", READ_FROM_SCRIPT, "fabrik-read", file, String(offset + 1)], { timeoutMs });
  if (r.exitCode !== 0) throw new VmUnavailableError(session.vm, `VM ${session.vm}: cannot read ${file} (exit ${r.exitCode}: ${r.stderr.trim().slice(0, 200)})`);
  return decodeBase64Lines(r.stdout.split("\n"));
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Attach to run `o.id`: print the tail of its log, follow it until the run ends, print the outcome on stderr.
 *
 * @returns 0; with `exitStatus` the run's outcome ({@link outcomeExitCode}; with `--no-follow` a run that has
 *   not ended gives 10); {@link ExitCode.INTERRUPTED} (130) when `ctx.signal` aborts (Ctrl-C): following stops,
 *   the run is never signalled.
 * @throws NotFoundError for an unknown run id (exit 4); UsageError for a negative `tail`; VmUnavailableError
 *   when the VM cannot be reached, or following broke and could not be resumed (exit 6).
 */
export async function attachRun(ctx: Context, o: AttachOptions): Promise<number> {
  if (!Number.isSafeInteger(o.tail) || o.tail < 0) throw new UsageError(`--tail must be a whole number ≥ 0 (got ${o.tail})`);
  const rec = ctx.registry().getRun(o.id);
  if (!rec) throw new NotFoundError(`run ${o.id} does not exist`, "see `fabrik runs list`");
  const io = ctx.io;
  const notice = (msg: string) => io.stderr.write(`fabrik: ${msg}\n`);
  const logFile = `${rec.control_dir}/${CONTROL_FILES.log}`;
  const request: ProbeRequest = {
    v: 1,
    runs: [{ key: String(rec.id), control_dir: rec.control_dir, db_path: rec.smithers_db_path, smithers_run_id: rec.smithers_run_id }],
  };
  const timeoutMs = ctx.config.probeTimeoutMs;
  const readTimeoutMs = DEFAULTS.remoteTimeoutMs;
  if (ctx.signal.aborted) return ExitCode.INTERRUPTED;

  let session: VmSession;
  try {
    session = await openVmSession(ctx.drivers.get(rec.driver), rec.vm, { preferSsh: true, onNotice: notice, signal: ctx.signal });
  } catch (err) {
    if (ctx.signal.aborted) return ExitCode.INTERRUPTED;
    throw err;
  }
  const printer = new LogLinePrinter(io.stdout);
  let follower: FileFollower | undefined;
  const warned = new Set<string>();
  /** One probe; a probe that fails for a reason other than the VM being gone is a warning (printed once). */
  const check = async (): Promise<ProbeRunResult | undefined> => {
    try {
      const r = await session.probe(request, { timeoutMs });
      return r.runs.find((x) => x.key === String(rec.id));
    } catch (err) {
      if (err instanceof InterruptedError || ctx.signal.aborted) throw new InterruptedError();
      const msg = (err as Error).message;
      if (!warned.has(msg)) {
        warned.add(msg);
        notice(`cannot check whether run ${rec.id} has ended: ${msg}; still following`);
      }
      if (err instanceof ProbeError || err instanceof NoBunError || err instanceof VmUnavailableError) return undefined;
      throw err;
    }
  };
  const finish = (outcome: RunOutcome): number => {
    printer.flush();
    notice(renderOutcomeLine(rec.id, outcome));
    return o.exitStatus ? outcomeExitCode(outcome) : ExitCode.OK;
  };

  try {
    const first = judgeRunEnd(await check());
    if (first.ended) {
      const { bytes } = await readLogTail(session, logFile, o.tail, readTimeoutMs);
      printer.push(bytes);
      return finish(first.outcome!);
    }
    const { size, bytes } = await readLogTail(session, logFile, o.tail, readTimeoutMs);
    printer.push(bytes);
    if (!o.follow) {
      printer.flush();
      return o.exitStatus ? ExitCode.RUN_NOT_DONE : ExitCode.OK;
    }

    let followError: unknown;
    const broken = new AbortController();
    const stopWaiting = AbortSignal.any([ctx.signal, broken.signal]);
    follower = await session.followFile(logFile, size, (chunk) => printer.push(chunk), { signal: ctx.signal });
    follower.done.catch((err: unknown) => {
      followError = err;
      broken.abort();
    });

    const interval = session.kind === "ssh" ? ATTACH_POLL_MS.ssh : ATTACH_POLL_MS.driver;
    let settlingSince: number | undefined;
    for (;;) {
      await pause(interval, stopWaiting);
      if (ctx.signal.aborted) return ExitCode.INTERRUPTED;
      if (followError) throw followError;
      const j = judgeRunEnd(await check());
      if (j.settling) settlingSince ??= Date.now();
      else settlingSince = undefined;
      const settledEnough = settlingSince !== undefined && Date.now() - settlingSince >= LAUNCHER_SETTLE_MS;
      if (!j.ended && !settledEnough) continue;
      // The log is final: stop following and read whatever the follower has not delivered yet.
      const f = follower;
      follower = undefined;
      f.stop();
      printer.push(await readLogFrom(session, logFile, f.offset, readTimeoutMs));
      return finish(j.outcome!);
    }
  } catch (err) {
    if (ctx.signal.aborted) return ExitCode.INTERRUPTED;
    throw err;
  } finally {
    follower?.stop();
    session.close();
  }
}
