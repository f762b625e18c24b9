/** `fabrik runs import --vm NAME [--path DIR|DB]`: register runs that exist in a VM; importing twice does not duplicate. */
import { defineCommand, view } from "../command.js";
import { vmName } from "../args.js";

export default defineCommand({
  command: "import",
  describe: "register runs that exist in a VM but fabrik did not start",
  options: {
    vm: { type: "string", coerce: vmName, demandOption: true, describe: "the VM to look in" },
    path: { type: "string", describe: "a control dir or a Smithers DB in the VM (default: ~/work/<vm>/.runs/*)" },
  },
  async run(ctx, a) {
    const [{ importRuns }, { renderRunList }] = await Promise.all([import("../run-import.js"), import("../render/run.js")]);
    const r = await importRuns(ctx, a.vm, a.path);
    const notes = [
      `imported ${r.imported.length} run(s); ${r.already_registered.length} already registered${r.skipped.length ? `; ${r.skipped.length} skipped` : ""}`,
      ...r.skipped.map((s) => `  skipped ${s.control_dir}: ${s.reason}`),
    ];
    return view(r, (v, rc) => (v.imported.length > 0 ? renderRunList(v.imported, rc) : ""), { notes });
  },
});
