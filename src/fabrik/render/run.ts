/**
 * Rendering runs: the guide's `runs show` shape and the `runs list` table. Pure: view model in, string
 * out. Every string that came from a VM passes through sanitizeLine.
 */
import type { ChalkInstance } from "chalk";
import type { RunView } from "../runs-service.js";
import type { Diagnosis } from "../status/diagnoses.js";
import type { RenderContext } from "../command.js";
import { sanitizeLine } from "../../core/sanitize.js";
import { formatAge, formatAgeLong, formatBytes, formatTime } from "../../core/units.js";
import { renderTable } from "./table.js";

/** The renderers' options: a {@link RenderContext} (only these fields are read). */
export type RenderOptions = Pick<RenderContext, "tty" | "now" | "color">;

/** `142/184 (77%)`, or `-`. */
export function formatProgress(p: RunView["progress"]): string {
  if (!p) return "-";
  const pct = p.total > 0 ? Math.floor((p.finished / p.total) * 100) : 0;
  return `${p.finished}/${p.total} (${pct}%)`;
}

function colorStatus(s: string, c: ChalkInstance): string {
  switch (s) {
    case "running":
    case "launching":
      return c.cyan(s);
    case "done":
      return c.green(s);
    case "failed":
    case "orphaned":
      return c.red(s);
    case "stale":
    case "unreachable":
    case "unknown":
      return c.yellow(s);
    default:
      return s;
  }
}

function pidLine(pid: number | null, alive: boolean | null): string {
  if (pid === null) return alive === null ? "unknown" : alive ? "alive" : "dead";
  return `pid ${pid} ${alive === null ? "(unknown)" : alive ? "alive" : "dead"}`;
}

function diagnosisLines(diags: Diagnosis[], c: ChalkInstance): string[] {
  const out: string[] = [];
  for (const d of diags) {
    const mark = d.severity === "error" ? c.red("✗") : d.severity === "warning" ? c.yellow("⚠") : c.dim("ℹ");
    out.push(`${mark} ${d.code}: ${sanitizeLine(d.message, 1000)}`);
    if (d.next_command) out.push(`  next: ${sanitizeLine(d.next_command, 1000)}`);
  }
  return out;
}

/** `fabrik runs show`: the guide's shape — cache status with a mismatch mark, then the VM's truth. */
export function renderRunDetail(v: RunView, o: RenderOptions): string {
  const c = o.color;
  const L: string[] = [];
  const statusMismatch = v.mismatches.find((m) => m.field === "status");
  L.push(`id: ${v.id}${v.label ? `  (${sanitizeLine(v.label)})` : ""}`);
  L.push(`vm: ${v.vm} (${v.driver})`);
  L.push(`smithers_run_id: ${sanitizeLine(v.smithers_run_id)}`);
  // The guide's mismatch line: the cached status, marked, with what the VM shows NOW (the live verdict).
  L.push(`status: ${v.status}${statusMismatch ? ` ${c.yellow("⚠️")}  (VM shows: ${statusMismatch.live})` : ""}`);
  L.push(`effective_status: ${colorStatus(v.effective_status, c)}`);
  L.push(`reason: ${sanitizeLine(v.reason, 1000)}`);
  const checked = v.checked_at_ms === null ? "never checked live" : `${o.tty ? `${formatAge(o.now - v.checked_at_ms)} ago` : formatTime(v.checked_at_ms)}`;
  L.push(`source: ${v.source} (${checked})`);
  L.push(`exit_code: ${v.exit_code ?? "-"}`);
  L.push(`engine_version: ${v.engine_version ?? "-"}`);
  L.push(`created: ${o.tty ? `${formatAge(o.now - Date.parse(v.created_at))} ago` : v.created_at}${v.resume_count ? `; resumed ${v.resume_count}×` : ""}`);
  L.push(`control_dir: ${sanitizeLine(v.control_dir)}`);
  L.push("");
  if (v.source === "unreachable") {
    L.push(`=== VM Status (unreachable — cached values) ===`);
    L.push(`vm: ${sanitizeLine(v.unreachable_reason ?? "unreachable", 500)}`);
  } else if (v.source === "cache") {
    L.push(`=== Cached status (not checked live; drop --no-live to ask the VM) ===`);
  } else {
    L.push(`=== VM Status (Source of Truth) ===`);
  }
  // The guide's label; the field is `engine_run_status`: the engine's own status in its DB.
  L.push(`vm_status: ${v.engine_run_status ? sanitizeLine(v.engine_run_status) : "-"}`);
  const cur = v.current_task
    ? `${sanitizeLine(v.current_task)}${v.current_attempt !== null ? ` (attempt ${v.current_attempt}` : " ("}${v.current_task_started_at_ms && v.checked_at_ms ? `, started ${formatAgeLong(Math.max(0, (v.source === "live" ? v.checked_at_ms : o.now) - v.current_task_started_at_ms))} ago` : ""})`
    : "-";
  L.push(`current_task: ${cur.replace(" ()", "")}`);
  L.push(`progress: ${formatProgress(v.progress)}`);
  if (v.source === "live") {
    const noHeartbeat = v.engine_run_status && v.engine_run_status !== "running" ? "n/a (run ended)" : "n/a (no engine heartbeat)";
    L.push(`heartbeat_age: ${v.engine_heartbeat_age_ms === null ? noHeartbeat : formatAgeLong(v.engine_heartbeat_age_ms)}`);
    L.push(`launcher_heartbeat_age: ${v.launcher_heartbeat_age_ms === null ? "n/a" : formatAgeLong(v.launcher_heartbeat_age_ms)}`);
    L.push(`engine: ${pidLine(v.engine_pid, v.engine_alive)}`);
    L.push(`launcher: ${pidLine(v.launcher_pid, v.launcher_alive)}`);
    L.push(`db: ${sanitizeLine(v.db_path ?? "-")} (${formatBytes(v.db_size_bytes)}${v.wal_size_bytes ? ` + wal ${formatBytes(v.wal_size_bytes)}` : ""})`);
    if (v.run_sh_engine) L.push(`run.sh engine: ${sanitizeLine(v.run_sh_engine)}`);
    if (v.last_failed) L.push(`last_failed: ${sanitizeLine(v.last_failed.node_id)}${v.last_failed.error ? `: ${sanitizeLine(v.last_failed.error, 300)}` : ""}`);
    if (v.missing_facts.length) L.push(`missing_facts: ${v.missing_facts.map((f) => sanitizeLine(f)).join("; ")}`);
  } else if (v.failure_reason) {
    L.push(`failure_reason: ${sanitizeLine(v.failure_reason, 500)}`);
  }
  if (v.mismatches.length) {
    L.push("");
    L.push(`=== Cache vs VM ===${v.cache_updated ? " (cache updated)" : ""}`);
    for (const m of v.mismatches) L.push(`${m.field}: cache=${m.cache ?? "-"} live=${m.live ?? "-"}`);
  } else if (v.cache_updated) {
    L.push("");
    L.push(`cache updated: ${v.cache_changes.map((ch) => ch.field).join(", ")}`);
  }
  if (v.diagnoses.length) {
    L.push("");
    L.push("=== Diagnoses and next steps ===");
    L.push(...diagnosisLines(v.diagnoses, c));
  }
  return L.join("\n") + "\n";
}

/** `fabrik runs list` columns. */
export const RUN_LIST_HEADERS = ["ID", "VM", "STATUS", "CACHE", "PROGRESS", "CURRENT TASK", "HEARTBEAT", "SOURCE", "CHECKED", "CREATED", "NAME"];

/** The cells of one `runs list` row (sanitised). */
export function runListCells(v: RunView, o: RenderOptions): string[] {
  const c = o.color;
  return [
    String(v.id),
    v.vm,
    o.tty ? colorStatus(v.effective_status, c) : v.effective_status,
    v.mismatches.some((m) => m.field === "status") ? `${v.status}${o.tty ? " ⚠" : "!"}` : v.status,
    formatProgress(v.progress),
    v.current_task ? sanitizeLine(v.current_task, 40) : "-",
    v.engine_heartbeat_age_ms === null ? "-" : formatAge(v.engine_heartbeat_age_ms),
    v.source,
    v.checked_at_ms === null ? "-" : o.tty ? `${formatAge(o.now - v.checked_at_ms)} ago` : formatTime(v.checked_at_ms),
    o.tty ? `${formatAge(o.now - Date.parse(v.created_at))} ago` : v.created_at,
    v.label ? sanitizeLine(v.label, 30) : "-",
  ];
}

/** What `runs list` says on a TTY when there is nothing to list. */
export const NO_RUNS = "No runs. Start one with `fabrik run --vm NAME --workflow FILE`.\n";

/** `fabrik runs list` table, whole (for short lists: `runs import`). */
export function renderRunList(views: RunView[], o: RenderOptions): string {
  if (views.length === 0) return o.tty ? NO_RUNS : "";
  return renderTable(RUN_LIST_HEADERS, views.map((v) => runListCells(v, o)), { tty: o.tty });
}
