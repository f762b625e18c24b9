// Build-time stand-in for zod's `v4/locales/index.js` (scripts/build.mjs): fabrik's CLI bundle keeps only the English
// messages, the ones zod configures by default (classic/external.js: `config(en())`) and the only ones fabrik prints.
// The 40-odd other locales were 303 KB of the 1.74 MB bundle, read and deserialized on every start.
export { default as en } from "zod/v4/locales/en.js";
