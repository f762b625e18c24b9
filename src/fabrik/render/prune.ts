/** Rendering `fabrik runs prune`. Pure. */
import type { PruneView } from "../prune-service.js";
import type { RenderContext } from "../command.js";
import { formatBytes, formatTime } from "../../core/units.js";
import { sanitizeLine } from "../../core/sanitize.js";
import { renderTable } from "./table.js";

/** `ID VM STATUS ENDED SIZE ACTION WHY [RESULT]`, then what went (or would go). */
export function renderPrune(v: PruneView, r: Pick<RenderContext, "tty" | "color" | "now">): string {
  if (v.items.length === 0) return `nothing to prune${v.cutoff ? ` (no run ended before ${v.cutoff})` : ""}\n`;
  const applied = !v.dry_run && v.items.some((i) => i.result !== null);
  const headers = ["ID", "VM", "STATUS", "ENDED", "SIZE", "ACTION", "WHY", ...(applied ? ["RESULT"] : [])];
  const action = (a: string) => (!r.tty ? a : a === "keep" ? r.color.dim(a) : a === "remove" ? r.color.red(a) : r.color.yellow(a));
  const rows = v.items.map((i) => [
    String(i.id),
    sanitizeLine(i.vm),
    i.source === "live" ? i.status : `${i.status} (${i.source})`,
    formatTime(Date.parse(i.ended_at)),
    formatBytes(i.bytes),
    action(i.action),
    sanitizeLine(i.reason, 200),
    ...(applied ? [i.result ?? "-"] : []),
  ]);
  const goes = v.items.filter((i) => i.action !== "keep").length;
  const summary = v.dry_run
    ? `dry run: ${goes} run(s) would go, ${formatBytes(v.freed_bytes)} freed; nothing was changed`
    : applied
      ? `pruned ${v.pruned} run(s), ${formatBytes(v.freed_bytes)} freed`
      : goes === 0
        ? "nothing to prune: every candidate is kept"
        : `${goes} run(s) would go (${formatBytes(v.freed_bytes)})`;
  return renderTable(headers, rows, { tty: r.tty }) + summary + "\n";
}
