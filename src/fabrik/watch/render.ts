/**
 * `runs watch`, the renderers: the TTY frame, one line per event off a TTY. Pure: model in, string out; every
 * string that came from a VM passes through the sanitiser.
 */
import type { ChalkInstance } from "chalk";
import type { RunView } from "../runs-service.js";
import { sanitizeLine } from "../../core/sanitize.js";
import { formatAge } from "../../core/units.js";
import { formatProgress } from "../render/run.js";
import type { FrameRun, WatchEvent } from "./model.js";

/** What a frame needs besides the runs. */
export interface FrameOptions {
  columns: number;
  rows: number;
  color: ChalkInstance;
  intervalS: number;
  vm: string;
  /** `ssh` or `driver`: how this watch talks to the VM. */
  session: string;
  /** Host clock, epoch ms (ages when the VM clock is unknown). */
  now: number;
  /** Leave out the title line (the summary printed after the alternate screen). */
  noTitle?: boolean;
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
      return String(e.line);
  }
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
export function renderFrame(items: readonly FrameRun[], o: FrameOptions): string {
  const c = o.color;
  const L: string[] = [];
  if (!o.noTitle) L.push(c.bold(`fabrik runs watch — VM ${o.vm} (${o.session}) — every ${o.intervalS}s — Ctrl-C to quit`));
  for (const { view: v, nodes, vmNowMs } of items) {
    L.push("");
    const st = v.effective_status;
    const color = st === "done" ? c.green : st === "failed" || st === "orphaned" ? c.red : st === "running" ? c.cyan : c.yellow;
    const hb = v.engine_heartbeat_age_ms === null ? "n/a" : formatAge(v.engine_heartbeat_age_ms);
    const lhb = v.launcher_heartbeat_age_ms === null ? "n/a" : formatAge(v.launcher_heartbeat_age_ms);
    L.push(`${c.bold(`run ${v.id}`)} ${sanitizeLine(v.smithers_run_id, 64)}  ${color(st)}${v.source !== "live" ? c.yellow(` [${v.source}]`) : ""}`);
    L.push(`  ${bar(v.progress, 30)} ${formatProgress(v.progress)}   heartbeat ${hb}   launcher ${lhb}`);
    if (v.source === "unreachable") L.push(c.yellow(`  VM unreachable: ${sanitizeLine(v.unreachable_reason ?? "", 200)} — still trying`));
    const now = vmNowMs ?? o.now;
    for (const n of nodes ?? []) {
      const mark = STATE_MARK[n.state] ?? "?";
      let detail = n.state;
      if (n.state === "in-progress") detail = `running ${n.started_at_ms ? formatAge(now - n.started_at_ms) : ""} (attempt ${n.last_attempt ?? 1})`;
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
