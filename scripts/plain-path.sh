#!/usr/bin/env bash
# The plain echo path before and after a change, in one run: builds the
# core's throughput benchmark (`core/benches/throughput.rs`: handle_data ->
# pending_output -> handle_written for an echo server connection, against
# a memcpy baseline) at BASE and at the working tree, then runs them in
# turn ROUNDS times and prints every table, so a slowdown of the path every
# byte takes shows as a ratio that moved.
#
#   scripts/plain-path.sh            # BASE defaults to 9be6892, the commit
#                                    # before the fault knobs (issue 18)
#   BASE=<rev> ROUNDS=5 scripts/plain-path.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-9be6892}
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d)
git worktree add --detach "$work/base" "$BASE" >/dev/null 2>&1
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1; rm -rf "$work"' EXIT

build() { # dir target -> path of the bench executable
    (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench -q -p echo-core --bench throughput --no-run \
        --message-format=json 2>/dev/null) |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "throughput" and m.get("executable"):
        print(m["executable"])'
}
old=$(build "$work/base" "$work/target")
new=$(build . "${CARGO_TARGET_DIR:-target}")
echo "base: $BASE ($(git log -1 --format=%s "$BASE" | cut -c1-60))"
echo "new:  working tree at $(git rev-parse --short HEAD)"
for round in $(seq "$ROUNDS"); do
    echo "--- round $round: base"
    "$old" --bench
    echo "--- round $round: new"
    "$new" --bench
done
