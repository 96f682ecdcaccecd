#!/usr/bin/env python3
"""Where a server's CPU per echo goes, by category, for each server and load
in the same run: what limits a target the benchmark's table does not meet.

Usage (after scripts/bench.sh has built everything; root, for perf):
  BENCH_SERVERS=ours,ours-uring,c-epoll BENCH_LOADS=100x64,1000x64,10x65536 \\
    python3 scripts/bench-profile.py [SECONDS]

Each server runs pinned to core 0 and echo-client bench to core 1, as in
bench.py. Once the client has measured one second, `perf record -g`
samples the server's process (cpu-clock, 1 kHz) for SECONDS (default 3)
while the client's interval lines count the echoes of the same seconds.
Every sample goes to one category, by the first frame from the leaf up
that names one:

  user space     the server's own code and its libraries (not the C
                 library's system call wrappers: I/O API)
  copy           the kernel copying bytes to or from the process
  kernel TCP/IP  the stack: TCP, IP, loopback, socket buffers, and the
                 kernel's memory allocator wherever it is called (mostly
                 for socket buffers here, but io_uring's allocations land
                 in this row too)
  scheduling     sleeping, waking and switching tasks
  I/O API        system call entry and exit, epoll, io_uring's own work
  other kernel   anything else (timers, interrupts, page faults)

Figures are microseconds of the server's CPU per echo: the sampled shares
times the CPU the server used (user + system, /proc) over the window,
divided by the echoes.
"""
import importlib.util, os, re, subprocess, sys, tempfile

# Loading bench.py must not leave a __pycache__ in the working tree.
sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench", os.path.join(HERE, "bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

CATEGORIES = [
    ("copy", re.compile(r"^(_copy_to_iter|_copy_from_iter|copy_user\w*|rep_movs\w*|__copy_user\w*|"
                        r"skb_copy_datagram_iter|copy_page_to_iter|copy_page_from_iter)$")),
    ("scheduling", re.compile(r"^(__)?(schedule|schedule_\w+|try_to_wake_up|ttwu\w*|finish_task_switch\w*|"
                              r"pick_next\w*|enqueue_task\w*|dequeue_task\w*|update_curr\w*|wake_up\w*|"
                              r"default_wake_function|autoremove_wake_function|psi_\w+|select_task_rq\w*)")),
    ("kernel TCP/IP", re.compile(r"^(__)?(tcp|ip|ipv4|inet|sock|sk|skb|dev|netif|napi|net|loopback|"
                                 r"process_backlog|bbr|nf|dst|page_frag|lock_sock|release_sock|"
                                 r"kfree_skb|consume_skb|alloc_skb|validate_xmit|raw_v4|"
                                 r"sch|qdisc|neigh|__netif|do_softirq|__local_bh|"
                                 r"kmem_cache|kmalloc|kfree|alloc_pages|free_unref|__free_pages|"
                                 r"security_sock|apparmor_sock|mem_cgroup_charge_skmem)")),
    ("I/O API", re.compile(r"^(__)?(io_|io_uring|tctx_task|ep_|do_epoll|epoll|__x64_sys|x64_sys|entry_SYSCALL|"
                           r"do_syscall_64|syscall_exit|exit_to_user_mode|syscall_return|fdget|__fget|"
                           r"fput|__sys_recvfrom|__sys_sendto|__sys_recvmsg|__sys_sendmsg|task_work)")),
]
ORDER = ["user space", "copy", "kernel TCP/IP", "scheduling", "I/O API", "other kernel"]


# A sample in a C library's system call wrapper is the system call's entry.
WRAPPER = re.compile(r"^(__)?(GI___)?(libc_)?(read|write|send|recv|sendto|recvfrom|epoll_wait|syscall)$")


def categorize(frames):
    """frames: (symbol, dso), leaf first."""
    if not frames:
        return "other kernel"
    if "kernel" not in frames[0][1]:
        return "I/O API" if WRAPPER.match(frames[0][0]) else "user space"
    for symbol, _ in frames:
        for name, pattern in CATEGORIES:
            if pattern.search(symbol):
                return name
    return "other kernel"


def samples(path):
    out = subprocess.run(["perf", "script", "-i", path, "-F", "ip,sym,dso"], capture_output=True, text=True).stdout
    frames = []
    for line in out.splitlines() + [""]:
        line = line.strip()
        if not line:
            if frames:
                yield frames
            frames = []
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        dso = rest[rest.rfind("("):] if rest.endswith(")") else ""
        symbol = rest[: len(rest) - len(dso)].strip().split("+")[0]
        frames.append((symbol, dso))


def profile(name, conns, length, secs):
    server, port = bench.start(name, "0")
    with tempfile.NamedTemporaryFile(suffix=".perf", delete=False) as f:
        data = f.name
    perf, cpu = [], []
    try:
        def begin():
            perf.append(subprocess.Popen(["perf", "record", "-q", "-F", "1000", "-g", "-p", str(server.pid),
                                          "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            cpu.append(bench.cpu_secs(server.pid))

        def end():
            cpu.append(bench.cpu_secs(server.pid))
            perf[0].send_signal(2)

        echoes = bench.over_measured_seconds(name, port, conns, length, secs, begin, end)
        perf[0].wait(timeout=30)
        counts = {c: 0 for c in ORDER}
        deciding = {c: {} for c in ORDER}
        for frames in samples(data):
            category = categorize(frames)
            counts[category] += 1
            leaf = frames[0][0] if frames else "?"
            deciding[category][leaf] = deciding[category].get(leaf, 0) + 1
        if os.environ.get("BENCH_PROFILE_LEAVES"):
            for category in ORDER:
                top = sorted(deciding[category].items(), key=lambda kv: -kv[1])[:8]
                print(f"  {name} {category}: " + ", ".join(f"{s} {n}" for s, n in top), file=sys.stderr)
        total = max(sum(counts.values()), 1)
        per_echo = (cpu[1] - cpu[0]) * 1e6 / max(echoes, 1)
        return echoes / secs, per_echo, {c: per_echo * n / total for c, n in counts.items()}, total
    finally:
        bench.stop(*perf, server)
        os.remove(data)


def main():
    secs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    loads = bench.LOADS if os.environ.get("BENCH_LOADS") else [(100, 64), (1000, 64), (10, 65536)]
    print(f"CPU us per echo by category (server on core 0, client on core 1, {secs} s of perf record -g each)\n")
    print("| load | server | req/s | CPU us/echo | " + " | ".join(ORDER) + " | samples |")
    print("| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in ORDER) + " | ---: |")
    for conns, length in loads:
        first = True
        for name in bench.SERVERS:
            rate, per_echo, split, total = profile(name, conns, length, secs)
            load = f"{conns} x {length}" if first else ""
            first = False
            cells = " | ".join(f"{split[c]:.2f}" for c in ORDER)
            print(f"| {load} | {name} | {rate:,.0f} | {per_echo:.2f} | {cells} | {total} |", flush=True)


if __name__ == "__main__":
    main()
