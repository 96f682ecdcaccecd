#!/usr/bin/env bash
# User-space instructions per echo for each server, counted by callgrind:
# the same count whatever else the machine is doing, so it separates
# servers on a busy 2-core machine where CPU time per echo cannot. Each
# server runs under valgrind while `echo-client bench` drives it (10
# connections, 64-byte messages by default) for SECONDS; the figure is the
# whole process's instruction count (every thread, start-up included)
# divided by the round trips, and, for ours, the connection task's share.
# Kernel work (the syscalls, TCP) is not counted: see BENCHMARKS.md for
# where that goes.
#
#   scripts/instructions.sh [SECONDS]          # default 6
#   BASE_BIN=DIR scripts/instructions.sh        # also an earlier echo-server
#   LOAD=100x4096 scripts/instructions.sh       # another load
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions.sh needs valgrind (apt-get install valgrind)" >&2; exit 2; }
secs=${1:-6}
load=${LOAD:-10x64}
conns=${load%x*}
len=${load#*x}
cargo build --release -q --bin echo-server --bin echo-client --example baseline_tokio_echo
rel=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

count() { # name command... (PORT in the command is replaced)
    local name=$1 port
    shift
    port=$(free_port)
    local cmd=("${@//PORT/$port}")
    valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" "${cmd[@]}" >/dev/null 2>"$work/$name.err" &
    local pid=$!
    for _ in $(seq 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.2
    done
    "$rel/echo-client" bench --connect "tcp:127.0.0.1:$port" -c "$conns" -s "$len" -d "$secs" -w 0 --json >"$work/$name.json"
    kill -TERM "$pid"
    wait "$pid" || true
    python3 - "$name" "$work" <<'EOF'
import json, re, subprocess, sys
name, work = sys.argv[1], sys.argv[2]
echoes = json.load(open(f"{work}/{name}.json"))["requests"]
total = int(re.search(r"Collected : (\d+)", open(f"{work}/{name}.err").read()).group(1))
task = ""
annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", f"{work}/{name}.out"],
                           capture_output=True, text=True).stdout
for line in annotated.splitlines():
    if "server.rs:echo_net::server::Served<S>::run::{{closure}}" in line and "=>" not in line:
        task = f"{int(line.split()[0].replace(',', '')) / echoes:10.0f}"
        break
print(f"{name:>10} {echoes:>9} {total / echoes:12.0f} {task:>10}")
EOF
}

echo "user-space instructions per echo under callgrind ($load, ${secs}s each)"
printf '%10s %9s %12s %10s\n' server echoes "per echo" "conn task"
count tokio-nd "$rel/examples/baseline_tokio_echo" 127.0.0.1:PORT --nodelay
if [ -n "${BASE_BIN:-}" ]; then
    count ours-base "$BASE_BIN/echo-server" -q --listen tcp:PORT:interface=127.0.0.1
fi
count ours "$rel/echo-server" -q --listen tcp:PORT:interface=127.0.0.1
