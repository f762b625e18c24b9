/**
 * Tables for humans. On a TTY: aligned columns without borders (cli-table3), UPPERCASE headers. Off a
 * TTY: stable tab-separated rows with the same header and no truncation (gh's convention), so scripts
 * can `cut -f`. JSON output never goes through here.
 */
import Table from "cli-table3";

export interface TableOptions {
  tty: boolean;
}

/** One TSV line (tabs and newlines inside cells become spaces). */
export function tsvLine(cells: readonly string[]): string {
  return cells.map((c) => c.replace(/[\t\n]/g, " ")).join("\t") + "\n";
}

/** Render rows under headers. Cells must already be sanitised strings. */
export function renderTable(headers: string[], rows: string[][], opts: TableOptions): string {
  if (!opts.tty) {
    return [headers, ...rows].map(tsvLine).join("");
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
