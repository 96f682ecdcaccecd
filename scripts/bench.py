#!/usr/bin/env python3
"""The benchmark runner behind scripts/bench.sh (run that, it builds first).

For every load it runs each server in turn within a round (baseline, the
baseline with TCP_NODELAY, ours, C epoll; rounds repeat A B C D A B C D
...), server pinned to core 0 and client to core 1 where taskset exists, and
samples the server's CPU time and peak RSS from /proc. Prints medians over
rounds and ours/baseline ratios (against tokio with TCP_NODELAY, like for
like).

Each load also gets a percentile plot comparing the servers (the last
round's runs, drawn by `echo-client plot`) in BENCH_PLOTS (default
target/bench-plots), as LOADxLEN.svg.

BENCH_MODE=server-bound: the server gets BENCH_SERVER_CORES (default "0")
and the load generator BENCH_CLIENT_THREADS threads (default 4) on
BENCH_CLIENT_CORES (default "1-4"), so the server is the bottleneck and
requests/s separate servers; CPU per echo (server CPU seconds / round trips)
is the headline either way. BENCH_BIN=DIR runs prebuilt binaries from DIR
(echo-server, echo-client, baseline_tokio_echo, epoll_echo).

BENCH_MIXED=CxLEN (e.g. 4x1048576): a bulk load of C connections echoing
LEN-byte messages runs beside every measured load, from before it starts
until after it ends, on the client's cores; the table adds its MB/s. What
the small echoes get while big ones keep the server busy is the server's
fairness; CPU per echo is not shown then (the bulk load's share of the
server cannot be told apart).

BENCH_SERVERS=tokio-nd,ours,ours-metrics compares ours with and without
--metrics (which counts bytes as they move): the cost of being watched.
ours-uring is ours with --io uring, ours-uring-b60 the same with
--batch-wait 60us; monoio is monoio's echo example (all on io_uring). ours-tls and ours-uring-tls are ours over ssl: on epoll and
on io_uring (BENCH_SERVERS=ours-tls,ours-uring-tls).

BENCH_SYSCALLS=1: also system calls per echo for each server (perf stat's
raw_syscalls:sys_enter on the server's process over BENCH_SYSCALL_SECONDS,
default 3, of the measured load, divided by the echoes the client's
interval lines count in the same seconds), at 100 x 64 and 1000 x 64: what
io_uring changes. BENCH_IDLE=N,M: idle memory at N and M
connections (default 1000,10000; 0 for none).
"""
import json, os, shutil, socket, statistics, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release")
CLIENT = os.path.join(REL, "echo-client")
BASELINE = os.path.join(REL, "baseline_tokio_echo")
if not os.path.exists(BASELINE):
    BASELINE = os.path.join(REL, "examples", "baseline_tokio_echo")
MONOIO = os.path.join(REL, "baseline_monoio_echo")
if not os.path.exists(MONOIO):
    MONOIO = os.path.join(REL, "examples", "baseline_monoio_echo")
THREADS = os.environ.get("BENCH_CLIENT_THREADS", "1")
TICK = os.sysconf("SC_CLK_TCK")
PIN = shutil.which("taskset") is not None and os.cpu_count() >= 2
# BENCH_TAIL=1: also each round's p99.9 and maximum latency.
TAIL = os.environ.get("BENCH_TAIL") == "1"
MIXED = tuple(int(x) for x in os.environ["BENCH_MIXED"].split("x")) if os.environ.get("BENCH_MIXED") else None

SERVERS = {
    "baseline": lambda port: [BASELINE, f"127.0.0.1:{port}"],
    "tokio-nd": lambda port: [BASELINE, f"127.0.0.1:{port}", "--nodelay"],
    "ours": lambda port: [os.path.join(REL, "echo-server"), "-q", "--listen", f"tcp:{port}:interface=127.0.0.1"],
    "ours-w": lambda port: [os.path.join(REL, "echo-server"), "-q", "--listen", f"tcp:{port}:interface=127.0.0.1",
                            "--workers", os.environ.get("BENCH_WORKERS", "1")],
    "c-epoll": lambda port: [os.path.join(REL, "epoll_echo"), str(port)],
    "ours-uring": lambda port: [os.path.join(REL, "echo-server"), "-q", "--listen", f"tcp:{port}:interface=127.0.0.1",
                                "--io", "uring"],
    # io_uring with turns that wait up to 60 us for company while
    # completions come fast: fewer system calls, each echo up to 60 us later.
    "ours-uring-b60": lambda port: [os.path.join(REL, "echo-server"), "-q", "--listen",
                                    f"tcp:{port}:interface=127.0.0.1", "--io", "uring", "--batch-wait", "60us"],
    "monoio": lambda port: [MONOIO, f"127.0.0.1:{port}"],
    # Ours serving metrics (--metrics counts bytes as they move): what a
    # Prometheus-watched server pays per echo.
    "ours-metrics": lambda port: [os.path.join(REL, "echo-server"), "-q", "--listen", f"tcp:{port}:interface=127.0.0.1",
                                  "--metrics", "tcp:0:interface=127.0.0.1"],
    # Ours over TLS (a throw-away certificate; the client skips verification).
    "ours-tls": lambda port: [os.path.join(REL, "echo-server"), "-q", "--listen",
                              f"ssl:{port}:interface=127.0.0.1", "--self-signed"],
    "ours-uring-tls": lambda port: [os.path.join(REL, "echo-server"), "-q", "--listen",
                                    f"ssl:{port}:interface=127.0.0.1", "--self-signed", "--io", "uring"],
}
# An earlier build of ours (BENCH_BASE_BIN=DIR with its echo-server), to
# show that a change costs the plain path nothing: same run, same load.
if os.environ.get("BENCH_BASE_BIN"):
    SERVERS["ours-base"] = lambda port: [os.path.join(os.environ["BENCH_BASE_BIN"], "echo-server"), "-q",
                                         "--listen", f"tcp:{port}:interface=127.0.0.1"]
# BENCH_SERVERS=tokio-nd,ours,ours-tls for a subset (tokio-nd, the ratios'
# baseline, is always kept); by default every server but the TLS ones and
# ours-metrics.
if os.environ.get("BENCH_SERVERS"):
    chosen = ["tokio-nd"] + [n for n in os.environ["BENCH_SERVERS"].split(",") if n != "tokio-nd"]
    SERVERS = {name: SERVERS[name] for name in chosen}
else:
    SERVERS.pop("ours-tls")
    SERVERS.pop("ours-uring-tls")
    SERVERS.pop("ours-metrics")
    SERVERS.pop("ours-uring-b60")
LOADS = [(1, 64), (1, 4096), (10, 64), (10, 4096), (100, 64), (100, 4096), (1000, 64), (1000, 4096), (10, 65536)]
PLOTS = os.environ.get("BENCH_PLOTS") or os.path.join(ROOT, "target", "bench-plots")
if os.environ.get("BENCH_LOADS"):  # e.g. BENCH_LOADS=100x64,1000x64 for a subset
    LOADS = [tuple(int(x) for x in load.split("x")) for load in os.environ["BENCH_LOADS"].split(",")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, core):
    port = free_port()
    cmd = SERVERS[name](port)
    if PIN:
        cmd = ["taskset", "-c", core] + cmd
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{name} did not start")


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])


def bench(port, conns, length, secs, client_core, hgrm, tls=False):
    endpoint = [f"tls:127.0.0.1:{port}", "--insecure"] if tls else [f"tcp:127.0.0.1:{port}"]
    cmd = [CLIENT, "bench", "--connect", *endpoint, "-c", str(conns), "-s", str(length),
           "-d", str(secs), "-w", "0", "--json", "--threads", THREADS, "--hgrm", hgrm]
    if PIN:
        cmd = ["taskset", "-c", client_core] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
    return json.loads(out.stdout)


class CpuSampler(threading.Thread):
    """Samples a process's CPU time every 20 ms, so the CPU of the measured
    window alone (not connection set-up or teardown) can be read back."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            self.samples.append((time.monotonic(), cpu_secs(self.pid)))
            time.sleep(0.02)

    def at(self, t):
        """CPU seconds at time t (the latest sample not after it)."""
        if not self.samples:
            return 0.0
        best = self.samples[0][1]
        for when, cpu in self.samples:
            if when > t:
                break
            best = cpu
        return best


def hgrm_path(name, conns, length):
    """Where a server's latest run at a load keeps its distribution."""
    return os.path.join(PLOTS, f"{conns}x{length}-{name}.hgrm")


def bulk_load(port, secs, client_core):
    """The BENCH_MIXED load, started: it runs for `secs`."""
    conns, length = MIXED
    cmd = [CLIENT, "bench", "--connect", f"tcp:127.0.0.1:{port}", "-c", str(conns), "-s", str(length),
           "-d", str(secs), "-w", "0", "--json"]
    if PIN:
        cmd = ["taskset", "-c", client_core] + cmd
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def one(name, conns, length, secs, server_core="0", client_core="1"):
    server, port = start(name, server_core)
    bulk = None
    try:
        if MIXED:
            bulk = bulk_load(port, secs + 2, client_core)
            time.sleep(1)  # under way before the measured load starts
        sampler = CpuSampler(server.pid)
        sampler.start()
        r = bench(port, conns, length, secs, client_core, hgrm_path(name, conns, length), name.endswith("tls"))
        end = time.monotonic()
        sampler.done.set()
        sampler.join()
        # The measured window ended as the client finished (its drain is
        # near zero against a healthy server) and lasted r["seconds"].
        cpu = sampler.at(end) - sampler.at(end - r["seconds"])
        row = {"rps": r["requests_per_sec"], "p99": r["latency_us"]["p99"], "errors": r["errors"],
               "p999": r["latency_us"]["p99_9"], "max": r["latency_us"]["max"],
               "cpu_us": cpu * 1e6 / max(r["requests"], 1), "rss": status_kib(server.pid, "VmHWM:"),
               "handshake_us": r.get("handshake_us")}
        if bulk:
            out, _ = bulk.communicate(timeout=secs + 60)
            b = json.loads(out)
            row.update(bulk_mbs=b["mb_per_sec"], errors=row["errors"] + b["errors"])
        return row
    finally:
        if bulk and bulk.poll() is None:
            bulk.kill()
        server.kill()
        server.wait()


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def table(secs, rounds, loads, server_core, client_core, title):
    os.makedirs(PLOTS, exist_ok=True)
    if MIXED:
        title += f", beside {MIXED[0]} x {MIXED[1]} B bulk echoes"
    print(f"\n{title} (median of {rounds} rounds, {secs}s each; server core {server_core}, client core {client_core}):")
    print(f"{'load':>12} {'server':>9} {'req/s':>9} {'p99 us':>8} {'CPU us/echo':>11} {'RSS KiB':>8} | {'ours/tokio-nd req/s':>19} {'CPU':>6} {'p99':>6}")
    for conns, length in loads:
        results = {name: [] for name in SERVERS}
        names = list(SERVERS)
        for k in range(rounds):
            # Each round starts with the next server: where a server runs in
            # a round moves its figures by a few per cent (its p99 more), so
            # with as many rounds as servers each runs once in every place.
            for name in names[k % len(names):] + names[:k % len(names)]:
                results[name].append(one(name, conns, length, secs, server_core, client_core))
        shared = "-shared-core" if server_core == client_core else ""
        svg = os.path.join(PLOTS, f"{conns}x{length}{shared}.svg")
        plot_title = f"{conns} connections x {length} B, {secs}s, {title}"
        drawn = subprocess.run([CLIENT, "plot", *[hgrm_path(n, conns, length) for n in SERVERS],
                                "-o", svg, "--title", plot_title], capture_output=True, text=True)
        if drawn.returncode != 0:
            print(f"(no plot: {drawn.stderr.strip()})")
        for name in SERVERS:
            rows = results[name]
            cpu = "-" if MIXED else f"{med(rows, 'cpu_us'):.2f}"
            line = f"{conns:>5} x {length:<5} {name:>9} {med(rows, 'rps'):>9.0f} {med(rows, 'p99'):>8.1f} {cpu:>11} {med(rows, 'rss'):>8.0f}"
            if TAIL:
                # Beyond the p99: a connection left waiting while others are
                # served shows here first. Every round's figure, not a median.
                line += "  p99.9 " + "/".join(f"{r['p999'] / 1000:.0f}" for r in rows)
                line += " max " + "/".join(f"{r['max'] / 1000:.0f}" for r in rows) + " ms"
            if MIXED:
                line += f"  bulk {med(rows, 'bulk_mbs'):.0f} MB/s"
            if name.startswith("ours"):
                b = results["tokio-nd"]
                ratio = lambda k: f"{med(rows, k) / med(b, k):.2f}" if med(b, k) > 0 else "-"
                line += f" | {ratio('rps'):>19} {'-' if MIXED else ratio('cpu_us'):>6} {ratio('p99'):>6}"
            handshakes = [r["handshake_us"] for r in rows if r.get("handshake_us")]
            if handshakes:
                line += f"  handshake p50 {statistics.median(h['p50'] for h in handshakes):.0f} us, p99 {statistics.median(h['p99'] for h in handshakes):.0f} us"
            errors = sum(r["errors"] for r in rows)
            if errors:
                line += f"  ERRORS {errors}"
            print(line, flush=True)


def idle_memory(counts):
    print("\nidle memory (RSS growth per connection after N idle connections, each proven live):")
    for name in [n for n in ("tokio-nd", "ours", "ours-uring", "ours-base", "ours-metrics", "ours-w", "c-epoll", "monoio")
                 if n in SERVERS]:
        for n in counts:
            server, port = start(name, "0")
            try:
                time.sleep(0.2)
                base = status_kib(server.pid, "VmRSS:")
                hold = subprocess.Popen([CLIENT, "bench", "--connect", f"tcp:127.0.0.1:{port}", "--idle", str(n), "--hold", "3"],
                                        stdout=subprocess.PIPE, text=True)
                time.sleep(0.5)
                while hold.poll() is None:
                    # connections are open once the client prints nothing yet but has waited; sample near the end
                    time.sleep(0.2)
                    grown = status_kib(server.pid, "VmRSS:") - base
                hold.wait()
                print(f"  {name:>9} {n:>6} connections: {grown / n:.2f} KiB per connection", flush=True)
            finally:
                server.kill()
                server.wait()


def stop(*processes):
    """Kills what still runs of `processes` and reaps them."""
    for p in processes:
        if p.poll() is None:
            p.kill()
        p.wait()


def over_measured_seconds(name, port, conns, length, secs, begin, end):
    """Runs the client against `port`, calls begin() once its first second
    of measured load is over and end() after the next `secs`, and returns
    the echoes of those seconds, as the client's interval lines count them
    (a whole run would also count the connect phase's echoes, which the
    client does not measure: at 1,000 connections a quarter of what the
    server echoed)."""
    cmd = [CLIENT, "bench", "--connect", f"tcp:127.0.0.1:{port}", "-c", str(conns), "-s", str(length),
           "-d", str(secs + 2), "-w", "0", "--interval", "1s", "--json"]
    if PIN:
        cmd = ["taskset", "-c", "1"] + cmd
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        echoes, intervals, begun = 0, 0, False
        for line in client.stdout:
            if '"interval":true' not in line:
                continue
            if not begun:
                begin()
                begun = True
                continue
            echoes += json.loads(line)["requests"]
            intervals += 1
            if intervals == secs:
                end()
                return echoes
        raise SystemExit(f"{name} at {conns} x {length}: the client ended after {intervals} of {secs} intervals")
    finally:
        client.communicate(timeout=60)


def syscalls(loads, window):
    """System calls the server makes per echo, over `window` seconds of the
    measured load."""
    print(f"\nsystem calls per echo (server process, {window} s of measured load, perf stat raw_syscalls:sys_enter):")
    for conns, length in loads:
        for name in SERVERS:
            server, port = start(name, "0")
            perf = []
            try:
                echoes = over_measured_seconds(
                    name, port, conns, length, window,
                    lambda: perf.append(subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter",
                                                          "-p", str(server.pid)], stderr=subprocess.PIPE, text=True)),
                    lambda: perf[0].send_signal(2))
                _, err = perf[0].communicate(timeout=30)
                count = next(int(line.split(",")[0]) for line in err.splitlines() if "raw_syscalls" in line)
                print(f"  {conns:>5} x {length:<5} {name:>10} {count / max(echoes, 1):6.2f}", flush=True)
            finally:
                stop(*perf, server)


if __name__ == "__main__":
    secs, rounds = float(sys.argv[1]), int(sys.argv[2])
    if os.environ.get("BENCH_MODE") == "server-bound":
        cores = os.environ.get("BENCH_SERVER_CORES", "0")
        clients = os.environ.get("BENCH_CLIENT_CORES", "1-4")
        loads = LOADS if os.environ.get("BENCH_LOADS") else [(100, 64), (1000, 64), (100, 4096), (10, 65536)]
        table(secs, rounds, loads, cores, clients, f"server-bound, client {THREADS} threads")
        if os.environ.get("BENCH_IDLE"):
            idle_memory([10000])
        sys.exit(0)
    table(secs, rounds, LOADS, "0", "1", "separate cores")
    if not MIXED:
        table(secs, rounds, [(100, 64)], "0", "0", "shared core")
    if os.environ.get("BENCH_SYSCALLS") == "1":
        syscalls([(100, 64), (1000, 64)], int(os.environ.get("BENCH_SYSCALL_SECONDS", "3")))
    idle = [int(n) for n in os.environ.get("BENCH_IDLE", "1000,10000").split(",") if int(n) > 0]
    if idle and (not os.environ.get("BENCH_LOADS") or os.environ.get("BENCH_IDLE")):
        idle_memory(idle)
