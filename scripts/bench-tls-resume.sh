#!/usr/bin/env bash
# What a resumed TLS handshake saves the server: echo-server's CPU per
# handshake, full (bench --no-resume) beside resumed (sessionTickets=2),
# measured in the same run, for an ECDSA P-256 and an RSA-2048 certificate.
# Every connection makes one request (--reconnect-every 1), so handshakes
# are most of the work; the server runs on core 0, the client on core 1.
# Build first:
#   cargo build --release --bin echo-server --bin echo-client
# SECONDS_EACH (default 3) sets each measurement's length.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
SECS=${SECONDS_EACH:-3}
DIR=$(mktemp -d)
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$DIR"' EXIT

# Certificates made by the openssl tool: a CA and a server certificate.
make_pki() { # KIND: ec or rsa
  local kind=$1 key
  case $kind in
    ec) key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    rsa) key=(-newkey rsa:2048) ;;
  esac
  openssl req -x509 -nodes "${key[@]}" -keyout "$DIR/ca-$kind.key" -out "$DIR/ca-$kind.pem" \
    -subj "/CN=bench CA" -days 2 2>/dev/null
  openssl req -nodes "${key[@]}" -keyout "$DIR/$kind.key" -out "$DIR/$kind.csr" \
    -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' > "$DIR/ext"
  openssl x509 -req -in "$DIR/$kind.csr" -CA "$DIR/ca-$kind.pem" -CAkey "$DIR/ca-$kind.key" \
    -CAcreateserial -out "$DIR/$kind.pem" -days 2 -extfile "$DIR/ext" 2>/dev/null
}

cpu_ticks() { # PID: user + system clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

TICK=$(getconf CLK_TCK)
printf '%-6s %-8s %12s %14s %16s\n' cert kind handshakes "server us/hs" "client p50 us/hs"
for kind in ec rsa; do
  make_pki "$kind"
  taskset -c 0 "$BIN/echo-server" -q \
    --listen "ssl:0:interface=127.0.0.1:privateKey=$DIR/$kind.key:certKey=$DIR/$kind.pem:sessionTickets=2" \
    > "$DIR/server.out" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 50); do grep -q listening "$DIR/server.out" && break; sleep 0.1; done
  PORT=$(grep -o 'port=[0-9]*' "$DIR/server.out" | head -1 | cut -d= -f2)
  for mode in full resumed; do
    extra=()
    [ "$mode" = full ] && extra=(--no-resume)
    before=$(cpu_ticks "$SERVER_PID")
    json=$(taskset -c 1 "$BIN/echo-client" bench \
      --connect "tls:localhost:$PORT:trustRoots=$DIR/ca-$kind.pem" \
      -c 4 -s 64 -d "$SECS" -w 0.5 --reconnect-every 1 --json "${extra[@]}")
    after=$(cpu_ticks "$SERVER_PID")
    python3 - "$kind" "$mode" "$before" "$after" "$TICK" "$json" <<'EOF'
import json, sys
kind, mode, before, after, tick, run = sys.argv[1:]
run = json.loads(run)
n = run["handshakes"]
resumed = run.get("resumed", 0)
# The server's CPU over the whole run (warm-up included) per handshake it
# made; the warm-up's handshakes are not in `n`, so this errs high by the
# warm-up's share (the same for both kinds).
us = (int(after) - int(before)) / int(tick) * 1e6 / max(n, 1)
p50 = run["handshake_us"]["p50"]
print(f"{kind:<6} {mode:<8} {n:>12} {us:>14.0f} {p50:>16.1f}   ({resumed} resumed)")
EOF
  done
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
done
