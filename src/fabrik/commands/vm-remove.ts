/** `fabrik vm remove NAME...`: unregister machines added with `vm add --ssh`; never touches the machines. */
import { defineCommand } from "../command.js";
import { vmNames } from "../args.js";

export default defineCommand({
  command: "remove <names..>",
  describe: "unregister ssh VMs (added with `vm add`); the machines and their runs are left as they are",
  positionals: { names: { type: "string", array: true, demandOption: true, coerce: vmNames } },
  options: { force: { alias: "f", type: "boolean", default: false, describe: "remove even while runs there are active (they keep running, unwatched)" } },
  async run(ctx, a) {
    const { removeVms } = await import("../vm-service.js");
    return removeVms(ctx, a.names, { force: a.force });
  },
});
