#!/usr/bin/env bash
# The suite's flake bar: `npm test` N times in a row (default 10) while two busy
# loops keep both cores busy. Each result goes to flake-summary.txt in the
# temp folder. The loops are bounded: they end with this script, or after 2 h.
set -u
cd "$(dirname "$0")/.."
runs=${1:-10}
out=${TMPDIR:-/tmp}/flake-summary.txt
hog() { nice -n 10 timeout 7200 node -e 'for(;;){}' >/dev/null 2>&1 & echo $!; }
H1=$(hog)
H2=$(hog)
trap 'kill "$H1" "$H2" 2>/dev/null' EXIT
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  log=${TMPDIR:-/tmp}/flake-$i.log
  CI=true npm test >"$log" 2>&1
  rc=$?
  echo "run $i: rc=$rc $(grep -E '^tests:' "$log") $(($(date +%s) - start))s" >>"$out"
done
