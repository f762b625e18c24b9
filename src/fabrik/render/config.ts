/** Rendering settings (`fabrik config list|get --explain`). Pure. */
import type { SettingView } from "../config.js";
import type { RenderContext } from "../command.js";
import { renderTable } from "./table.js";
import { sanitizeLine } from "../../core/sanitize.js";

const sourceText = (s: SettingView) => (s.source === "env" ? `env ${s.source_detail}` : s.source === "file" ? "file" : s.source);

/** `KEY VALUE SOURCE` (and with `explain`: DEFAULT ENV MEANING), then the file's path. */
export function renderSettings(rows: SettingView[], o: Pick<RenderContext, "tty"> & { explain: boolean; file: string }): string {
  const headers = o.explain ? ["KEY", "VALUE", "SOURCE", "DEFAULT", "ENV", "MEANING"] : ["KEY", "VALUE", "SOURCE"];
  const cells = rows.map((s) => {
    const base = [s.key, s.value === null ? "-" : sanitizeLine(String(s.value), 200), sourceText(s)];
    return o.explain ? [...base, s.default === null ? "-" : String(s.default), s.env ?? "-", s.describe] : base;
  });
  return renderTable(headers, cells, { tty: o.tty }) + (o.tty || o.explain ? `config file: ${o.file}\n` : "");
}

/** `config get KEY --explain`: `KEY = VALUE (from …)`. */
export function renderSettingExplained(s: SettingView): string {
  const from = s.source === "env" ? `the environment (${s.source_detail})` : s.source === "file" ? `the config file ${s.source_detail}` : s.source === "flag" ? `the flag ${s.source_detail}` : "the built-in default";
  return `${s.key} = ${s.value === null ? "(unset)" : sanitizeLine(String(s.value), 500)}  (from ${from})\n  ${s.describe}\n`;
}
