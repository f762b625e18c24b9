/**
 * `fabrik runs watch`: refresh a VM's runs every interval over ONE session (the persistent SSH channel
 * when the VM offers SSH, else the driver's command path), and show what changes.
 *
 * - TTY: a frame drawn in place in the terminal's alternate screen (cursor home + clear-to-end, one write
 *   per frame: no flicker, nothing left in the scrollback), restored on exit, then a final summary.
 * - Off a TTY: one line per state change; `--json`: NDJSON, one event object per change.
 * Pure parts — snapshots, diffs, frames — are exported and tested without a VM.
 */
import type { Context } from "./context.js";
import { requireVm } from "./context.js";
import { observeVm, reconcile, type RunView } from "./runs-service.js";
import { ExitCode, runOutcomeExitCode } from "./exit-codes.js";
import { NotFoundError, UsageError } from "../core/errors.js";
import type { NodeFact, ProbeResponse } from "../vm/probe-schema.js";
import type { RunRecord } from "./registry.js";
import { openVmSession, type VmSession } from "../vm/session.js";
import { sanitizeLine } from "../core/sanitize.js";
import { formatAgeShort } from "./render/table.js";
import { formatProgress } from "./render/run.js";
import type { ChalkInstance } from "chalk";
import { assertVmName } from "../vm/names.js";

/** Effective statuses at which watch stops following a run. */
export const WATCH_FINAL = new Set(["done", "failed", "cancelled", "orphaned"]);

/**
 * A run is over for watch when its live status is final and the launcher has recorded the engine's exit
 * (exit_code written, or the launcher is gone); the engine records its outcome a moment before it exits,
 * so watch waits a few refreshes for exit_code rather than print "exit -".
 */
export function isFinal(v: RunView, refreshesSeenFinal: number): boolean {
  if (v.source !== "live" || !WATCH_FINAL.has(v.effective_status)) return false;
  return v.exit_code !== null || v.launcher_alive !== true || refreshesSeenFinal > 10;
}

/** The `--exit-status` code for a run's effective status (see {@link runOutcomeExitCode}). */
export const outcomeExitCode = runOutcomeExitCode;

/** What watch remembers of a run between refreshes (small and bounded: no history is kept). */
export interface WatchSnapshot {
  id: number;
  effective_status: string;
  source: string;
  exit_code: number | null;
  /** node key (`id#iteration`) → `state/attempt`. */
  nodes: Map<string, string>;
  diagnoses: Set<string>;
  mismatches: Set<string>;
}

/** One change, as printed off a TTY and as NDJSON. */
export interface WatchEvent {
  type: "status" | "node" | "diagnosis" | "mismatch" | "unreachable" | "reachable" | "final";
  ts: string;
  run_id: number;
  vm: string;
  [k: string]: unknown;
}

const nodeKey = (n: NodeFact) => `${n.node_id}#${n.iteration}`;

export function snapshotOf(v: RunView, nodes: NodeFact[] | null): WatchSnapshot {
  return {
    id: v.id,
    effective_status: v.effective_status,
    source: v.source,
    exit_code: v.exit_code,
    nodes: new Map((nodes ?? []).map((n) => [nodeKey(n), `${n.state}/${n.last_attempt ?? 0}`])),
    diagnoses: new Set(v.diagnoses.map((d) => d.code)),
    mismatches: new Set(v.mismatches.map((m) => `${m.field}:${m.cache}->${m.live}`)),
  };
}

/** The events between two snapshots of one run (pure). `prev` undefined = first sight. */
export function diffSnapshots(prev: WatchSnapshot | undefined, next: WatchSnapshot, v: RunView, nodes: NodeFact[] | null, ts: string): WatchEvent[] {
  const out: WatchEvent[] = [];
  const base = { ts, run_id: v.id, vm: v.vm };
  if (!prev || prev.source !== next.source) {
    if (next.source === "unreachable") out.push({ ...base, type: "unreachable", reason: v.unreachable_reason });
    else if (prev?.source === "unreachable") out.push({ ...base, type: "reachable" });
  }
  if (next.source !== "unreachable" && (!prev || prev.effective_status !== next.effective_status)) {
    out.push({ ...base, type: "status", from: prev?.effective_status ?? null, to: next.effective_status, progress: v.progress ? { finished: v.progress.finished, total: v.progress.total } : null, reason: v.reason });
  }
  for (const n of nodes ?? []) {
    const k = nodeKey(n);
    const now = next.nodes.get(k);
    if (prev?.nodes.get(k) === now) continue;
    if (!prev && n.state === "pending") continue;
    out.push({ ...base, type: "node", node_id: n.node_id, iteration: n.iteration, state: n.state, attempt: n.last_attempt, error: n.error });
  }
  for (const d of v.diagnoses) {
    if (prev?.diagnoses.has(d.code)) continue;
    out.push({ ...base, type: "diagnosis", code: d.code, severity: d.severity, message: d.message, next_command: d.next_command });
  }
  for (const m of v.mismatches) {
    const k = `${m.field}:${m.cache}->${m.live}`;
    if (prev?.mismatches.has(k)) continue;
    out.push({ ...base, type: "mismatch", field: m.field, cache: m.cache, live: m.live, cache_updated: v.cache_updated });
  }
  return out;
}

/** One line per event (off a TTY). All VM strings sanitised. */
export function renderEventLine(e: WatchEvent): string {
  const head = `${e.ts} run ${e.run_id}`;
  switch (e.type) {
    case "status": {
      const p = e.progress as { finished: number; total: number } | null;
      return `${head} status ${e.from ?? "-"} → ${e.to}${p ? ` (${p.finished}/${p.total})` : ""}`;
    }
    case "node":
      return `${head} ${sanitizeLine(String(e.node_id), 200)}${e.iteration ? `[${e.iteration}]` : ""} ${e.state}${e.attempt ? ` (attempt ${e.attempt})` : ""}${e.error ? `: ${sanitizeLine(String(e.error), 300)}` : ""}`;
    case "diagnosis":
      return `${head} ${e.severity} ${e.code}: ${sanitizeLine(String(e.message), 500)}${e.next_command ? ` — next: ${sanitizeLine(String(e.next_command), 300)}` : ""}`;
    case "mismatch":
      return `${head} mismatch ${e.field}: cache=${e.cache ?? "-"} live=${e.live ?? "-"}${e.cache_updated ? " (cache updated)" : ""}`;
    case "unreachable":
      return `${head} VM ${e.vm} unreachable: ${sanitizeLine(String(e.reason ?? ""), 300)} (still trying)`;
    case "reachable":
      return `${head} VM ${e.vm} reachable again`;
    case "final":
      return `run ${e.run_id} finished: ${e.status} (exit ${e.exit_code ?? "-"})`;
  }
}

/** The final line for a run (`run 113 finished: done (exit 0)`). */
export function finalLine(v: RunView): string {
  return `run ${v.id} finished: ${v.effective_status} (exit ${v.exit_code ?? "-"})`;
}

function bar(p: RunView["progress"], width: number): string {
  if (!p || p.total === 0) return "░".repeat(width);
  const full = Math.round((p.finished / p.total) * width);
  return "█".repeat(full) + "░".repeat(width - full);
}

const STATE_MARK: Record<string, string> = { finished: "✓", "in-progress": "→", failed: "✗", cancelled: "⊘", pending: "·", skipped: "-" };

/**
 * One frame for the TTY view (pure): per run a header with status, progress bar, heartbeat ages, then
 * its tasks and diagnoses. Lines are cut to `columns`; the frame to `rows`.
 */
export function renderFrame(
  items: { view: RunView; nodes: NodeFact[] | null; vmNowMs: number | null }[],
  o: { columns: number; rows: number; color: ChalkInstance; intervalS: number; vm: string; session: string; now: number },
): string {
  const c = o.color;
  const L: string[] = [];
  L.push(c.bold(`fabrik runs watch — VM ${o.vm} (${o.session}) — every ${o.intervalS}s — Ctrl-C to quit`));
  for (const { view: v, nodes, vmNowMs } of items) {
    L.push("");
    const st = v.effective_status;
    const color = st === "done" ? c.green : st === "failed" || st === "orphaned" ? c.red : st === "running" ? c.cyan : c.yellow;
    const hb = v.heartbeat_age_ms === null ? "n/a" : formatAgeShort(v.heartbeat_age_ms);
    const lhb = v.launcher_heartbeat_age_ms === null ? "n/a" : formatAgeShort(v.launcher_heartbeat_age_ms);
    L.push(`${c.bold(`run ${v.id}`)} ${sanitizeLine(v.smithers_run_id, 64)}  ${color(st)}${v.source !== "live" ? c.yellow(` [${v.source}]`) : ""}`);
    L.push(`  ${bar(v.progress, 30)} ${formatProgress(v.progress)}   heartbeat ${hb}   launcher ${lhb}`);
    if (v.source === "unreachable") L.push(c.yellow(`  VM unreachable: ${sanitizeLine(v.unreachable_reason ?? "", 200)} — still trying`));
    const now = vmNowMs ?? o.now;
    for (const n of nodes ?? []) {
      const mark = STATE_MARK[n.state] ?? "?";
      let detail = n.state;
      if (n.state === "in-progress") detail = `running ${n.started_at_ms ? formatAgeShort(now - n.started_at_ms) : ""} (attempt ${n.last_attempt ?? 1})`;
      else if (n.state === "failed") detail = `failed${n.error ? `: ${sanitizeLine(n.error, 200)}` : ""}`;
      else if (n.state === "finished" && (n.last_attempt ?? 1) > 1) detail = `finished (attempt ${n.last_attempt})`;
      const styled = n.state === "finished" ? c.green(mark) : n.state === "failed" ? c.red(mark) : n.state === "in-progress" ? c.cyan(mark) : c.dim(mark);
      L.push(`  ${styled} ${sanitizeLine(n.node_id, 80)}${n.iteration ? `[${n.iteration}]` : ""}  ${detail}`);
    }
    for (const m of v.mismatches) L.push(c.yellow(`  ⚠ cache ${m.field}=${m.cache ?? "-"}, VM says ${m.live ?? "-"}${v.cache_updated ? " (cache updated)" : ""}`));
    for (const d of v.diagnoses) {
      L.push(`  ${d.severity === "error" ? c.red("✗") : d.severity === "warning" ? c.yellow("⚠") : "ℹ"} ${d.code}: ${sanitizeLine(d.message, 300)}`);
      if (d.next_command) L.push(`    next: ${sanitizeLine(d.next_command, 200)}`);
    }
  }
  const maxRows = Math.max(5, o.rows - 1);
  const lines = L.length > maxRows ? [...L.slice(0, maxRows - 1), c.dim(`… ${L.length - maxRows + 1} more lines`)] : L;
  return lines.map((l) => truncateVisible(l, o.columns)).join("\n");
}

/** Cut a line with ANSI colour codes to `width` visible characters. */
function truncateVisible(line: string, width: number): string {
  let visible = 0;
  let out = "";
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === "\u001b") {
      const m = /^\u001b\[[0-9;]*m/.exec(line.slice(i));
      if (m) {
        out += m[0];
        i += m[0].length - 1;
        continue;
      }
    }
    if (visible >= width) continue;
    out += ch;
    visible++;
  }
  return out;
}

// Terminal control for the TTY view: alternate screen, hide cursor, home, clear line / to end.
const ALT_ON = "\u001b[?1049h\u001b[?25l";
const ALT_OFF = "\u001b[?25h\u001b[?1049l";
const HOME = "\u001b[H";
const CLEAR_EOL = "\u001b[K";
const CLEAR_EOS = "\u001b[J";

export interface WatchArgs {
  vm: string;
  runId?: number | undefined;
  intervalS: number;
  timeoutS?: number | undefined;
  exitStatus: boolean;
  notify: boolean;
}

async function notifyDesktop(title: string, body: string): Promise<void> {
  const { execa } = await import("execa");
  const tries: [string, string[]][] =
    process.platform === "darwin"
      ? [["osascript", ["-e", `display notification ${JSON.stringify(body)} with title ${JSON.stringify(title)}`]]]
      : [["notify-send", [title, body]]];
  for (const [cmd, args] of tries) {
    try {
      await execa(cmd, args, { timeout: 5000, reject: true, stdio: "ignore" });
      return;
    } catch {
      /* no notifier: silently skipped */
    }
  }
}

/**
 * Watch runs of one VM until they all end (or `--timeout`, or Ctrl-C). Returns the exit code:
 * 0, or with `--exit-status` the worst outcome (done 0, failed 8, cancelled 9, not done 10); 130 on Ctrl-C;
 * 10 on timeout.
 */
export async function watchRuns(ctx: Context, a: WatchArgs): Promise<number> {
  assertVmName(a.vm);
  if (!Number.isFinite(a.intervalS) || a.intervalS < 0.5) throw new UsageError(`--interval must be at least 0.5 seconds, got ${a.intervalS}`, "e.g. --interval 2");
  if (a.timeoutS !== undefined && !(a.timeoutS > 0)) throw new UsageError("--timeout must be a positive number of seconds");
  const reg = ctx.registry();
  let runs: RunRecord[];
  if (a.runId !== undefined) {
    const r = reg.getRun(a.runId);
    if (!r) throw new NotFoundError(`run ${a.runId} does not exist`, "see `fabrik runs list`");
    if (r.vm !== a.vm) throw new UsageError(`run ${a.runId} is in VM ${r.vm}, not ${a.vm}`, `use --vm ${r.vm}`);
    runs = [r];
  } else {
    runs = reg.listRuns({ vm: a.vm, statuses: ["launching", "running", "waiting", "unknown"] });
    if (runs.length === 0) {
      ctx.io.stderr.write(`no active runs in VM ${a.vm} (see \`fabrik runs list --vm ${a.vm}\`)\n`);
      return ExitCode.OK;
    }
  }
  const { driver } = await requireVm(ctx, a.vm);
  const io = ctx.io;
  const tty = io.stdoutTty && !io.json;
  const notice = (msg: string) => {
    if (!tty) io.stderr.write(`fabrik: ${msg}\n`);
    else lastNotice = msg;
  };
  let lastNotice: string | undefined;
  const session: VmSession = await openVmSession(driver, a.vm, { preferSsh: true, onNotice: notice, signal: ctx.signal });
  const snaps = new Map<number, WatchSnapshot>();
  const finished = new Map<number, RunView>();
  /** Refreshes seen with a final DB status while the launcher had not yet written exit_code. */
  const settle = new Map<number, number>();
  const deadline = a.timeoutS !== undefined ? Date.now() + a.timeoutS * 1000 : Infinity;
  let altScreen = false;
  const restore = () => {
    if (altScreen) {
      io.stdout.write(ALT_OFF);
      altScreen = false;
    }
  };
  process.once("exit", restore);
  let lastFrame: { view: RunView; nodes: NodeFact[] | null; vmNowMs: number | null }[] = [];
  try {
    if (tty) {
      io.stdout.write(ALT_ON);
      altScreen = true;
    } else if (!io.json) {
      io.stderr.write(`watching ${runs.length} run(s) in VM ${a.vm} every ${a.intervalS}s (${session.kind}); Ctrl-C to quit\n`);
    }
    for (;;) {
      const active = runs.filter((r) => !finished.has(r.id)).map((r) => reg.getRun(r.id) ?? r);
      let response: ProbeResponse | undefined;
      const { observations } = await observeVm(ctx, driver, a.vm, active, {
        nodes: true,
        probe: async (req) => (response = await session.probe(req, { timeoutMs: ctx.config.probeTimeoutMs, signal: ctx.signal })),
      });
      const ts = new Date().toISOString();
      const frame: typeof lastFrame = [];
      for (const r of active) {
        const obs = observations.get(r.id)!;
        const view = reconcile(ctx, r, obs);
        const nodes = obs.kind === "live" ? (obs.result.db?.nodes ?? null) : null;
        const snap = snapshotOf(view, nodes);
        const events = diffSnapshots(snaps.get(r.id), snap, view, nodes, ts);
        snaps.set(r.id, snap);
        if (io.json) for (const e of events) io.stdout.write(JSON.stringify(e) + "\n");
        else if (!tty) for (const e of events) io.stdout.write(renderEventLine(e) + "\n");
        frame.push({ view, nodes, vmNowMs: response?.now_ms ?? null });
        if (isFinal(view, (settle.get(r.id) ?? 0) + 1)) finished.set(r.id, view);
        else if (view.source === "live" && WATCH_FINAL.has(view.effective_status)) settle.set(r.id, (settle.get(r.id) ?? 0) + 1);
      }
      // keep finished runs in the frame (their last state)
      lastFrame = runs.map((r) => frame.find((f) => f.view.id === r.id) ?? lastFrame.find((f) => f.view.id === r.id)).filter((x): x is NonNullable<typeof x> => x !== undefined);
      if (tty) {
        const text = renderFrame(lastFrame, { columns: io.columns, rows: process.stdout.rows ?? 40, color: io.color, intervalS: a.intervalS, vm: a.vm, session: session.kind, now: Date.now() });
        const body = text.split("\n").map((l) => l + CLEAR_EOL).join("\n") + (lastNotice ? `\n${io.color.yellow(sanitizeLine(lastNotice, 200))}${CLEAR_EOL}` : "");
        io.stdout.write(HOME + body + "\n" + CLEAR_EOS);
      }
      if (finished.size === runs.length) break;
      if (Date.now() >= deadline) {
        restore();
        io.stderr.write(`fabrik: watch timed out after ${a.timeoutS}s; ${runs.length - finished.size} run(s) still not finished\n`);
        return ExitCode.RUN_NOT_DONE;
      }
      await sleep(a.intervalS * 1000, ctx.signal);
    }
  } catch (err) {
    if (ctx.signal.aborted) {
      restore();
      return ExitCode.INTERRUPTED;
    }
    throw err;
  } finally {
    restore();
    process.off("exit", restore);
    session.close();
  }
  // Final lines (after leaving the alternate screen, so they stay in the scrollback).
  let code: number = ExitCode.OK;
  for (const r of runs) {
    const v = finished.get(r.id)!;
    if (tty) io.stdout.write(renderFrame(lastFrame.filter((f) => f.view.id === r.id), { columns: io.columns, rows: 1000, color: io.color, intervalS: a.intervalS, vm: a.vm, session: session.kind, now: Date.now() }).split("\n").slice(2).join("\n") + "\n");
    const line = finalLine(v);
    if (io.json) io.stdout.write(JSON.stringify({ type: "final", ts: new Date().toISOString(), run_id: v.id, vm: v.vm, status: v.effective_status, exit_code: v.exit_code }) + "\n");
    else if (tty) io.stdout.write(line + "\n");
    else io.stdout.write(line + "\n");
    const oc = outcomeExitCode(v.effective_status);
    if (oc > code) code = oc;
    if (a.notify) await notifyDesktop(`fabrik: run ${v.id}`, line);
  }
  return a.exitStatus ? code : ExitCode.OK;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new Error("aborted"));
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new Error("aborted"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
