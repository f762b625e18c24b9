/** `fabrik vm shell NAME [-- cmd …]`: interactive shell or one command; exits with the guest's status. */
import { defineCommand } from "../command.js";
import { vmName } from "../args.js";

export default defineCommand({
  command: "shell <name> [cmd..]",
  describe: "open a shell in a VM, or run a command (`-- cmd args`); exits with the guest's status",
  positionals: { name: { type: "string", demandOption: true, coerce: vmName }, cmd: { type: "string", array: true } },
  options: { workdir: { type: "string", describe: "guest working directory" } },
  async run(ctx, a) {
    const { requireVm } = await import("../context.js");
    const { driver } = await requireVm(ctx, a.name);
    const argv = [...(a.cmd ?? []), ...(a["--"] ?? [])].map(String);
    const code = await driver.shell(a.name, argv.length > 0 ? argv : undefined, { cwd: a.workdir });
    return { kind: "exit", exitCode: code };
  },
});
