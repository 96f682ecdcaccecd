//! Bytes per second through the core alone: `handle_data` -> `pending_output`
//! -> `handle_written`, for an echo server connection, with a baseline measured
//! in the same run (copying the same bytes into a buffer and draining it: the
//! least work any echo must do). `cargo bench -p echo-core`.
//!
//! `ECHO_BENCH_BYTES`, `ECHO_BENCH_CHUNKS` (comma-separated) and
//! `ECHO_BENCH_ROUNDS` shrink it, for counting instructions under
//! `valgrind --tool=callgrind` (`scripts/plain-path.sh`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use echo_core::{Connection, EchoFactory, Factory, WaterMarks};

/// Bytes through each measurement (`ECHO_BENCH_BYTES`, default 512 MiB).
fn total() -> usize {
    env_or("ECHO_BENCH_BYTES", 512 << 20)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn through_core(chunk: usize) -> Duration {
    let now = Instant::now();
    let mut factory = EchoFactory::default();
    let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
    let echo = factory.build_protocol(&addr.into(), &addr.into()).unwrap();
    let mut conn = Connection::new(echo, addr, addr, WaterMarks::default(), now);
    let data = vec![0x5a_u8; chunk];
    let mut sink = 0u64;
    let start = Instant::now();
    for _ in 0..total() / chunk {
        conn.handle_data(black_box(&data), now).unwrap();
        let out = conn.pending_output();
        sink = sink.wrapping_add(u64::from(out[out.len() - 1]));
        let n = out.len();
        conn.handle_written(n, now).unwrap();
    }
    black_box(sink);
    start.elapsed()
}

fn baseline(chunk: usize) -> Duration {
    let data = vec![0x5a_u8; chunk];
    let mut buf: Vec<u8> = Vec::with_capacity(chunk);
    let mut sink = 0u64;
    let start = Instant::now();
    for _ in 0..total() / chunk {
        buf.extend_from_slice(black_box(&data));
        sink = sink.wrapping_add(u64::from(buf[buf.len() - 1]));
        buf.clear();
    }
    black_box(sink);
    start.elapsed()
}

fn main() {
    println!(
        "{:>8} {:>14} {:>14} {:>7}",
        "chunk", "core GB/s", "memcpy GB/s", "ratio"
    );
    let chunks: Vec<usize> = std::env::var("ECHO_BENCH_CHUNKS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![64, 1024, 16 * 1024, 64 * 1024]);
    let rounds = env_or("ECHO_BENCH_ROUNDS", 3).max(1);
    for chunk in chunks {
        let best = |f: fn(usize) -> Duration| (0..rounds).map(|_| f(chunk)).min().unwrap();
        let (core, base) = (best(through_core), best(baseline));
        let gbs = |d: Duration| total() as f64 / d.as_secs_f64() / 1e9;
        println!(
            "{chunk:>8} {:>14.2} {:>14.2} {:>7.2}",
            gbs(core),
            gbs(base),
            gbs(core) / gbs(base)
        );
    }
}
