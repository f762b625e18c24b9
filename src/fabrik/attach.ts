/**
 * `fabrik run attach --id N`: print the last lines of a run's log (`<control dir>/reports/smithers.log`), then
 * follow it until the run ends, then say how it ended. Detaching (Ctrl-C) never touches the run.
 *
 * - Data items are the log's lines, each passed through {@link sanitizeText} (the VM is untrusted: no terminal
 *   escape sequence reaches the terminal); while following, only complete lines are emitted. Notices
 *   (reconnecting, the final "run N finished: …" line) go to stderr. With `--json`: NDJSON `{type:"log"}` and
 *   one `{type:"end"}` event.
 * - The log is followed through a {@link VmSession} (persistent SSH when the driver offers it), which resumes
 *   after a dropped connection from the exact byte offset it had delivered.
 * - A resume appends to the same log (with `[fabrik HH:MM:SS] ===== fabrik resume …` marker lines), so an
 *   attach simply keeps showing it.
 * - "Ended" is the status authority's judgement (`status/run-end.ts`, shared with `runs watch`); then the rest
 *   of the log is read from the follower's offset, so the whole log is printed before the final line.
 */
import { StringDecoder } from "node:string_decoder";
import type { Context } from "./context.js";
import type { StreamResult } from "./command.js";
import { InterruptedError, UsageError, VmUnavailableError } from "../core/errors.js";
import { ExitCode, runOutcomeExitCode } from "./exit-codes.js";
import { DEFAULTS } from "./config.js";
import type { Sink } from "./io.js";
import { sanitizeText } from "../core/sanitize.js";
import { CONTROL_FILES } from "../vm/launcher.js";
import type { ProbeRequest } from "../vm/probe-schema.js";
import type { RunObservation } from "../vm/probe.js";
import { NoBunError, ProbeError } from "../vm/probe.js";
import { openVmSession, type FileFollower, type VmSession } from "../vm/session.js";
import { deriveRunState } from "./status/derive.js";
import { RunEndTracker, renderOutcomeLine, type RunOutcome } from "./status/run-end.js";
import { requireRun, thresholds } from "./runs-service.js";
import { channel, pause, type Emitter } from "./stream.js";
import type { LaunchResult } from "./launch.js";

/** The `fabrik run attach` options (flags `--id`, `--tail`, `--follow/--no-follow`, `--exit-status`). */
export interface AttachOptions {
  id: number;
  /** Lines of history printed first (default 50 in the CLI). */
  tail: number;
  /** Keep following until the run ends (`--no-follow`: print the tail and return). */
  follow: boolean;
  /** Return the run's outcome as the exit code (`runOutcomeExitCode`). */
  exitStatus: boolean;
}

/** How often the run's state is probed while following, ms: SSH (an open channel, ~1 ms) vs driver (a process per probe). */
export const ATTACH_POLL_MS = { ssh: 1_000, driver: 2_000 } as const;

/** One data item of an attach stream. */
export type AttachItem =
  | { kind: "launched"; run: LaunchResult }
  | { kind: "log"; run_id: number; text: string }
  | { kind: "end"; run_id: number; outcome: RunOutcome };

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
 * A missing file, and anything that is not a regular file (a symbolic link, a FIFO), prints `0`.
 */
export const TAIL_SCRIPT = `f=$1 n=$2
{ [ -f "$f" ] && [ ! -L "$f" ]; } || { echo 0; exit 0; }
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

/** `sh -c READ_FROM_SCRIPT fabrik-read FILE K`: FILE from byte K (1-based, as `tail -c +K`) to its end, in base64 (nothing for a symbolic link). */
export const READ_FROM_SCRIPT = `[ -L "$1" ] || tail -c "+$2" -- "$1" | base64`;

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

/**
 * Attach to run `o.id` as a stream: the tail of its log, then the log as it grows until the run ends, then the
 * outcome. The stream's exit code: 0; with `exitStatus` the run's outcome (`runOutcomeExitCode`; with `--no-follow`
 * a run that has not ended gives 10); 130 when `ctx.signal` aborts (Ctrl-C): following stops, the run is never
 * signalled.
 *
 * @throws NotFoundError for an unknown run id (exit 4), before streaming; the stream throws VmUnavailableError
 *   when the VM cannot be reached, or following broke and could not be resumed (exit 6).
 */
export function attachStream(ctx: Context, o: AttachOptions, extra: { notes?: string[]; launched?: LaunchResult } = {}): StreamResult<AttachItem> {
  if (!Number.isSafeInteger(o.tail) || o.tail < 0) throw new UsageError(`--tail must be a whole number ≥ 0 (got ${o.tail})`);
  const rec = requireRun(ctx, o.id);
  const stopper = new AbortController();
  const items = channel<AttachItem>((emit) => attachLoop(ctx, o, rec, emit, extra, AbortSignal.any([ctx.signal, stopper.signal])), () => stopper.abort());
  return {
    kind: "stream",
    items,
    // `run --follow`: the run's id first (as `fabrik run` prints it), then the log.
    renderItem: (e) => (e.kind === "log" ? e.text : e.kind === "launched" ? `${e.run.id}\n` : undefined),
    itemJson: (e) =>
      e.kind === "log"
        ? { type: "log", run_id: e.run_id, text: e.text }
        : e.kind === "end"
          ? { type: "end", run_id: e.run_id, status: e.outcome.label, outcome: e.outcome.kind, exit_code: e.outcome.exitCode }
          : { type: "launched", ...e.run },
  };
}

async function attachLoop(
  ctx: Context,
  o: AttachOptions,
  rec: ReturnType<typeof requireRun>,
  emit: Emitter<AttachItem>,
  extra: { notes?: string[]; launched?: LaunchResult },
  signal: AbortSignal,
): Promise<number> {
  if (extra.launched) emit.data({ kind: "launched", run: extra.launched });
  for (const n of extra.notes ?? []) emit.notice(n);
  const logFile = `${rec.control_dir}/${CONTROL_FILES.log}`;
  const request: ProbeRequest = {
    v: 1,
    runs: [{ key: String(rec.id), control_dir: rec.control_dir, db_path: rec.smithers_db_path, smithers_run_id: rec.smithers_run_id }],
  };
  const timeoutMs = ctx.config.probeTimeoutMs;
  const readTimeoutMs = DEFAULTS.remoteTimeoutMs;
  if (signal.aborted) return ExitCode.INTERRUPTED;

  let session: VmSession;
  try {
    session = await openVmSession(await ctx.driver(rec.driver), rec.vm, { preferSsh: true, onNotice: (m) => emit.notice(m), signal, installCache: await ctx.guestInstalls() });
  } catch (err) {
    if (signal.aborted) return ExitCode.INTERRUPTED;
    throw err;
  }
  const printer = new LogLinePrinter({ write: (text) => emit.data({ kind: "log", run_id: rec.id, text }) });
  let follower: FileFollower | undefined;
  const warned = new Set<string>();
  const tracker = new RunEndTracker();
  /** One probe, judged by the status authority; a probe that fails for a reason other than the VM being gone is a notice (once). */
  const check = async () => {
    let obs: RunObservation;
    try {
      const r = await session.probe(request, { timeoutMs });
      const result = r.runs.find((x) => x.key === String(rec.id));
      obs = result ? { kind: "live", result, vmNowMs: r.now_ms, tool: r.tool } : { kind: "unreachable", reason: "no result for this run" };
    } catch (err) {
      if (err instanceof InterruptedError || signal.aborted) throw new InterruptedError();
      const msg = (err as Error).message;
      if (!warned.has(msg)) {
        warned.add(msg);
        emit.notice(`cannot check whether run ${rec.id} has ended: ${msg}; still following`);
      }
      if (!(err instanceof ProbeError || err instanceof NoBunError || err instanceof VmUnavailableError)) throw err;
      obs = { kind: "unreachable", reason: msg };
    }
    return tracker.update(deriveRunState(rec, obs, ctx.now(), thresholds(ctx)), ctx.now());
  };
  const finish = (outcome: RunOutcome): number => {
    printer.flush();
    emit.data({ kind: "end", run_id: rec.id, outcome });
    emit.notice(renderOutcomeLine(rec.id, outcome));
    return o.exitStatus ? runOutcomeExitCode(outcome.kind) : ExitCode.OK;
  };

  try {
    const first = await check();
    if (first.phase === "ended") {
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
    const stopWaiting = AbortSignal.any([signal, broken.signal]);
    follower = await session.followFile(logFile, size, (chunk) => printer.push(chunk), { signal });
    follower.done.catch((err: unknown) => {
      followError = err;
      broken.abort();
    });

    const interval = session.kind === "ssh" ? ATTACH_POLL_MS.ssh : ATTACH_POLL_MS.driver;
    for (;;) {
      await pause(interval, stopWaiting);
      if (signal.aborted) return ExitCode.INTERRUPTED;
      if (followError) throw followError;
      const j = await check();
      if (j.phase !== "ended") continue;
      // The log is final: stop following and read whatever the follower has not delivered yet.
      const f = follower;
      follower = undefined;
      f.stop();
      printer.push(await readLogFrom(session, logFile, f.offset, readTimeoutMs));
      return finish(j.outcome!);
    }
  } catch (err) {
    if (signal.aborted) return ExitCode.INTERRUPTED;
    throw err;
  } finally {
    follower?.stop();
    session.close();
  }
}
