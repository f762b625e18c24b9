/**
 * How fabrik ends a command it started in a VM: the command runs as a process group in the guest, announces its
 * pid first, and is killed — group and all — through a SECOND call into the VM. One mechanism for every path:
 * the SSH transport's exec channel (`transport/exec.ts`), `limactl shell` (`lima-driver.ts`) and the local driver.
 *
 * Why a second call: killing the host side does not reach the guest. OpenSSH ignores the SSH "signal" request, and
 * a killed `limactl shell` leaves the guest command running, because it runs over Lima's shared ControlMaster
 * connection (lima `cmd/limactl/shell.go:487-494`, lima-contract §10). A timed-out engine install, probe or resume
 * helper would otherwise live on and keep its flock.
 *
 * - {@link EXEC_PREAMBLE}: `sh -c EXEC_PREAMBLE fabrik-exec CMD ARGS…` prints `fabrik-pid <pid>` as its first stderr
 *   line, then execs CMD (same pid). sshd starts each session in a new session, and the login shells on the way
 *   `exec` the last command (Lima's `exec $SHELL -l -c …`), so that pid leads the command's process group; the
 *   local driver starts it with `setsid` (a detached spawn).
 * - {@link KILL_SCRIPT}: `sh -c KILL_SCRIPT fabrik-kill PID` SIGKILLs PID and the process group PID belongs to
 *   (looked up, so it also works if a shell on the way forked instead of exec'ing), never its own group.
 * - {@link STREAM_WATCHDOG}: for long streams (`tail -F`): kills the command once the channel's stdin reaches EOF,
 *   i.e. when the host side closed it or died.
 * - {@link RemotePidReader} takes the pid line out of a stderr stream.
 */

/**
 * `sh -c EXEC_PREAMBLE fabrik-exec CMD ARGS…` prints `fabrik-pid <pid>` as the first stderr line, then execs CMD
 * (same pid). On a deadline or abort the caller kills that pid and its process group with {@link KILL_SCRIPT}
 * through a second call; the line is removed from the stderr it returns ({@link RemotePidReader}).
 */
export const EXEC_PREAMBLE = `printf 'fabrik-pid %s\\n' "$$" >&2; exec "$@"`;

/**
 * `sh -c KILL_SCRIPT fabrik-kill PID`: SIGKILL PID and the process group it belongs to (its own group is never
 * killed). The group is killed with the shell's builtin as `kill -9 -PGID`, the one spelling dash, bash, zsh and
 * busybox all read as "signal 9 to group PGID": dash's builtin rejects `--` and `-s KILL -N`, and procps-ng 4's
 * external `kill` reads a small `-N` after `--` as a signal number (pids in a guest's pid namespace are small).
 * Without `ps`, the group is taken to be PID's own. Always exits 0.
 */
export const KILL_SCRIPT = [
  'pg=$(ps -o pgid= -p "$1" 2>/dev/null | tr -d " ")',
  'me=$(ps -o pgid= -p "$$" 2>/dev/null | tr -d " ")',
  '[ -n "$pg" ] || pg=$1',
  'kill -9 "$1" 2>/dev/null',
  '[ "$pg" = "$me" ] || kill -9 "-$pg" 2>/dev/null',
  "exit 0",
].join("; ");

/**
 * `sh -c STREAM_WATCHDOG fabrik-stream CMD ARGS…` runs CMD with stdin closed and kills it (SIGTERM) as soon as
 * the channel's stdin reaches EOF — which happens when the channel is closed by the host or when the SSH
 * connection dies (sshd's pipes close). Without it a `tail -F` whose reader vanished would live on in the VM
 * until its next write. The watchdog's own output goes to /dev/null so it never holds the channel open.
 * The exit status is CMD's.
 */
export const STREAM_WATCHDOG = [
  // A background list gets /dev/null as stdin (no job control), so keep the channel's stdin on fd 3.
  "exec 3<&0",
  '"$@" </dev/null 3<&- &',
  "p=$!",
  '{ cat <&3; kill -TERM "$p"; } >/dev/null 2>&1 &',
  "w=$!",
  "exec 3<&-",
  'wait "$p"; rc=$?',
  'kill "$w" 2>/dev/null',
  'exit "$rc"',
].join("\n");

/** `argv` wrapped so that it announces its pid: `sh -c EXEC_PREAMBLE fabrik-exec argv…`. */
export function withPidPreamble(argv: readonly string[]): string[] {
  return ["sh", "-c", EXEC_PREAMBLE, "fabrik-exec", ...argv];
}

/** A long stream: announces its pid and ends with its channel's stdin (`EXEC_PREAMBLE` + `STREAM_WATCHDOG`). */
export function streamWithPidPreamble(argv: readonly string[]): string[] {
  return withPidPreamble(["sh", "-c", STREAM_WATCHDOG, "fabrik-stream", ...argv]);
}

/** The argv that kills remote pid `pid` and its process group ({@link KILL_SCRIPT}). */
export function killArgv(pid: number): string[] {
  return ["sh", "-c", KILL_SCRIPT, "fabrik-kill", String(pid)];
}

/** How many stderr bytes are searched for the pid line before giving up (login banners, warnings). */
const PID_SCAN_LIMIT_BYTES = 16 * 1024;

/**
 * Finds the `fabrik-pid <n>` line in a stderr byte stream and removes it. Lines before it (a login shell's
 * warnings, limactl's) pass through unchanged; after it, or once {@link PID_SCAN_LIMIT_BYTES} were searched,
 * everything passes through untouched. Bytes of an unfinished line are held back until its newline (or
 * {@link flush}).
 */
export class RemotePidReader {
  /** The remote pid once its line was seen. */
  pid: number | undefined;
  private held: Buffer | undefined = Buffer.alloc(0);
  private scanned = 0;

  /** Feed a stderr chunk; returns the bytes to pass on. */
  feed(chunk: Buffer): Buffer {
    if (this.held === undefined) return chunk;
    let buf = Buffer.concat([this.held, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      const nl = buf.indexOf(10);
      if (nl < 0) break;
      const line = buf.subarray(0, nl);
      this.scanned += nl + 1;
      const m = /^fabrik-pid (\d+)$/.exec(line.toString("latin1"));
      buf = buf.subarray(nl + 1);
      if (m) {
        this.pid = Number(m[1]);
        this.held = undefined;
        out.push(buf);
        return Buffer.concat(out);
      }
      out.push(line, Buffer.from("\n"));
      if (this.scanned > PID_SCAN_LIMIT_BYTES) {
        this.held = undefined;
        out.push(buf);
        return Buffer.concat(out);
      }
    }
    if (buf.length > PID_SCAN_LIMIT_BYTES) {
      this.held = undefined;
      out.push(buf);
    } else {
      this.held = Buffer.from(buf);
    }
    return Buffer.concat(out);
  }

  /** The bytes still held back (an unfinished last line); call once the stream ended. */
  flush(): Buffer {
    const rest = this.held ?? Buffer.alloc(0);
    this.held = undefined;
    return rest;
  }
}
