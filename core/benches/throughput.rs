//! Bytes per second through the core alone: `handle_data` -> `pending_output`
//! -> `handle_written`, for an echo server connection, with a baseline measured
//! in the same run (copying the same bytes into a buffer and draining it: the
//! least work any echo must do). `cargo bench -p echo-core`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use echo_core::{Connection, EchoFactory, Factory, WaterMarks};

const TOTAL: usize = 512 << 20;

fn through_core(chunk: usize) -> Duration {
    let now = Instant::now();
    let mut factory = EchoFactory::default();
    let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
    let echo = factory.build_protocol(&addr.into(), &addr.into()).unwrap();
    let mut conn = Connection::new(echo, addr, addr, WaterMarks::default(), now);
    let data = vec![0x5a_u8; chunk];
    let mut sink = 0u64;
    let start = Instant::now();
    for _ in 0..TOTAL / chunk {
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
    for _ in 0..TOTAL / chunk {
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
    for chunk in [64, 1024, 16 * 1024, 64 * 1024] {
        let best = |f: fn(usize) -> Duration| (0..3).map(|_| f(chunk)).min().unwrap();
        let (core, base) = (best(through_core), best(baseline));
        let gbs = |d: Duration| TOTAL as f64 / d.as_secs_f64() / 1e9;
        println!(
            "{chunk:>8} {:>14.2} {:>14.2} {:>7.2}",
            gbs(core),
            gbs(base),
            gbs(core) / gbs(base)
        );
    }
}
