// The `string-width` API on `fast-string-width`: the same widths for what fabrik prints (ANSI escapes ignored,
// East Asian wide characters count 2) without string-width's ~30 ms of regex start-up, which yargs' help and
// cli-table3 would pay on every command. scripts/build.mjs maps the `string-width` package to this file.
"use strict";
const { default: fastStringWidth } = require("fast-string-width");

module.exports = function stringWidth(text) {
  return typeof text === "string" && text.length > 0 ? fastStringWidth(text) : 0;
};
module.exports.default = module.exports;
