//! `echo-client bench`: a closed-loop ping-pong load generator.
//!
//! Each connection sends a `len`-byte message whose content changes with
//! every message, waits for its echo, checks it byte for byte, and sends
//! the next. Latencies after the warm-up go into an HDR histogram.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use echo_core::ClientEndpoint;
use echo_net::{AnyStream, connect};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Where the server is.
    pub endpoint: ClientEndpoint,
    /// Concurrent connections.
    pub connections: usize,
    /// Message length in bytes.
    pub len: usize,
    /// Measure for this long (after the warm-up) ...
    pub duration: Option<Duration>,
    /// ... or until this many requests were measured.
    pub requests: Option<u64>,
    /// Run, unmeasured, for this long first.
    pub warmup: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct BenchReport {
    /// Requests measured (after the warm-up).
    pub requests: u64,
    /// Measured wall time.
    pub elapsed: Duration,
    /// Echoes that differed from what was sent, or broke.
    pub errors: u64,
    /// Round-trip latencies in nanoseconds.
    pub latency: Histogram<u64>,
    /// The message length.
    pub len: usize,
    /// Connections.
    pub connections: usize,
}

impl BenchReport {
    /// Round trips per second.
    #[must_use]
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Payload megabytes (10^6) echoed per second, one direction.
    #[must_use]
    pub fn mb_per_sec(&self) -> f64 {
        self.requests_per_sec() * self.len as f64 / 1e6
    }

    /// Latency at the p50, p90, p99, p99.9 quantiles and the maximum, in
    /// microseconds.
    fn latency_us(&self) -> [f64; 5] {
        let at = |q: f64| self.latency.value_at_quantile(q) as f64 / 1e3;
        [
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            self.latency.max() as f64 / 1e3,
        ]
    }

    /// A human-readable summary.
    #[must_use]
    pub fn text(&self) -> String {
        let [p50, p90, p99, p999, max] = self.latency_us();
        format!(
            "{} connections x {} B: {} requests in {:.2}s = {:.0} req/s, {:.1} MB/s, errors {}\n\
             latency us: p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}",
            self.connections,
            self.len,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests_per_sec(),
            self.mb_per_sec(),
            self.errors,
        )
    }

    /// One JSON object (field names are stable; times in microseconds).
    #[must_use]
    pub fn json(&self) -> String {
        let [p50, p90, p99, p999, max] = self.latency_us();
        format!(
            "{{\"connections\":{},\"len\":{},\"requests\":{},\"seconds\":{:.6},\"requests_per_sec\":{:.1},\"mb_per_sec\":{:.3},\"errors\":{},\"latency_us\":{{\"p50\":{p50:.1},\"p90\":{p90:.1},\"p99\":{p99:.1},\"p99_9\":{p999:.1},\"max\":{max:.1}}}}}",
            self.connections,
            self.len,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests_per_sec(),
            self.mb_per_sec(),
            self.errors,
        )
    }

    /// The percentile distribution in HdrHistogram's `.hgrm` text format
    /// (values in microseconds), as its plotters read it.
    #[must_use]
    pub fn hgrm(&self) -> String {
        let h = &self.latency;
        let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let inv = if q < 1.0 {
                format!("{:.2}", 1.0 / (1.0 - q))
            } else {
                "inf".into()
            };
            let _ = writeln!(
                out,
                "{:12.3} {:14.12} {:10} {:>14}",
                v.value_iterated_to() as f64 / 1e3,
                q,
                v.count_since_last_iteration(),
                inv
            );
        }
        let _ = write!(
            out,
            "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n#[Buckets = {:12}, SubBuckets     = {:12}]\n",
            h.mean() / 1e3,
            h.stdev() / 1e3,
            h.max() as f64 / 1e3,
            h.len(),
            h.buckets(),
            h.distinct_values()
        );
        out
    }
}

/// The content of message `seq` on connection `conn`: changes every message.
fn fill(buf: &mut [u8], conn: usize, seq: u64) {
    let base = (seq as u8).wrapping_mul(31) ^ (conn as u8);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = base.wrapping_add(i as u8);
    }
    if buf.len() >= 8 {
        buf[..8].copy_from_slice(&seq.to_le_bytes());
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// What every connection loop shares with the coordinator.
#[derive(Debug, Default)]
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    measured: AtomicU64,
    errors: AtomicU64,
    /// Connections established, or the first connect error.
    connected: AtomicU64,
    connect_error: std::sync::Mutex<Option<String>>,
}

/// Runs the benchmark on `threads` threads, each with its own
/// single-threaded runtime and its share of the connections (no work
/// stealing, no cross-thread wake-ups: the cheapest way for a load
/// generator to use more than one core), while this thread keeps time.
///
/// # Errors
/// A runtime or connect failure, as a message.
pub fn run(config: BenchConfig, threads: usize) -> Result<BenchReport, String> {
    let shared = Arc::new(Shared::default());
    let threads = threads.clamp(1, config.connections.max(1));
    let mut workers = Vec::with_capacity(threads);
    for t in 0..threads {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        let (shared, config) = (Arc::clone(&shared), config.clone());
        let mine: Vec<usize> = (t..config.connections).step_by(threads).collect();
        let worker = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || runtime.block_on(shard(&config, &mine, &shared)))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        workers.push(worker);
    }
    // Wait until every connection is up (or one failed).
    while shared.connected.load(Ordering::Relaxed) < config.connections as u64 {
        if let Some(error) = shared.connect_error.lock().ok().and_then(|e| e.clone()) {
            shared.stop.store(true, Ordering::Relaxed);
            for worker in workers {
                let _ = worker.join();
            }
            return Err(error);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(config.warmup);
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let bar = progress_bar(&config);
    let deadline = config.duration.map(|d| started + d);
    // Until the time is up, the request count is reached, or every
    // connection has failed.
    while !shared.stop.load(Ordering::Relaxed)
        && deadline.is_none_or(|d| Instant::now() < d)
        && shared.errors.load(Ordering::Relaxed) < config.connections as u64
    {
        std::thread::sleep(Duration::from_millis(10));
        bar.set_position(shared.measured.load(Ordering::Relaxed));
    }
    shared.stop.store(true, Ordering::Relaxed);
    let requests = shared.measured.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    shared.measuring.store(false, Ordering::Relaxed);
    bar.finish_and_clear();
    let mut latency = new_histogram();
    for worker in workers {
        if let Ok(hist) = worker.join() {
            let _ = latency.add(&hist);
        }
    }
    Ok(BenchReport {
        requests,
        elapsed,
        errors: shared.errors.load(Ordering::Relaxed),
        latency,
        len: config.len,
        connections: config.connections,
    })
}

/// One thread's connections: connect them, then run each one's
/// ping-pong loop until told to stop; returns their merged latencies.
async fn shard(config: &BenchConfig, conns: &[usize], shared: &Arc<Shared>) -> Histogram<u64> {
    let mut tasks = tokio::task::JoinSet::new();
    for &conn in conns {
        let stream = match connect(&config.endpoint).await {
            Ok(connected) => connected.stream,
            Err(e) => {
                if let Ok(mut first) = shared.connect_error.lock() {
                    first.get_or_insert(e.to_string());
                }
                break;
            }
        };
        shared.connected.fetch_add(1, Ordering::Relaxed);
        let (shared, len, limit) = (Arc::clone(shared), config.len, config.requests);
        tasks.spawn(ping_pong(stream, conn, len, limit, shared));
    }
    let mut latency = new_histogram();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(hist) = joined {
            let _ = latency.add(&hist);
        }
    }
    latency
}

/// One connection's closed loop: send, wait for the echo, verify, repeat.
async fn ping_pong(
    mut stream: AnyStream,
    conn: usize,
    len: usize,
    limit: Option<u64>,
    shared: Arc<Shared>,
) -> Histogram<u64> {
    let mut hist = new_histogram();
    let (mut msg, mut back) = (vec![0u8; len], vec![0u8; len]);
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        fill(&mut msg, conn, seq);
        seq += 1;
        let start = Instant::now();
        let ok = stream.write_all(&msg).await.is_ok() && stream.read_exact(&mut back).await.is_ok();
        let took = start.elapsed();
        if !ok || back != msg {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            break; // a broken or desynchronised stream proves nothing more
        }
        if shared.measuring.load(Ordering::Relaxed) {
            let _ = hist.record(took.as_nanos().max(1) as u64);
            let done = shared.measured.fetch_add(1, Ordering::Relaxed) + 1;
            if limit.is_some_and(|l| done >= l) {
                shared.stop.store(true, Ordering::Relaxed);
            }
        }
    }
    hist
}

fn progress_bar(config: &BenchConfig) -> indicatif::ProgressBar {
    let bar = match config.requests {
        Some(total) => indicatif::ProgressBar::new(total),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// Opens `n` connections, proves each live with one echoed byte, and holds
/// them open for `hold` (for memory measurements). Returns how many opened.
///
/// # Errors
/// A connect or echo failure, as a message.
pub async fn idle(endpoint: &ClientEndpoint, n: usize, hold: Duration) -> Result<usize, String> {
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = connect(endpoint)
            .await
            .map_err(|e| format!("connection {}: {e}", i + 1))?
            .stream;
        let mut b = [0u8; 1];
        stream.write_all(b"i").await.map_err(|e| e.to_string())?;
        stream
            .read_exact(&mut b)
            .await
            .map_err(|e| format!("connection {}: no echo: {e}", i + 1))?;
        open.push(stream);
    }
    tokio::time::sleep(hold).await;
    Ok(open.len())
}
