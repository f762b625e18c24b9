/** Rendering `fabrik fleet`. Pure: view model in, string out. */
import type { FleetView, FleetVmView } from "../fleet-service.js";
import type { RenderContext } from "../command.js";
import { formatAge, formatBytes, formatDuration, formatTime } from "../../core/units.js";
import { sanitizeLine } from "../../core/sanitize.js";
import { renderTable } from "./table.js";

/**
 * `NAME STATE HEALTH LAST-OK FAILS ENGINES DISK-FREE ACTIVE IDLE-SINCE`, then one line per VM that needs
 * something (idle: the stop command; degraded/down: why, and `fabrik doctor --vm NAME`).
 */
export function renderFleet(v: FleetView, r: Pick<RenderContext, "tty" | "now" | "color">): string {
  if (v.vms.length === 0) return r.tty ? "No VMs. Create one with `fabrik vm create NAME`.\n" : "";
  const c = r.color;
  const health = (x: FleetVmView) => {
    const t = x.idle ? `${x.health}, idle` : x.health;
    if (!r.tty) return t;
    return x.health === "healthy" ? (x.idle ? c.yellow(t) : c.green(t)) : x.health === "degraded" ? c.yellow(t) : x.health === "down" ? c.red(t) : c.dim(t);
  };
  const when = (iso: string | null) => (iso === null ? "-" : r.tty ? `${formatAge(r.now - Date.parse(iso))} ago` : formatTime(Date.parse(iso)));
  const table = renderTable(
    ["NAME", "STATE", "HEALTH", "LAST OK", "FAILS", "ENGINES", "DISK FREE", "ACTIVE", "IDLE SINCE"],
    v.vms.map((x) => [
      sanitizeLine(x.name),
      x.state,
      health(x),
      when(x.last_ok_at),
      String(x.consecutive_failures),
      x.engines.length ? x.engines.map((e) => sanitizeLine(e, 40)).join(",") : "-",
      formatBytes(x.disk_free_bytes),
      x.active_runs ? `${x.active_runs} (${x.active_run_ids.join(",")})` : "0",
      when(x.idle_since),
    ]),
    { tty: r.tty },
  );
  const lines: string[] = [];
  for (const x of v.vms) {
    if (x.idle) lines.push(`${sanitizeLine(x.name)}: idle for ${formatDuration(x.idle_for_ms ?? 0)} (no active run; threshold ${formatDuration(v.vm_idle_ms)}) — stop it: ${x.next_command}`);
    else if (x.health === "degraded" || x.health === "down") lines.push(`${sanitizeLine(x.name)}: ${x.health}: ${sanitizeLine(x.health_reason)}${x.last_error ? ` — ${sanitizeLine(x.last_error, 300)}` : ""}${x.next_command ? ` — check: ${x.next_command}` : ""}`);
  }
  const s = v.summary;
  const footer = r.tty ? `\n${s.total} VM(s): ${s.healthy} healthy, ${s.degraded} degraded, ${s.down} down, ${s.stopped} stopped, ${s.unknown} unknown; ${s.idle} idle${v.live ? "" : " (from the stored history: --no-live)"}\n` : "";
  return table + (lines.length ? "\n" + lines.join("\n") + "\n" : "") + footer;
}
