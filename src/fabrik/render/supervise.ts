/** Rendering `fabrik supervise` events, one line each. Pure. */
import type { SuperviseEvent } from "../supervise-service.js";
import type { RenderContext } from "../command.js";
import { formatDuration } from "../../core/units.js";
import { sanitizeLine } from "../../core/sanitize.js";

/** `<time> <what>`: one line per event (passes, resumes, refusals, skips). */
export function renderSuperviseEvent(e: SuperviseEvent, r: Pick<RenderContext, "color" | "tty">): string {
  const c = r.color;
  const t = e.at.replace(/\.\d+Z$/, "Z");
  const run = (x: { run_id: number; vm: string }) => `run ${x.run_id} (VM ${sanitizeLine(x.vm)})`;
  switch (e.type) {
    case "start":
      return `${t} supervising ${e.vms ? e.vms.map((v) => sanitizeLine(v)).join(", ") : "every VM"}${e.once ? " once" : ` every ${formatDuration(e.interval_ms)}`} (max ${e.max_resumes} resume(s) per run${e.retry_failed ? ", failed runs retried" : ""}; ${e.holder})\n`;
    case "pass": {
      const down = e.vms.filter((v) => !v.ok);
      return `${t} pass ${e.pass}: ${e.vms.length} VM(s), ${e.runs_checked} run(s) checked, ${e.actions} action(s)${down.length ? `; not probed: ${down.map((v) => `${sanitizeLine(v.name)} (${sanitizeLine(v.error ?? v.state, 120)})`).join(", ")}` : ""}\n`;
    }
    case "resumed":
      return `${t} ${c.green("resumed")} ${run(e)}: ${sanitizeLine(e.reason)} (attempt ${e.attempt}/${e.max_resumes}${e.mode ? `, ${e.mode}` : ""})\n`;
    case "resume-refused":
      return `${t} ${c.yellow("refused")} ${run(e)}: ${sanitizeLine(e.message, 500)} (attempt ${e.attempt}/${e.max_resumes})\n`;
    case "resume-failed":
      return `${t} ${c.red("failed")} ${run(e)}: ${sanitizeLine(e.message, 500)} (attempt ${e.attempt}/${e.max_resumes})\n`;
    case "skipped":
      return `${t} left ${run(e)} alone (${e.status}): ${sanitizeLine(e.reason, 300)} [${e.code}]\n`;
    case "stopped":
      return `${t} stopped after ${e.passes} pass(es): ${e.reason}\n`;
  }
}
