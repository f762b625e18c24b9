/** Rendering VM lists and multi-VM results. Pure: view model in, string out. */
import type { VmListRow } from "../vm-service.js";
import type { RenderContext } from "../command.js";
import { formatAge, formatBytes, formatTime } from "../../core/units.js";
import { renderTable } from "./table.js";
import { sanitizeLine } from "../../core/sanitize.js";

/** `NAME STATUS DRIVER SSH CPUS MEMORY DISK ACTIVE LAST-RUN DIR`. */
export function renderVmList(rows: VmListRow[], opts: Pick<RenderContext, "tty" | "now" | "color">): string {
  if (rows.length === 0) return opts.tty ? "No VMs. Create one with `fabrik vm create NAME`.\n" : "";
  const c = opts.color;
  const status = (s: string) => (s === "Running" ? c.green(s) : s === "Stopped" ? c.dim(s) : c.red(s));
  const lastRun = (r: VmListRow) =>
    r.last_run_id === null ? "-" : opts.tty ? `${r.last_run_id} (${formatAge(opts.now - (r.last_run_at_ms ?? opts.now))} ago)` : `${r.last_run_id}@${formatTime(r.last_run_at_ms)}`;
  return renderTable(
    ["NAME", "STATUS", "DRIVER", "SSH", "CPUS", "MEMORY", "DISK", "ACTIVE", "LAST RUN", "DIR"],
    rows.map((r) => [
      sanitizeLine(r.name),
      opts.tty ? status(r.status) : r.status,
      r.driver,
      r.ssh ?? "-",
      r.cpus === null ? "-" : String(r.cpus),
      formatBytes(r.memory_bytes),
      formatBytes(r.disk_bytes),
      String(r.active_runs),
      lastRun(r),
      sanitizeLine(r.dir ?? "-"),
    ]),
    { tty: opts.tty },
  );
}
