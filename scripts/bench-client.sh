#!/usr/bin/env bash
# The load generator itself: an older echo-client (OLD=path, e.g. a release
# build of an earlier commit) against the current one, alternating, on one
# server (ours, core 0; client core 1); then the current client holding
# --rate against ours and the tokio baseline. Build first:
#   cargo build --release --bin echo-server --bin echo-client --example baseline_tokio_echo
set -u
cd "$(dirname "$0")/.."
NEW=target/release/echo-client; OLD=${OLD:-.bench-bin/echo-client}
target/release/echo-server -q --listen tcp:0:interface=127.0.0.1 > /tmp/gs.out 2>/dev/null & SP=$!
sleep 0.4; PORT=$(grep -o 'port=[0-9]*' /tmp/gs.out | cut -d= -f2)
BPORT=$(python3 -c "import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])")
target/release/examples/baseline_tokio_echo 127.0.0.1:$BPORT --nodelay > /dev/null 2>&1 & BP=$!
sleep 0.4
echo "closed loop 100 x 64, 3 s, server core 0, client core 1 (req/s):"
for round in 1 2; do
  for which in OLD NEW; do
    bin=${!which}
    r=$(taskset -c 1 $bin bench --connect tcp:127.0.0.1:$PORT -c 100 -s 64 -d 3 -w 0.5 --json | grep -o '"requests_per_sec":[0-9.]*' | cut -d: -f2)
    echo "  round $round $which $r"
  done
done
echo "open loop --rate, 3 s, new client (asked, got):"
for target in ours:$PORT tokio:$BPORT; do
  name=${target%%:*}; port=${target#*:}
  for rate in 20000 50000; do
    out=$(taskset -c 1 $NEW bench --connect tcp:127.0.0.1:$port -c 100 -s 64 -d 3 -w 0.5 --rate $rate --json)
    got=$(echo "$out" | grep -o '"requests_per_sec":[0-9.]*' | cut -d: -f2)
    sk=$(echo "$out" | grep -o '"skipped":[0-9]*' | cut -d: -f2)
    p99=$(echo "$out" | grep -o '"latency_us":{[^}]*' | grep -o '"p99":[0-9.]*' | cut -d: -f2)
    echo "  $name rate $rate: got $got req/s (skipped $sk, corrected p99 ${p99}us)"
  done
done
kill $SP $BP
