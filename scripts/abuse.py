#!/usr/bin/env python3
"""Load figures for hardening, against a release echo-server on loopback.

  scripts/abuse.py slow-readers [N]        N connections that send until blocked and never read
  scripts/abuse.py flood [LIMIT] [TRIES]   TRIES simultaneous connects against --max-connections LIMIT
  scripts/abuse.py stdin-memory [GIB]      stream GIB GiB through `echo-client --stdin`; peak client RSS
  scripts/abuse.py stalls [N]              N hostile connections of each kind that stall (3 bytes of
                                           a TLS record; `PROXY`) or fail (plain text to ssl:, a bad
                                           PROXY header): KiB per stalled connection beside an idle
                                           one's (same run), log lines written, clients served meanwhile

Builds nothing: run `cargo build --release` first. Prints the figures; exits 1
if a bound is broken. Only loopback is used; every loop is bounded.
"""
import os, resource, socket, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ECHO_BIN_DIR=target/debug measures a debug build instead.
BIN = os.path.join(ROOT, os.environ.get("ECHO_BIN_DIR", os.path.join("target", "release")))
SERVER = os.path.join(BIN, "echo-server")
CLIENT = os.path.join(BIN, "echo-client")
HIGH, READ = 64 * 1024, 16 * 1024


def start(*args):
    p = subprocess.Popen([SERVER, "--listen", "tcp:0:interface=127.0.0.1", "-q", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    port = int(line.split(":port=")[1].split(":")[0])
    return p, port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def echo_ok(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"ping")
        return s.recv(4) == b"ping"


def slow_readers(n):
    server, port = start()
    try:
        idle = rss_kib(server.pid)
        socks, pushed = [], 0
        chunk = b"\x5a" * (256 * 1024)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            deadline = time.time() + 5
            while time.time() < deadline:
                try:
                    pushed += s.send(chunk)
                except BlockingIOError:
                    time.sleep(0.002)
                    try:
                        pushed += s.send(chunk)
                    except BlockingIOError:
                        break
            socks.append(s)
        time.sleep(0.5)
        grown = rss_kib(server.pid) - idle
        bound = n * (HIGH + READ) // 1024
        print(f"slow readers: {n} connections pushed {pushed >> 20} MiB without reading")
        print(f"  server RSS idle {idle} KiB, growth {grown} KiB = {grown / n:.1f} KiB per connection")
        print(f"  bound connections x (high + read) = {bound} KiB; others served meanwhile: {echo_ok(port)}")
        for s in socks:
            s.close()
        # 1 MiB of fixed warm-up cost (worker threads, scratch buffers) is not per connection.
        return grown <= bound + 1024
    finally:
        server.kill()


def flood(limit, tries):
    server, port = start("--max-connections", str(limit))
    try:
        socks = []
        for _ in range(tries):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        time.sleep(1.0)
        served = refused = 0
        for s in socks:
            s.setblocking(True)
            s.settimeout(2)
            try:
                s.sendall(b"?")
                if s.recv(1) == b"?":
                    served += 1
                else:
                    refused += 1
            except OSError:
                refused += 1
        alive = server.poll() is None
        print(f"flood: {tries} connects against --max-connections {limit}: served {served}, refused {refused}, server up: {alive}")
        for s in socks:
            s.close()
        time.sleep(0.5)
        again = echo_ok(port)
        print(f"  after the flood a new client is served: {again}")
        return served <= limit and alive and again
    finally:
        server.kill()


def start_logged(listen, *args):
    """A server at the default log level, its log lines counted."""
    p = subprocess.Popen([SERVER, "--listen", listen, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    port = int(line.split(":port=")[1].split(":")[0])
    return p, port


def served_ms(port):
    t = time.time()
    ok = echo_ok(port)
    return (time.time() - t) * 1000 if ok else None


def stalls(n):
    """KiB per stalled connection and log lines per kind, each beside idle connections
    measured in the same run (RSS growth per connection)."""
    ok = True
    rows = []
    kinds = [
        # (name, listen, extra args, what each connection sends, held open)
        ("idle (proven live)", "tcp:0:interface=127.0.0.1", [], b"i", True),
        ("TLS stall: 3 bytes of a record", "ssl:0:interface=127.0.0.1", ["--self-signed", "--handshake-timeout", "3"], b"\x16\x03\x01", True),
        ("PROXY stall: 'PROXY'", "haproxy:tcp:0:interface=127.0.0.1", [], b"PROXY", True),
        ("plain text to ssl:", "ssl:0:interface=127.0.0.1", ["--self-signed"], b"hello server\r\n", False),
        ("bad PROXY header", "haproxy:tcp:0:interface=127.0.0.1", [], b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", False),
    ]
    for name, listen, args, send, held in kinds:
        server, port = start_logged(listen, *args)
        lines = []
        import threading
        reader = threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True)
        reader.start()
        try:
            time.sleep(0.3)
            before = rss_kib(server.pid)
            socks = []
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(send)
                if send == b"i":
                    s.recv(1)
                socks.append(s)
            time.sleep(1.0)
            grown = rss_kib(server.pid) - before
            # A plain echo on the same server while the connections are held
            # (for tcp: only; the others want a TLS client or a PROXY header).
            meanwhile = served_ms(port) if listen.startswith("tcp:") else None
            if not held:
                for s in socks:
                    s.close()
                socks = []
            # The throttle's summary comes 5 s after the first warning it held.
            time.sleep(6.0)
            for s in socks:
                s.close()
            time.sleep(0.5)
            per = grown / n
            count = len(lines)
            rows.append((name, n, per, count))
            served = "" if meanwhile is None else f", an echo meanwhile in {meanwhile:.1f} ms"
            print(f"{name:34} {n} connections: {per:6.2f} KiB per connection, {count} log lines{served}")
            if count > 30:
                ok = False
            if name.startswith("TLS stall") and per > 8:
                ok = False
        finally:
            server.kill()
            server.wait()
    return ok


def stdin_memory(gib):
    server, port = start()
    try:
        size = gib << 30
        start_t = time.time()
        feed = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
        client = subprocess.run(["/usr/bin/time", "-v", CLIENT, "--stdin", "--connect", f"tcp:127.0.0.1:{port}"],
                                stdin=feed.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        feed.wait()
        took = time.time() - start_t
        peak = next(int(l.split()[-1]) for l in client.stderr.splitlines() if "Maximum resident set size" in l)
        print(f"stdin: {gib} GiB echoed and verified in {took:.1f}s ({size / took / 2**20:.0f} MiB/s), exit {client.returncode}")
        print(f"  client peak RSS {peak} KiB")
        return client.returncode == 0 and peak < 16 * 1024
    finally:
        server.kill()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    what = sys.argv[1] if len(sys.argv) > 1 else "slow-readers"
    if what == "slow-readers":
        ok = slow_readers(int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
    elif what == "stdin-memory":
        ok = stdin_memory(int(sys.argv[2]) if len(sys.argv) > 2 else 4)
    elif what == "stalls":
        ok = stalls(int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
    elif what == "flood":
        ok = flood(int(sys.argv[2]) if len(sys.argv) > 2 else 500, int(sys.argv[3]) if len(sys.argv) > 3 else 5000)
    else:
        sys.exit(__doc__)
    sys.exit(0 if ok else 1)
