/** `fabrik config set KEY VALUE`: validate with the config schema and write the file atomically. */
import { defineCommand, view } from "../command.js";

export default defineCommand({
  command: "set <key> <value>",
  describe: "set a setting in the config file (validated, written atomically)",
  positionals: {
    key: { type: "string", demandOption: true, describe: "setting key, e.g. probe.timeout_ms" },
    value: { type: "string", demandOption: true, describe: "the new value" },
  },
  options: {},
  async run(ctx, a) {
    const { writeSetting } = await import("../config.js");
    await writeSetting(ctx.config.file, a.key, String(a.value));
    return view({ key: a.key, value: String(a.value), file: ctx.config.file }, () => "", { notes: [`set ${a.key} in ${ctx.config.file}`] });
  },
});
