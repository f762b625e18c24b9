#!/usr/bin/env bash
# fabrik's main job, end to end, on the `local` driver (no Lima needed):
#   1. create a local VM and install the Smithers engine in it,
#   2. launch a real 6-task run of examples/workflows/seq.tsx,
#   3. simulate a crash in the middle of task 3 (SIGKILL the engine and its launcher),
#   4. show what `fabrik runs show` says about it (the truth, not the stale cache),
#   5. plan and run `fabrik run resume`, which continues the same run from task 3,
#   6. watch it finish and show the final state.
# Everything goes to a dedicated FABRIK_HOME (default .cache/quickstart/fabrik-home) so your real registry
# is untouched. Run it again to see it again (it recreates the demo VM).
set -euo pipefail
cd "$(dirname "$0")/.."
export FABRIK_HOME="${FABRIK_HOME:-$PWD/.cache/quickstart/fabrik-home}"
export FABRIK_ENGINE_CACHE_DIR="${FABRIK_ENGINE_CACHE_DIR:-$PWD/.cache/shared-pkg-cache}"
fabrik() { node "$PWD/bin/fabrik.js" "$@"; }
field() { node -e 'let s="";process.stdin.on("data",c=>s+=c).on("end",()=>{const v=JSON.parse(s)[process.argv[1]];process.stdout.write(v===null||v===undefined?"":String(v))})' "$1"; }
step() { printf '\n\033[1m### %s\033[0m\n' "$*"; }

VM=demo
# A fresh demo each time: the dedicated FABRIK_HOME is wiped (never a FABRIK_HOME you set yourself).
if [ "$FABRIK_HOME" = "$PWD/.cache/quickstart/fabrik-home" ] && [ -d "$FABRIK_HOME" ]; then
  fabrik vm stop --force "$VM" >/dev/null 2>&1 || true
  rm -rf "$FABRIK_HOME"
fi
step "1. a local VM with the engine (fabrik vm create $VM --driver local)"
if fabrik vm list -q | grep -qx "$VM"; then fabrik vm delete --force "$VM" >/dev/null; fi
fabrik vm create "$VM" --driver local

step "2. launch a 6-task run (fabrik run --vm $VM --workflow examples/workflows/seq.tsx)"
ID=$(fabrik run --vm "$VM" --workflow examples/workflows/seq.tsx --input '{"tasks":6,"sleepMs":4000}' --name quickstart --json | field id)
echo "host run id: $ID"

step "3. wait for task 3, then crash it (SIGKILL the engine and the launcher)"
for _ in $(seq 1 120); do
  cur=$(fabrik runs show --id "$ID" --json | field current_task)
  [ "$cur" = "step-3" ] && break
  sleep 0.5
done
CONTROL=$(fabrik runs show --id "$ID" --json | field control_dir)
kill -9 "$(cat "$CONTROL/engine.pid")" "$(cat "$CONTROL/launcher.pid")" 2>/dev/null || true
echo "killed the engine during $cur"
sleep 1

step "4. the cache still says running; the VM says otherwise (fabrik runs show --id $ID)"
fabrik runs show --id "$ID" --no-live | head -5
echo "..."
fabrik runs show --id "$ID" || true

step "5. plan the resume (fabrik run resume --id $ID --dry-run; the generated script is not shown here)"
# The engine's own rule refuses a resume while its heartbeat is under 30 s old; the processes are verified
# dead, so --force may skip that wait (it never overrides a living process).
fabrik run resume --id "$ID" --dry-run 2>&1 | awk '/^#!\/usr\/bin\/env bash/ { exit } { print }' || true
step "   resume it (fabrik run resume --id $ID --force --yes): the same run continues from $cur"
fabrik run resume --id "$ID" --force --yes

step "6. watch it finish (fabrik runs watch --vm $VM --run-id $ID --exit-status)"
fabrik runs watch --vm "$VM" --run-id "$ID" --interval 1 --exit-status

step "final state (fabrik runs show --id $ID; fabrik runs list)"
fabrik runs show --id "$ID"
fabrik runs list --vm "$VM"
