/** Rendering a resume plan and a resume's result for people. Pure: model in, string out. */
import { nodeLabel, type ResumePlan } from "../../resume/plan.js";
import { sanitizeText } from "../../core/sanitize.js";

/** Every line of a resume rendering comes partly from the VM (node ids, owner ids, command lines, errors): one sanitiser pass over all of it. */
function clean(text: string): string {
  return sanitizeText(text);
}
import type { ResumeOutcome } from "../resume-service.js";

/** Render a plan for people (pure). `tty` picks symbols; the script is printed in full. */
export function renderResumePlan(plan: ResumePlan, opts: { tty: boolean; showScript: boolean }): string {
  const ok = opts.tty ? "✓" : "ok  ";
  const bad = opts.tty ? "✗" : "FAIL";
  const L: string[] = [];
  L.push(`Resume plan for run ${plan.host_run_id} (VM ${plan.vm}, smithers run ${plan.smithers_run_id}, engine ${plan.engine_version ?? "unknown"})`);
  L.push(`  verdict:   ${plan.allowed ? "allowed" : "REFUSED"}`);
  L.push(`  mode:      ${plan.mode_description ?? "-"}${plan.db_status ? ` (DB status ${plan.db_status})` : ""}`);
  if (plan.progress) L.push(`  progress:  ${plan.banner.slice(0, 2).join("; ")}`);
  L.push(`  command:   ${plan.engine_command ?? "-"}`);
  const pin = plan.engine_pin;
  L.push(`  engine:    pinned ${pin.before ?? "unknown"}${pin.changed ? ` -> ${pin.after ?? "unknown"} (--engine)` : pin.after && pin.after !== pin.before ? ` (resume script pins ${pin.after})` : " (unchanged)"}`);
  L.push("", "Checks:");
  const w = Math.max(...plan.checks.map((c) => c.name.length), 8);
  for (const c of plan.checks) L.push(`  ${c.ok ? ok : bad} ${c.name.padEnd(w)}  ${c.detail}${c.source === "vm" ? "  [in VM]" : ""}`);
  if (!plan.checks.some((c) => c.source === "vm")) L.push(`  (re-checked inside the VM right before any change: ${plan.rechecked_in_vm.join("; ")})`);
  L.push("", `Will reset (one transaction, run ${plan.smithers_run_id} only; finished work and other runs untouched):`);
  const r = plan.reset;
  if (r.attempts.length === 0 && r.nodes.length === 0 && !r.run && !r.by_engine) L.push("  nothing");
  for (const a of r.attempts) L.push(`  attempt ${nodeLabel(a)} #${a.attempt ?? "?"}: ${a.from} -> ${a.to}`);
  for (const n of r.nodes) L.push(`  node    ${nodeLabel(n)}: ${n.from} -> ${n.to}`);
  if (r.run) L.push(`  run     heartbeat_at_ms (${r.run.heartbeat_at_ms ?? "NULL"}) and runtime_owner_id (${r.run.runtime_owner_id ?? "NULL"}) -> NULL`);
  if (r.by_engine) L.push(`  engine  ${r.by_engine}`);
  L.push("", `Backup:  ${plan.backup_path} (VACUUM INTO, WAL included, verified before use; last ${plan.keep_backups} verified kept)`);
  if (plan.fix) {
    L.push(
      `Fix:     truncate this run's response_text/error_json values over ${plan.fix.limit_bytes} bytes (keep the tail), then VACUUM` +
        (plan.fix.oversized_values !== null ? ` — largest now ${Math.max(plan.fix.max_response_text_bytes ?? 0, plan.fix.max_error_json_bytes ?? 0)} bytes` : ""),
    );
  }
  L.push(`Script:  ${plan.script_path}`);
  for (const x of plan.warnings) L.push(`warning: ${x}`);
  if (plan.reasons.length > 0) {
    L.push("", "Refused because:");
    for (const x of plan.reasons) L.push(`  - ${x.message}${x.hint ? `\n    next: ${x.hint}` : ""}`);
  }
  if (opts.showScript && plan.script) {
    L.push("", `----- ${plan.script_path} -----`, plan.script.replace(/\n$/, ""), "----- end of script -----");
  }
  return clean(L.join("\n") + "\n");
}

/** Render what a real resume did (pure). */
export function renderResumeResult(o: ResumeOutcome): string {
  const r = o.vm_result!;
  const L: string[] = [];
  L.push(`resumed run ${o.plan.host_run_id} in VM ${o.plan.vm}: ${o.plan.mode_description} (smithers run ${o.plan.smithers_run_id}; launcher pid ${r.pids?.launcher_pid ?? "?"})`);
  if (o.plan.engine_pin.changed) L.push(`  engine: ${o.plan.engine_pin.before ?? "unknown"} -> ${o.plan.engine_pin.after}`);
  L.push(`  ${o.plan.banner.slice(0, 2).join("; ")}`);
  if (r.backup) L.push(`  backup: ${r.backup.path} (${r.backup.size_bytes} bytes)${r.backup.removed.length ? `; removed ${r.backup.removed.length} older` : ""}`);
  if (r.fix) {
    L.push(
      `  fix: ${r.fix.values} value(s) truncated (${r.fix.value_bytes_before} -> ${r.fix.value_bytes_after} bytes); DB ${r.fix.file_bytes_before.db_bytes + r.fix.file_bytes_before.wal_bytes} -> ${(r.fix.file_bytes_after?.db_bytes ?? 0) + (r.fix.file_bytes_after?.wal_bytes ?? 0)} bytes`,
    );
  }
  const c = r.reset?.counts;
  if (c) L.push(`  reset: ${c.attempts_cancelled} attempt(s) -> cancelled, ${c.nodes_pending} node(s) -> pending${c.run_cleared ? ", heartbeat/owner cleared" : ""}${r.reset?.by_engine ? `; ${r.reset.by_engine}` : ""}`);
  if (r.script) L.push(`  script: ${r.script.path}`);
  L.push(`  follow it with \`fabrik run attach --id ${o.plan.host_run_id}\``);
  return clean(L.join("\n") + "\n");
}
