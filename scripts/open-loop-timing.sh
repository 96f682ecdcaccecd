#!/usr/bin/env bash
# How close to their schedule `bench --rate` sends, against our server on
# loopback: late sends (more than one interval after their time) and the
# corrected p50 (from the intended send) beside the raw p50 (from the
# actual send) measured in the same run, which is its baseline: with sends
# on time the two are close; a generator whose timer makes it late shows a
# corrected p50 of about its timer's tick (tokio's 1 ms) over the raw.
# A timing figure, so a script, not a test. Build first (release by
# default; ECHO_BIN_DIR=target/debug for a debug build).
#
#   scripts/open-loop-timing.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${ECHO_BIN_DIR:-target/release}
secs=${1:-3}
out=$(mktemp)
"$bin/echo-server" --listen tcp:0:interface=127.0.0.1 -q >"$out" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q 'port=' "$out" && break; sleep 0.05; done
port=$(grep -o 'port=[0-9]*' "$out" | head -1 | cut -d= -f2)
printf '%-22s %12s %16s %12s\n' load "late sends" "corrected p50" "raw p50"
for load in "1 1000" "4 1000" "1 100" "10 10000"; do
  set -- $load
  json=$("$bin/echo-client" bench --connect "tcp:127.0.0.1:$port" -c "$1" --rate "$2" -d "$secs" -w 0 --json)
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
load = "-c %s --rate %s" % (sys.argv[2], sys.argv[3])
late = "%d of %d" % (r["late"], r["requests"])
print("%-22s %12s %13.1f us %9.1f us" % (load, late, r["latency_us"]["p50"], r["latency_raw_us"]["p50"]))
' "$json" "$1" "$2"
done
