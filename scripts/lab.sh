#!/usr/bin/env bash
# A multi-host lab on one Linux machine: what a balancer test looks like.
#
#   scripts/lab.sh [SECONDS] [RATE]       (as root; default 30 s at 2000 req/s)
#
# Hosts are network namespaces joined by veth pairs on a bridge (the bridge in
# a namespace of its own); every address is 10.77.0.x inside them, so nothing
# outside this machine is ever addressed and the host's own network is not
# touched. On them:
#
#   lb      10.77.0.2   a real HAProxy, mode tcp, round robin, PROXY v2 to
#                       the back ends, health checks every 500 ms
#   be1-3   10.77.0.11- echo-server --listen haproxy:tcp:7000 --banner beN
#   load1-2 10.77.0.21- echo-client bench --rate RATE --shard i/2 --start-at
#                       (the same instant) --banner --interval 1s --hlog
#
# Mid-run the lab SIGKILLs be1 (at a quarter of the run) and restarts it (at
# half), then SIGTERMs be2 (at three quarters: a graceful restart) and
# restarts it. The report: each load host's summary (per back end, errors by
# kind, intervals), the merge of both hosts' saved runs (judged by
# LAB_THRESHOLDS), HAProxy's own log of sessions per back end, and plots of
# the interval series.
#
# LAB_SHAPE=RATE (e.g. 50mbit) shapes the balancer's link with tc tbf.
# LAB_THRESHOLDS (default 'p99<100ms', comma-separated) judge the merged run:
# the lab exits 0 when they hold, 99 when one is breached.
# ECHO_BIN_DIR picks the binaries (default target/release, built if absent).
# LAB_OUT picks the report's directory (default a fresh one under /tmp).
# Everything the lab made (namespaces, links, processes) is removed on exit,
# on failure and on Ctrl-C; a second run right after works.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
rate=${2:-2000}
case $seconds in '' | *[!0-9]*) echo "lab: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;; esac
case $rate in '' | *[!0-9]*) echo "lab: RATE must be a whole number, not '$rate'" >&2; exit 2 ;; esac
if [ "$seconds" -lt 8 ]; then
  echo "lab: a run needs at least 8 s (a failover and a restart fit in it)" >&2
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "lab: network namespaces need root" >&2
  exit 2
fi
for tool in ip haproxy; do
  command -v "$tool" >/dev/null || { echo "lab: $tool is not installed" >&2; exit 2; }
done
bin=${ECHO_BIN_DIR:-target/release}
if [ -z "${ECHO_BIN_DIR:-}" ] && [ ! -x "$bin/echo-server" ]; then
  cargo build --release -q -p echo-bin
fi
bin=$(cd "$bin" && pwd)
out=${LAB_OUT:-$(mktemp -d /tmp/echo-lab.XXXXXX)}
# The verdict: thresholds on the merged latency (comma-separated).
IFS=, read -r -a thresholds <<<"${LAB_THRESHOLDS:-p99<100ms}"
threshold_args=()
for t in "${thresholds[@]}"; do threshold_args+=(--threshold "$t"); done
mkdir -p "$out"

# Names unique to this run, so that a run never meets a dead one's leftovers.
lab=el$$
hosts=(lb be1 be2 be3 load1 load2)
declare -A addr=([lb]=10.77.0.2 [be1]=10.77.0.11 [be2]=10.77.0.12 [be3]=10.77.0.13 [load1]=10.77.0.21 [load2]=10.77.0.22)
pids=()

teardown() {
  trap - EXIT INT TERM
  # The shell's own "Killed" notices for its jobs are not news here.
  exec 2>/dev/null
  for ns in "${hosts[@]}" sw; do
    # Every process in a namespace, whoever started it.
    for pid in $(ip netns pids "$lab-$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${hosts[@]}" sw; do ip netns del "$lab-$ns" 2>/dev/null || true; done
}
trap teardown EXIT
trap 'teardown; exit 130' INT TERM

in_ns() { local ns=$1; shift; ip netns exec "$lab-$ns" "$@"; }

ip netns add "$lab-sw"
ip -n "$lab-sw" link add br0 type bridge
ip -n "$lab-sw" link set br0 up
i=0
for h in "${hosts[@]}"; do
  i=$((i + 1))
  ip netns add "$lab-$h"
  ip -n "$lab-sw" link add "p$i" type veth peer name eth0 netns "$lab-$h"
  ip -n "$lab-sw" link set "p$i" master br0 up
  ip -n "$lab-$h" addr add "${addr[$h]}/24" dev eth0
  ip -n "$lab-$h" link set eth0 up
  ip -n "$lab-$h" link set lo up
done
if [ -n "${LAB_SHAPE:-}" ]; then
  ip netns exec "$lab-lb" tc qdisc add dev eth0 root tbf rate "$LAB_SHAPE" burst 64kb latency 50ms
fi

backend() { # NAME: starts (or restarts) one back end
  local name=$1
  # Started directly (not through a function or a subshell), so that the
  # pid is the server's own: `ip netns exec` execs it.
  ip netns exec "$lab-$name" "$bin/echo-server" --listen "haproxy:tcp:7000:interface=${addr[$name]}" \
    --banner "$name" --grace 1s >>"$out/$name.log" 2>&1 &
  pids+=($!)
  eval "pid_$name=$!"
}
for b in be1 be2 be3; do backend "$b"; done

cat >"$out/haproxy.cfg" <<EOF
global
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend echo
    bind ${addr[lb]}:8000
    default_backend echo
backend echo
    balance roundrobin
    server be1 ${addr[be1]}:7000 send-proxy-v2 check inter 500ms fall 2 rise 2
    server be2 ${addr[be2]}:7000 send-proxy-v2 check inter 500ms fall 2 rise 2
    server be3 ${addr[be3]}:7000 send-proxy-v2 check inter 500ms fall 2 rise 2
EOF
ip netns exec "$lab-lb" haproxy -db -f "$out/haproxy.cfg" >"$out/haproxy.log" 2>&1 &
pids+=($!)

# Every back end and the balancer up (and its checks passed) before load.
for _ in $(seq 50); do
  in_ns load1 bash -c "exec 3<>/dev/tcp/${addr[lb]}/8000" 2>/dev/null && break
  sleep 0.1
done
sleep 1.5

# Both hosts begin at the same instant, each shard i of 2 of one test.
start=$(($(date +%s) + 2))
i=0
for l in load1 load2; do
  ip netns exec "$lab-$l" "$bin/echo-client" bench --connect "tcp:${addr[lb]}:8000" -c 16 --rate "$rate" \
    --start-at "$start" --shard "$i/2" --run-id "$lab" \
    --banner --interval 1s --warmup 0s -d "${seconds}s" --timeout 2s \
    --save "$out/$l.json" --hlog "$out/$l.hlog" --plot-series "$out/$l-series.svg" \
    >"$out/$l.txt" 2>"$out/$l.err" &
  pids+=($!)
  eval "pid_$l=$!"
  i=$((i + 1))
done

at() { sleep "$1"; }
sleep 2
quarter=$((seconds / 4))
at "$quarter"
echo "lab: $(date +%T) SIGKILL be1" | tee -a "$out/events.txt"
{ kill -9 "$pid_be1" && wait "$pid_be1"; } 2>/dev/null || true
at "$quarter"
echo "lab: $(date +%T) restart be1" | tee -a "$out/events.txt"
backend be1
at "$quarter"
echo "lab: $(date +%T) SIGTERM be2 (graceful), then restart" | tee -a "$out/events.txt"
kill -TERM "$pid_be2"
wait "$pid_be2" 2>/dev/null || true
backend be2

for l in load1 load2; do
  # A failover fails some requests: each host's own exit code is reported,
  # the verdict is the merged thresholds'.
  code=0
  eval "wait \$pid_$l" || code=$?
  echo "$l: bench exited $code" >>"$out/events.txt"
done

{
  for l in load1 load2; do
    echo "=== $l"
    cat "$out/$l.txt"
  done
  echo "=== HAProxy's own log: sessions per back end, and those that ended before the run did"
  # tcplog: CLIENT [DATE] FRONTEND BACKEND/SERVER Tw/Tc/Tt BYTES STATE ...;
  # the readiness probe (a few bytes) is not a session of the load.
  awk -v run_ms="$((seconds * 1000 - 500))" '
    $1 ~ /^[0-9.]+:[0-9]+$/ && $4 ~ /^echo\/be/ && $6 >= 64 {
      be = substr($4, 6); split($5, t, "/"); n[be]++
      if (t[3] < run_ms) early[be]++
    }
    END { for (be in n) printf "haproxy %s: %d sessions, %d ended early\n", be, n[be], early[be] + 0 }
  ' "$out/haproxy.log" | sort
  echo "=== events"
  cat "$out/events.txt"
  echo "=== merged (both load hosts), thresholds: ${thresholds[*]}"
} | tee "$out/report.txt"
verdict=0
# The saved runs, whole: the merged report has the per-back-end split, the
# errors by kind and the longest stall too (the .hlog files hold latencies).
"$bin/echo-client" merge "$out/load1.json" "$out/load2.json" --plot "$out/merged.svg" \
  "${threshold_args[@]}" 2>&1 | tee -a "$out/report.txt" || verdict=${PIPESTATUS[0]}
echo "lab: the report, logs and plots are in $out (the failover: load1-series.svg, load2-series.svg)"
exit "$verdict"
