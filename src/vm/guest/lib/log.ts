/**
 * Reading the run's log (`reports/smithers.log`, appended by every launch of the control dir). Pure helpers over
 * bytes already read; shared by the guest programs.
 */

/** The launcher marker that starts each launch's part of the appended log (`[fabrik HH:MM:SS] ===== fabrik run|resume …`). */
export const LAUNCH_MARKER = "===== fabrik ";

/**
 * Does the CURRENT launch's part of the log (after the last launch marker in the tail) say "string or blob too
 * big"? A resume appends to the same log, so an old attempt's failure must not count for the run as it is now.
 */
export function blobTooBigInCurrentLaunch(tail: Buffer): boolean {
  const at = tail.lastIndexOf(LAUNCH_MARKER);
  return (at >= 0 ? tail.subarray(at) : tail).includes("string or blob too big");
}

