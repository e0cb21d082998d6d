#!/usr/bin/env bash
# Runs `npm test` N times in a row (default 5) while two CPU-bound processes run beside it, as on
# a shared CI machine, and prints each run's result and wall time. Exits non-zero if any run fails.
#   bash scripts/test-under-load.sh [runs]
set -u
runs=${1:-5}
mkdir -p test-artifacts
hogs=()
for _ in 1 2; do
  node -e 'for (;;) {}' &
  hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT
failed=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if npm test > "test-artifacts/under-load-$i.log" 2>&1; then result=pass; else result=FAIL; failed=1; fi
  echo "run $i: $result in $(( $(date +%s) - start )) s (log: test-artifacts/under-load-$i.log)"
done
exit $failed
