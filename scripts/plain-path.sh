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
#
# With valgrind installed it also counts instructions per echoed chunk
# under callgrind (the same count on every run, whatever else the machine
# does): the figure that shows a cost wall-clock noise would hide. The
# benchmark file of the working tree is used on both sides (its API is the
# same), so both count exactly the same loop.
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
cp core/benches/throughput.rs "$work/base/core/benches/throughput.rs"
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

if command -v valgrind >/dev/null; then
    echo "--- instructions per echoed chunk (callgrind; 20,000 chunks each)"
    printf '%8s %12s %12s %8s\n' chunk base new ratio
    for chunk in 64 1024 16384; do
        count() {
            ECHO_BENCH_BYTES=$((chunk * 20000)) ECHO_BENCH_CHUNKS=$chunk ECHO_BENCH_ROUNDS=1 \
                valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" --bench 2>&1 >/dev/null |
                sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
        }
        # The whole run, minus a run with no chunks: the per-chunk loop alone.
        empty() {
            ECHO_BENCH_BYTES=0 ECHO_BENCH_CHUNKS=$chunk ECHO_BENCH_ROUNDS=1 \
                valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" --bench 2>&1 >/dev/null |
                sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
        }
        b=$(( ($(count "$old") - $(empty "$old")) / 20000 ))
        n=$(( ($(count "$new") - $(empty "$new")) / 20000 ))
        printf '%8s %12s %12s %8s\n' "$chunk" "$b" "$n" "$(python3 -c "print(f'{$n/$b:.3f}')")"
    done
fi
