/** `fabrik config unset KEY`: remove a setting from the config file (its default or environment applies again). */
import { defineCommand, view } from "../command.js";

export default defineCommand({
  command: "unset <key>",
  describe: "remove a setting from the config file",
  positionals: { key: { type: "string", demandOption: true, describe: "setting key" } },
  options: {},
  async run(ctx, a) {
    const { writeSetting } = await import("../config.js");
    await writeSetting(ctx.config.file, a.key, undefined);
    return view({ key: a.key, file: ctx.config.file }, () => "", { notes: [`unset ${a.key} in ${ctx.config.file}`] });
  },
});
