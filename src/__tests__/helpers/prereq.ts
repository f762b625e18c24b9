/**
 * What a test file needs from the machine. Locally a missing prerequisite skips the file with the reason in
 * its title; under `CI=true` it FAILS the run instead (a CI run that silently skipped the end-to-end tier would
 * prove nothing). `.ci/run` installs everything listed here and sets `CI=true`.
 *
 * Checks look at the file system only (PATH lookups, uid): no child process, so they are safe at collection.
 */
import fs from "node:fs";
import path from "node:path";

export type Prereq = "root" | "sshd" | "unshare" | "nsenter" | "ssh" | "ssh-keygen" | "scp" | "rsync" | "sudo" | "tar" | "tail" | "flock" | "shellcheck" | "tmux" | "python3" | "bash" | "pgrep";

const HINTS: Record<Prereq, string> = {
  root: "needs root (the Lima stand-in uses pid/mount namespaces)",
  sshd: "needs /usr/sbin/sshd (apt-get install openssh-server; .ci/run installs it)",
  unshare: "needs unshare (util-linux)",
  nsenter: "needs nsenter (util-linux)",
  ssh: "needs ssh (openssh-client)",
  "ssh-keygen": "needs ssh-keygen (openssh-client)",
  scp: "needs scp (openssh-client)",
  rsync: "needs rsync (apt-get install rsync): the stand-in's `limactl copy` uses it as Lima does when host and guest have it",
  sudo: "needs sudo (apt-get install sudo): the stand-in's guest user has passwordless sudo, as on Lima",
  tar: "needs tar",
  tail: "needs tail (coreutils)",
  flock: "needs flock (util-linux)",
  shellcheck: "needs shellcheck (apt-get install shellcheck)",
  tmux: "needs tmux (apt-get install tmux)",
  python3: "needs /usr/bin/python3",
  bash: "needs bash",
  pgrep: "needs pgrep (procps)",
};

/** Whether `name` is an executable on PATH (or an absolute executable path). */
export function onPath(name: string): boolean {
  const dirs = name.includes("/") ? [""] : (process.env.PATH ?? "/usr/bin:/bin").split(":").filter(Boolean);
  return dirs.some((d) => {
    try {
      fs.accessSync(d ? path.join(d, name) : name, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function present(p: Prereq): boolean {
  switch (p) {
    case "root":
      return process.getuid?.() === 0;
    case "sshd":
      return fs.existsSync("/usr/sbin/sshd");
    case "python3":
      return fs.existsSync("/usr/bin/python3");
    case "sudo":
      return onPath("sudo") && fs.existsSync("/etc/sudoers.d");
    default:
      return onPath(p);
  }
}

export const IN_CI = ["1", "true", "yes"].includes((process.env.CI ?? "").toLowerCase());

/**
 * The reason to skip when a prerequisite is missing, or `false` when all are present. Under CI=true a missing
 * prerequisite throws instead, which fails the file (and the run) with that reason.
 */
export function missingPrereqs(...needs: Prereq[]): string | false {
  const missing = needs.filter((p) => !present(p));
  if (missing.length === 0) return false;
  const reason = missing.map((p) => HINTS[p]).join("; ");
  if (IN_CI) throw new Error(`missing prerequisite under CI=true (not skipping): ${reason}`);
  return reason;
}

/** A describe title that says why it was skipped. */
export function titled(title: string, skip: string | false): string {
  return skip ? `${title} (skipped: ${skip})` : title;
}

/**
 * The prerequisites of the Lima stand-in (VMs in namespaces with a real sshd; `limactl copy` with real scp and rsync;
 * a guest user with sudo).
 */
export const STANDIN: Prereq[] = ["root", "sshd", "unshare", "ssh", "ssh-keygen", "scp", "rsync", "sudo", "tar"];
