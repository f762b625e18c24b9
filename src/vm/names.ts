/**
 * VM name rules. fabrik applies Lima's rule to every driver so a VM can move between drivers:
 * `^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$`, at most 76 characters, not ending in `.yml`/`.yaml`
 * (lima-contract §3, `pkg/identifiers`, `dirnames.ValidateInstName`).
 */
import { UsageError } from "../core/errors.js";

const VM_NAME = /^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$/;
export const VM_NAME_MAX = 76;

/** The reason `name` is not a valid VM name, or undefined when it is valid. */
export function vmNameProblem(name: string): string | undefined {
  if (name.length === 0) return "it is empty";
  if (name.length > VM_NAME_MAX) return `it is longer than ${VM_NAME_MAX} characters`;
  if (!VM_NAME.test(name)) return "use letters and digits, separated by single '.', '_' or '-'";
  if (/\.ya?ml$/i.test(name)) return "it must not end in .yml or .yaml";
  return undefined;
}

/** Throw a {@link UsageError} (exit 2) unless `name` is a valid VM name. */
export function assertVmName(name: string): string {
  const problem = vmNameProblem(name);
  if (problem) throw new UsageError(`invalid VM name ${JSON.stringify(name)}: ${problem}`, "e.g. fabrik-1 or ralph.dev");
  return name;
}

/**
 * The longest socket name Lima puts in an instance dir (`ssh.sock` plus the 17 bytes OpenSSH appends to a
 * ControlPath while it creates the socket): lima `pkg/limatype/filenames/filenames.go:104`.
 */
export const LIMA_LONGEST_SOCK = "ssh.sock.1234567890123456";

/**
 * UNIX_PATH_MAX of the host, bytes: 108 on Linux (lima `pkg/osutil/osutil_linux.go:12`), 104 on macOS and the
 * BSDs (`pkg/osutil/osutil_others.go:14`). Windows hosts are not supported by fabrik; they get Linux's value.
 */
export function unixPathMax(platform: NodeJS.Platform): number {
  return platform === "linux" || platform === "win32" ? 108 : 104;
}

/**
 * Why Lima would refuse to create instance `name` under `limaHome` on `platform`, or undefined when it would not:
 * `$LIMA_HOME/<name>/ssh.sock.1234567890123456` must be shorter than {@link unixPathMax} bytes
 * (lima `pkg/instance/create.go:38-43`). `limaHome` is the real LIMA_HOME, symlinks resolved, as Lima uses it.
 */
export function limaSocketPathProblem(name: string, limaHome: string, platform: NodeJS.Platform): string | undefined {
  const sock = `${limaHome.replace(/\/+$/, "")}/${name}/${LIMA_LONGEST_SOCK}`;
  const bytes = Buffer.byteLength(sock);
  const max = unixPathMax(platform);
  if (bytes < max) return undefined;
  const room = max - 1 - Buffer.byteLength(`${limaHome.replace(/\/+$/, "")}//${LIMA_LONGEST_SOCK}`);
  return `Lima's socket path ${sock} would be ${bytes} bytes, and sockets on ${platform === "darwin" ? "macOS" : platform} must stay under ${max}: with this LIMA_HOME a VM name may have at most ${Math.max(0, room)} characters`;
}
