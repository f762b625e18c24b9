// Run with the fixture engine's bun: `bun scripts/bench/make-big-db.js DB RUN_ID SIZE...`
// Grows a COPY of a real Smithers fixture DB (real schema) by one `_smithers_attempts` row per SIZE (bytes) for
// RUN_ID, whose response_text is SIZE 'x' characters (SQLite's printf('%.*c', n, 'x'), built inside SQLite, so
// this process never holds the value). One transaction per row; the WAL is checkpointed and truncated at the end,
// so the result is a WAL-mode DB with no -wal file, as an engine leaves a cleanly closed DB.
"use strict";
const { Database } = require("bun:sqlite");

const [dbPath, runId, ...sizes] = process.argv.slice(2);
if (!dbPath || !runId || sizes.length === 0) {
  process.stderr.write("usage: bun make-big-db.js DB RUN_ID SIZE...\n");
  process.exit(2);
}
const db = new Database(dbPath);
db.exec("PRAGMA synchronous = OFF");
const ins = db.query(`INSERT INTO _smithers_attempts (run_id, node_id, iteration, attempt, state, started_at_ms, finished_at_ms, response_text)
  VALUES (?, ?, 0, 1, 'finished', ?, ?, printf('%.*c', ?, 'x'))`);
let t = Date.now() - sizes.length * 60_000;
sizes.forEach((s, i) => {
  const n = Number(s);
  ins.run(runId, `pi-transcript-${i + 1}`, t, t + 55_000, n);
  t += 60_000;
});
db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
const check = db.query("SELECT count(*) AS n, sum(octet_length(response_text)) AS total, max(octet_length(response_text)) AS max FROM _smithers_attempts WHERE run_id = ?").get(runId);
db.close();
process.stdout.write(JSON.stringify(check) + "\n");
