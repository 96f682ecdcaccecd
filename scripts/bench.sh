#!/usr/bin/env bash
# Benchmarks echo-server (on epoll and on io_uring) against tokio's echo
# example (the baseline), a minimal C epoll server and monoio's echo example,
# alternately in the same run. Prints a table and
# the idle-memory figures. Usage: scripts/bench.sh [SECONDS_PER_RUN] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin echo-server --bin echo-client --example baseline_tokio_echo
cargo build --release -q -p echo-bin --features baseline-monoio --example baseline_monoio_echo
mkdir -p target/release
cc -O2 -Wall -o target/release/epoll_echo scripts/epoll_echo.c
ulimit -n "$(ulimit -Hn)"
exec python3 scripts/bench.py "${1:-3}" "${2:-3}"
