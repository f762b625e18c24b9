/** Rendering `fabrik runs evidence`. Pure. */
import type { EvidenceView } from "../evidence-service.js";
import { formatBytes } from "../../core/units.js";
import { sanitizeLine } from "../../core/sanitize.js";

/** The bundle's path first (for scripts: `cut -f1`), then what it holds, what was cut and what was masked. */
export function renderEvidence(v: EvidenceView): string {
  const m = v.manifest;
  const masked = Object.entries(m.masking.rules).filter(([, n]) => n > 0);
  const lines = [
    `${v.path}\t${formatBytes(v.bytes)}\tsha256 ${v.sha256}`,
    `run ${m.run.id} in VM ${sanitizeLine(m.run.vm)} (${m.run.effective_status}): ${m.files.length} files${m.snapshot?.name ? `, DB snapshot ${formatBytes(m.snapshot.bytes)} (${Object.values(m.snapshot.tables).reduce((a, b) => a + b, 0)} rows)` : ", no DB snapshot"}`,
    `masked: ${masked.length ? masked.map(([k, n]) => `${n} ${k}`).join(", ") : "nothing found to mask"} (checked again before writing)`,
  ];
  for (const c of m.cut) lines.push(`cut: ${sanitizeLine(c, 500)}`);
  if (m.missing.length) lines.push(`absent in the control dir: ${m.missing.map((x) => sanitizeLine(x, 100)).join(", ")}`);
  for (const p of m.pending) lines.push(`not included: ${p.path} (${p.note})`);
  return lines.join("\n") + "\n";
}
