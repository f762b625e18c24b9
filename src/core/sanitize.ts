/**
 * Neutralising text that comes from a VM before it reaches a terminal. The VM is untrusted: an agent
 * can put ANSI/OSC escape sequences or other control characters into node ids, error messages and
 * logs. Everything printed from a VM passes through {@link sanitizeText} or {@link sanitizeLine}.
 */

// CSI, OSC (terminated by BEL or ST), and other ESC-introduced sequences.
// eslint-disable-next-line no-control-regex
const ESCAPE_SEQUENCE = /\u001b(?:\[[0-?]*[ -/]*[@-~]|\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|[PX^_][^\u001b]*(?:\u001b\\)?|[@-Z\\-_])/g;
// C0 controls except TAB and LF, DEL, C1 controls (including the 8-bit CSI 0x9b).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** Replace escape sequences and control characters (except tab and newline) with visible `�`-free text. */
export function sanitizeText(text: string): string {
  return text.replace(ESCAPE_SEQUENCE, "").replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** {@link sanitizeText} for a single line: newlines and tabs become visible too, length capped. */
export function sanitizeLine(text: string, maxChars = 500): string {
  const clean = sanitizeText(text).replace(/\n/g, "\\n").replace(/\t/g, " ");
  return clean.length > maxChars ? clean.slice(0, maxChars - 1) + "…" : clean;
}
