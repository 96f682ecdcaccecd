#!/usr/bin/env bash
# Hunts flaky tests: runs every integration test binary N times (default 20)
# with ECHO_REQUIRE_PEERS=1, beside two busy-loop CPU hogs (a loaded CI
# machine), and prints each test that failed at least once, how often, and
# its first failure's output. Exit 1 if any test failed.
#
#   scripts/flake-hunt.sh [N]
#   FLAKE_SKIP='^sim$' scripts/flake-hunt.sh 5     # leave out binaries by name (regex)
#   FLAKE_ONLY='^(haproxy|openssl)$' scripts/flake-hunt.sh 20
#   FLAKE_HOGS=0 scripts/flake-hunt.sh              # no CPU hogs
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
hogs=${FLAKE_HOGS:-2}
out=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT

# The test binaries, each with the directory cargo runs it in.
cargo test --workspace --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, os, re, sys
skip = os.environ.get("FLAKE_SKIP") or None
only = os.environ.get("FLAKE_ONLY") or None
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if "test" not in m["target"]["kind"]:
        continue  # integration tests only (unit tests have their own runs)
    name = m["target"]["name"]
    if (skip and re.search(skip, name)) or (only and not re.search(only, name)):
        continue
    print(name, os.path.dirname(m["manifest_path"]), m["executable"])
' >"$out/binaries"
echo "$(wc -l <"$out/binaries") test binaries, $runs runs each, $hogs CPU hogs"

for _ in $(seq "$hogs"); do
  (while :; do :; done) &
  pids+=($!)
done

for run in $(seq "$runs"); do
  while read -r name dir exe; do
    log="$out/$name.$run.log"
    (cd "$dir" && ECHO_REQUIRE_PEERS=1 timeout 900 "$exe" >"$log" 2>&1) || true
    grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E "s/^test (.*) \.\.\. FAILED$/$name \1 $run/" >>"$out/failed" || true
    if ! grep -q '^test result:' "$log"; then
      echo "$name (the whole binary: no result line) - $run" >>"$out/failed"
    fi
  done <"$out/binaries"
  printf 'run %d/%d done: %d failures so far\n' "$run" "$runs" "$(wc -l <"$out/failed" 2>/dev/null || echo 0)"
done

if [ ! -s "$out/failed" ]; then
  echo "no test failed in $runs runs"
  exit 0
fi
echo
echo "| binary | test | failed | of |"
echo "|---|---|---|---|"
awk -v runs="$runs" '{ k = $1 " | " $2; n[k]++ } END { for (k in n) printf "| %s | %d | %d |\n", k, n[k], runs }' "$out/failed" | sort
echo
# The first failure of each, as the test printed it.
awk '!seen[$1 " " $2]++ { print $1, $2, $3 }' "$out/failed" | while read -r name test run; do
  echo "---- first failure: $name $test (run $run)"
  awk -v t="---- $test stdout ----" 'index($0, t) { p = 1 } p && /^---- / && !index($0, t) { exit } p' \
    "$out/$name.$run.log" | head -40
done
exit 1
