/**
 * What fabrik reads from `limactl list --json` and `limactl info` (lima-contract §1, §3), validated with zod. A module
 * of its own, loaded by `lima-driver.ts` only when such an answer arrives: a `limactl shell` call (every probe) needs
 * neither zod nor these schemas before it starts.
 */
import util from "node:util";
import { z } from "zod";
import type { VmInfo, VmStatus } from "./driver.js";

/** Go's `*fs.PathError` (and `*os.SyscallError`-like structs) as `encoding/json` writes them. */
const GoPathErrorSchema = z.object({ Op: z.string(), Path: z.string(), Err: z.unknown() }).passthrough();

/** The fields fabrik reads from `limactl info` (one pretty JSON object, lima-contract §3). */
export const LimaInfoSchema = z.object({ limaHome: z.string().min(1).optional(), hostOS: z.string().min(1).optional() }).passthrough();

/** One line of `limactl list --json` (lima-contract §1). Unknown keys are kept. */
export const LimaInstanceSchema = z
  .object({
    name: z.string(),
    status: z.string().optional().default(""),
    dir: z.string().optional(),
    vmType: z.string().optional(),
    arch: z.string().optional(),
    cpus: z.number().optional(),
    memory: z.number().optional(),
    disk: z.number().optional(),
    sshLocalPort: z.number().optional(),
    sshConfigFile: z.string().optional(),
    /** Strings, or Go error structs (see {@link limaErrorTexts}); null entries are possible. */
    errors: z.unknown().optional(),
    config: z
      .object({
        user: z.object({ name: z.string().optional(), home: z.string().optional() }).passthrough().optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();
export type LimaInstance = z.infer<typeof LimaInstanceSchema>;

/** Parse `limactl list --json` output (JSON Lines; blank output = no instances). Throws on garbage. */
export function parseLimaList(stdout: string): LimaInstance[] {
  const out: LimaInstance[] = [];
  for (const line of stdout.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "") continue;
    out.push(LimaInstanceSchema.parse(JSON.parse(trimmed)));
  }
  return out;
}

/** The texts Go gives the errno values Lima's errors carry most often (`syscall.Errno.Error()`). */
const ERRNO_TEXT: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ESRCH: "no such process",
  ENOTDIR: "not a directory",
  ECONNREFUSED: "connection refused",
};

function errnoText(err: unknown): string {
  if (typeof err === "number" && Number.isInteger(err) && err > 0) {
    let name: string;
    try {
      name = util.getSystemErrorName(-err);
    } catch {
      return `errno ${err}`;
    }
    return ERRNO_TEXT[name] ?? name;
  }
  if (typeof err === "string" && err !== "") return err;
  return "error";
}

/**
 * The texts of an instance's `errors`, whatever their shape. Real Lima emits Go error values, not strings:
 * `list --json` marshals `store.FormatData`, which embeds `limatype.Instance` by value (lima
 * `pkg/store/instance.go:270`), so `(*Instance).MarshalJSON` (`pkg/limatype/lima_instance.go:77`, strings) does not
 * apply, and `encoding/json` writes each error's exported fields: `{}` for `errors.New`/`fmt.Errorf` values,
 * `{"Op":"open","Path":"…","Err":2}` for a `*fs.PathError`. Strings (the stand-in before, other versions) pass
 * through. The text of a `{}` is only in limactl's stderr warning (`instance \`N\` has errors` with an `errors="[…]"`
 * field, lima `cmd/limactl/list.go:276`): `warning` is that text, used when a struct says nothing.
 */
export function limaErrorTexts(errors: unknown, warning?: string): string[] {
  const out: string[] = [];
  let opaque = 0;
  for (const e of Array.isArray(errors) ? errors : errors === undefined || errors === null ? [] : [errors]) {
    if (e === null || e === undefined) continue;
    if (typeof e === "string") {
      out.push(e);
      continue;
    }
    const pathError = GoPathErrorSchema.safeParse(e);
    if (pathError.success) {
      out.push(`${pathError.data.Op} ${pathError.data.Path}: ${errnoText(pathError.data.Err)}`);
      continue;
    }
    opaque++;
  }
  if (opaque > 0) {
    out.push(warning ?? `Lima reported ${opaque === 1 ? "an error" : `${opaque} errors`} without text in JSON; see \`limactl list\``);
  }
  return out;
}

/** Lima's status word → fabrik's (anything unknown is `Unknown`). */
function statusOf(s: string): VmStatus {
  return s === "Running" || s === "Stopped" || s === "Broken" ? s : "Unknown";
}

/** One `limactl list --json` instance as fabrik's {@link VmInfo}; `warnings`: {@link parseListErrorWarnings}'s map. */
export function toVmInfo(i: LimaInstance, warnings: Map<string, string>): VmInfo {
  return {
    name: i.name,
    driver: "lima",
    status: statusOf(i.status),
    guestHome: i.config?.user?.home,
    guestUser: i.config?.user?.name,
    cpus: i.cpus,
    memoryBytes: i.memory,
    diskBytes: i.disk,
    arch: i.arch,
    vmType: i.vmType,
    dir: i.dir,
    sshConfigFile: i.sshConfigFile,
    sshLocalPort: i.sshLocalPort,
    errors: limaErrorTexts(i.errors, warnings.get(i.name)),
  };
}

