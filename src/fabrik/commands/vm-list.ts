/** `fabrik vm list`: limactl's fields plus fabrik's (active runs, last run). */
import { defineCommand, view } from "../command.js";

export default defineCommand({
  command: "list",
  describe: "list VMs with their status and runs",
  options: { quiet: { alias: "q", type: "boolean", default: false, describe: "print names only" } },
  async run(ctx, a) {
    const [{ listVms }, { renderVmList }] = await Promise.all([import("../vm-service.js"), import("../render/vm.js")]);
    const { rows, warnings } = await listVms(ctx);
    return view(rows, (v, r) => (a.quiet ? v.map((x) => x.name + "\n").join("") : renderVmList(v, r)), { warnings });
  },
});
