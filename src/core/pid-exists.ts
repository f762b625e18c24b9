/**
 * Whether a process with this pid exists on this machine: signal 0, where EPERM means it exists but belongs to
 * another user. ONE definition for the host (the config file's lock holder, the launch staging sweep) and the
 * guest programs (`pidFact`, bundled from the same source). Existence only: whether the pid is still the run's
 * process is `pid-identity.ts`'s judgement.
 */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
