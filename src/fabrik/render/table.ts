/**
 * Tables for humans. On a TTY: aligned columns without borders (cli-table3), UPPERCASE headers. Off a
 * TTY: stable tab-separated rows with the same header and no truncation (gh's convention), so scripts
 * can `cut -f`. JSON output never goes through here.
 */
import Table from "cli-table3";

export interface TableOptions {
  tty: boolean;
}

/** Render rows under headers. Cells must already be sanitised strings. */
export function renderTable(headers: string[], rows: string[][], opts: TableOptions): string {
  if (!opts.tty) {
    return [headers, ...rows].map((r) => r.map((c) => c.replace(/[\t\n]/g, " ")).join("\t")).join("\n") + "\n";
  }
  const table = new Table({
    head: headers,
    chars: {
      top: "", "top-mid": "", "top-left": "", "top-right": "",
      bottom: "", "bottom-mid": "", "bottom-left": "", "bottom-right": "",
      left: "", "left-mid": "", mid: "", "mid-mid": "",
      right: "", "right-mid": "", middle: "  ",
    },
    style: { head: [], border: [], "padding-left": 0, "padding-right": 0, compact: true },
  });
  for (const r of rows) table.push(r);
  return table.toString().split("\n").map((l) => l.trimEnd()).join("\n") + "\n";
}

/** Human-readable bytes (binary units): 1536 → "1.5KiB". */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 10 ? 0 : 1)}${units[i]}`;
}

/** "45s", "12m", "3h", "2d" — compact age for tables. */
export function formatAgeShort(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "-";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** "45 seconds", "12 minutes", "3 hours" — the guide's `heartbeat_age: 45 minutes` style. */
export function formatAgeLong(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "unknown";
  const s = Math.max(0, Math.round(ms / 1000));
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  if (s < 120) return plural(s, "second");
  const m = Math.floor(s / 60);
  if (m < 120) return plural(m, "minute");
  const h = Math.floor(m / 60);
  if (h < 48) return plural(h, "hour");
  return plural(Math.floor(h / 24), "day");
}

/** ISO-8601 UTC for non-TTY output, or "-". */
export function formatTime(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? "-" : new Date(ms).toISOString();
}
