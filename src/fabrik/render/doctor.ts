/** Rendering `fabrik doctor`. Pure. */
import type { DoctorCheck, DoctorView } from "../doctor-service.js";
import type { RenderContext } from "../command.js";
import { sanitizeLine } from "../../core/sanitize.js";

/**
 * One line per check, grouped (host, then each VM): `✓ name  message` / `! name  message` / `✗ name  message`,
 * with `fix: COMMAND` under every check that is not ok; a summary line last. Off a TTY the marks are `ok`,
 * `warn`, `FAIL`.
 */
export function renderDoctor(v: DoctorView, r: Pick<RenderContext, "tty" | "color">): string {
  const c = r.color;
  const mark = (s: DoctorCheck["status"]) =>
    r.tty ? (s === "ok" ? c.green("✓") : s === "warn" ? c.yellow("!") : c.red("✗")) : s === "ok" ? "ok  " : s === "warn" ? "warn" : "FAIL";
  const lines: string[] = [];
  let group: string | null | undefined;
  const width = Math.max(...v.checks.map((x) => x.name.length));
  for (const x of v.checks) {
    const g = x.scope === "host" ? "host" : `VM ${x.vm}`;
    if (g !== group) {
      if (group !== undefined) lines.push("");
      lines.push(r.tty ? c.bold(`=== ${sanitizeLine(g)} ===`) : `=== ${sanitizeLine(g)} ===`);
      group = g;
    }
    lines.push(`${mark(x.status)} ${x.name.padEnd(width)}  ${sanitizeLine(x.message, 1000)}`);
    if (x.status !== "ok" && x.fix) lines.push(`${" ".repeat((r.tty ? 2 : 5) + width + 2)}fix: ${sanitizeLine(x.fix, 1000)}`);
  }
  const s = v.counts;
  lines.push("", `${s.ok} ok, ${s.warn} warning(s), ${s.fail} failure(s)${v.ok ? "" : " — fabrik doctor exits 1"}`);
  return lines.join("\n") + "\n";
}
