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
