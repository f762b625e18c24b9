/** Rendering the run-level control actions (cancel, approve, deny, signal, compact) for people. Pure. */
import { sanitizeText } from "../../core/sanitize.js";
import { formatBytes } from "../../core/units.js";
import type { ControlOutcome } from "../control-service.js";

const PAST: Record<ControlOutcome["action"], string> = { cancel: "cancelled", approve: "approved", deny: "denied", signal: "signalled", compact: "compacted" };

/** The outcome of `run cancel|approve|deny|signal|compact` (or its plan with `--dry-run`). */
export function renderControlOutcome(o: ControlOutcome, r: { tty: boolean }): string {
  const L: string[] = [];
  const p = o.plan;
  const ok = r.tty ? "✓" : "ok  ";
  const bad = r.tty ? "✗" : "FAIL";
  if (o.ended) {
    L.push(`run ${o.id} already ended (${p.db_status ?? o.effective_status ?? "ended"}); nothing to ${o.action}, nothing was changed`);
    return sanitizeText(L.join("\n") + "\n");
  }
  if (o.dry_run) {
    L.push(`${o.action} plan for run ${o.id} (VM ${p.vm}, smithers run ${p.smithers_run_id}, engine ${p.engine_version ?? "unknown"})`);
    L.push(`  verdict:   ${o.allowed ? "allowed" : "REFUSED"}${p.db_status ? ` (DB status ${p.db_status})` : ""}`);
    if (p.node) L.push(`  gate:      ${p.node}${p.iteration ? ` (iteration ${p.iteration})` : ""}`);
    if (p.relaunch) L.push(`  then:      start the run again on the same run id (no engine process lives)`);
    if (p.backup_path) L.push(`  backup:    ${p.backup_path} (VACUUM INTO, verified; last ${p.keep_backups} kept)`);
    const ov = o.vm_result?.oversized;
    if (o.action === "compact" && (ov || p.oversized)) {
      L.push(
        `  compact:   truncate values over ${p.oversized?.limit_bytes ?? "?"} bytes (keep the tail), then VACUUM` +
          (ov ? ` — ${ov.values} value(s) over it now; largest ${formatBytes(Math.max(ov.max_response_text_bytes ?? 0, ov.max_error_json_bytes ?? 0))}; DB ${formatBytes(ov.db_bytes + ov.wal_bytes)}` : ""),
      );
    }
    L.push("", "Checks:");
    for (const c of p.checks) L.push(`  ${c.ok ? ok : bad} ${c.name}  ${c.detail}`);
    for (const w of p.warnings) L.push(`warning: ${w}`);
    if (p.reasons.length > 0) {
      L.push("", "Refused because:");
      for (const x of p.reasons) L.push(`  - ${x.message}${x.hint ? `\n    next: ${x.hint}` : ""}`);
    }
    return sanitizeText(L.join("\n") + "\n");
  }
  const v = o.vm_result;
  const status = o.effective_status ?? v?.status_after ?? "unknown";
  const head =
    o.action === "cancel"
      ? `${PAST.cancel} run ${o.id} in VM ${p.vm}: the run is ${status}${o.exit_code !== null ? ` (exit code ${o.exit_code}${v?.exit_code_written ? ", written by fabrik" : ""})` : ""}`
      : o.action === "compact"
        ? `${PAST.compact} run ${o.id} in VM ${p.vm}`
        : `${PAST[o.action]} ${o.action === "signal" ? "run" : (v?.node ?? p.node ?? "the gate")} ${o.action === "signal" ? o.id : `of run ${o.id}`} in VM ${p.vm}`;
  L.push(head);
  for (const c of v?.engine_calls ?? []) L.push(`  engine: ${c.argv.join(" ")} → ${c.status ?? `exit ${c.exit_code}`}`);
  for (const s of v?.signals ?? []) L.push(`  signal: ${s.signal} to ${s.role} ${s.pid}`);
  if (v?.backup) L.push(`  backup: ${v.backup.path} (${formatBytes(v.backup.size_bytes)})${v.backup.removed.length ? `; removed ${v.backup.removed.length} older` : ""}`);
  if (v?.fix) {
    const before = v.fix.file_bytes_before.db_bytes + v.fix.file_bytes_before.wal_bytes;
    const after = (v.fix.file_bytes_after?.db_bytes ?? 0) + (v.fix.file_bytes_after?.wal_bytes ?? 0);
    L.push(`  compact: ${v.fix.values} value(s) truncated to ${v.fix.limit_bytes} bytes (${formatBytes(v.fix.value_bytes_before)} → ${formatBytes(v.fix.value_bytes_after)}); DB ${formatBytes(before)} → ${formatBytes(after)}`);
  }
  if (o.relaunch?.started) L.push(`  started the run again (launcher pid ${o.relaunch.launcher_pid ?? "?"}; ${o.relaunch.script ?? "resume script"}); follow it with \`fabrik run attach --id ${o.id}\``);
  else if (o.action !== "cancel" && o.action !== "compact" && !p.relaunch) L.push("  the engine is running: it continues by itself");
  return sanitizeText(L.join("\n") + "\n");
}
