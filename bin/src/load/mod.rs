//! The load generator behind `echo-client bench`, closed loop or open: no
//! clap and no formatting here; it returns a [`Run`] for the reporters.
//!
//! Closed loop (the default): each connection sends a `len`-byte message
//! whose content changes with every message, waits for its echo, checks it
//! byte for byte, and sends the next. Open loop (`rate`): each connection
//! sends on a fixed schedule whether or not earlier echoes came back
//! (pipelined, up to `max_in_flight`), and latency counts from the intended
//! send time, so a stall shows in the figures instead of delaying the sends
//! that would have seen it (coordinated omission). Latencies after the
//! warm-up go into HDR histograms.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use echo_core::ClientEndpoint;
use echo_net::{AnyStream, Connector, Stream, connect};
use hdrhistogram::Histogram;

mod stall;

use crate::model::{
    Backend, BackendInterval, Failure, Failures, Interval, OpenLoop, Run, Stall, new_histogram,
};
use stall::StallBook;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The largest message `bench` sends (a usage error beyond it).
pub const MAX_LEN: usize = 16 << 20;

/// The most memory the messages may take: two buffers of `len` bytes per
/// connection (a usage error beyond it).
pub const MAX_BUFFERS: usize = 1 << 30;

/// After the run ends, how long requests still in flight may take to finish
/// (at most the progress timeout) before they count as unfinished.
const MAX_DRAIN: Duration = Duration::from_secs(2);

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
    /// ... or until exactly this many requests were measured.
    pub requests: Option<u64>,
    /// Run, unmeasured, for this long first.
    pub warmup: Duration,
    /// A request that moves no byte for this long fails (timed out).
    pub timeout: Duration,
    /// Start each connection with this PROXY header.
    pub send_proxy: Option<echo_net::SendProxy>,
    /// `tls:`: accept any server certificate.
    pub insecure: bool,
    /// Open loop: this many requests per second in all, spread evenly over
    /// the connections; `None` for closed-loop ping-pong.
    pub rate: Option<f64>,
    /// Open loop: the most requests one connection has in flight; a send
    /// due beyond it is skipped (and counted).
    pub max_in_flight: usize,
    /// Report every this long while measuring ([`Interval`]).
    pub interval: Option<Duration>,
    /// Open at most this many new connections per second while ramping up
    /// (`None`: as fast as possible).
    pub connect_rate: Option<f64>,
    /// Close each connection after this many messages and open a new one
    /// in its place (connection churn, like netperf's TCP_CRR).
    pub reconnect_every: Option<u64>,
    /// Each connection starts with the server's banner line naming its
    /// back end (`echo-server --banner`): read it, and report per back end.
    pub banner: bool,
}

/// The default for [`BenchConfig::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1_000;

impl BenchConfig {
    /// Checks the sizes against [`MAX_LEN`] and [`MAX_BUFFERS`].
    ///
    /// # Errors
    /// A message saying which limit was passed.
    pub fn check(&self) -> Result<(), String> {
        if self.len > MAX_LEN {
            return Err(format!(
                "a {}-byte message is larger than bench allows ({MAX_LEN} bytes)",
                self.len
            ));
        }
        let buffers = self.connections.checked_mul(self.len.saturating_mul(2));
        if buffers.is_none_or(|b| b > MAX_BUFFERS) {
            return Err(format!(
                "{} connections x {} bytes need more than {} MiB of buffers; use fewer or smaller",
                self.connections,
                self.len,
                MAX_BUFFERS >> 20
            ));
        }
        Ok(())
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

/// One back end's books while running.
#[derive(Debug, Clone)]
struct BackendBook {
    /// Connections it accepted.
    connections: u64,
    /// Measured requests it answered.
    requests: u64,
    /// Their latencies, nanoseconds.
    latency: Histogram<u64>,
}

impl BackendBook {
    fn new() -> Self {
        Self {
            connections: 0,
            requests: 0,
            latency: new_histogram(),
        }
    }
}

/// One connection's stall books, shared with the coordinator so that a
/// connection stuck at the end still counts.
type SharedStall = Arc<std::sync::Mutex<StallBook>>;

/// What every connection loop shares with the coordinator.
#[derive(Debug, Default)]
struct Shared {
    measuring: AtomicBool,
    /// When measuring began: stalls count from then.
    measuring_since: std::sync::OnceLock<Instant>,
    /// Every connection's stall books, by connection.
    stalls: std::sync::Mutex<Vec<(usize, SharedStall)>>,
    /// The longest stall that ended since the last interval, nanoseconds.
    interval_stall: AtomicU64,
    stop: AtomicBool,
    /// Measured requests started (with `--requests`: at most that many).
    claimed: AtomicU64,
    /// Measured requests completed and verified.
    measured: AtomicU64,
    /// Failures by kind, in [`Failure::ALL`] order.
    failures: [AtomicU64; 9],
    /// Connections established, or the first connect error.
    connected: AtomicU64,
    connect_error: std::sync::Mutex<Option<String>>,
    /// Connection loops that have returned.
    ended: AtomicU64,
    /// Open loop: sends later than one interval, and sends skipped.
    late: AtomicU64,
    skipped: AtomicU64,
    /// Woken when `stop` is set: an open-loop connection waiting for its
    /// next send (seconds away at a low rate) ends at once.
    halted: tokio::sync::Notify,
    /// Reconnects (`--reconnect-every`) made while measuring.
    reconnects: AtomicU64,
    /// How long connects took, nanoseconds: the first connects and the
    /// reconnects made while measuring (not those of the warm-up).
    connect_times: std::sync::Mutex<Option<Histogram<u64>>>,
    /// How long TLS handshakes took, nanoseconds.
    handshake_times: std::sync::Mutex<Option<Histogram<u64>>>,
    /// Connects (TLS settings loaded once for every connection).
    connector: Option<Connector>,
    /// Per back end (with banners): connections, requests, latencies.
    backends: std::sync::Mutex<std::collections::BTreeMap<String, BackendBook>>,
    /// The first TLS failure's reason, in words.
    tls_reason: std::sync::Mutex<Option<String>>,
}

impl Shared {
    /// A connection reached back end `name`.
    fn backend_connected(&self, name: &str) {
        if let Ok(mut map) = self.backends.lock() {
            map.entry(name.to_owned())
                .or_insert_with(BackendBook::new)
                .connections += 1;
        }
    }

    /// Back end `name` answered a measured request in `took`.
    fn backend_answered(&self, name: &str, took: Duration) {
        if let Ok(mut map) = self.backends.lock()
            && let Some(entry) = map.get_mut(name)
        {
            entry.requests += 1;
            let _ = entry.latency.record(took.as_nanos().max(1) as u64);
        }
    }

    /// Ends the run: every connection loop stops at its next step.
    fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.halted.notify_waiters();
    }

    /// A connect took `took` (its handshake `handshake`); a reconnect
    /// counts only while measuring, so connects per second can be derived.
    fn connect_took(&self, took: Duration, handshake: Option<Duration>, reconnect: bool) {
        if reconnect {
            if !self.measuring.load(Ordering::Relaxed) {
                return;
            }
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let record = |h: &std::sync::Mutex<Option<Histogram<u64>>>, took: Duration| {
            if let Ok(mut h) = h.lock() {
                let _ = h
                    .get_or_insert_with(new_histogram)
                    .record(took.as_nanos().max(1) as u64);
            }
        };
        record(&self.connect_times, took);
        if let Some(handshake) = handshake {
            record(&self.handshake_times, handshake);
        }
    }

    /// The kind of a socket error, its reason kept when it is TLS's.
    fn io_failure(&self, error: &std::io::Error) -> Failure {
        if let Some(reason) = echo_net::tls_reason(error)
            && let Ok(mut first) = self.tls_reason.lock()
        {
            first.get_or_insert(reason);
        }
        Failure::of_io(error)
    }

    /// The kind of a failed reconnect, its reason kept when it is TLS's.
    fn connect_failure(&self, error: &echo_net::ClientError) -> Failure {
        if let echo_net::ClientError::Tls { reason, .. } = error
            && let Ok(mut first) = self.tls_reason.lock()
        {
            first.get_or_insert(reason.clone());
        }
        Failure::of_connect(error)
    }

    fn fail(&self, failure: Failure) {
        self.failures[failure.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Connection `conn`'s stall books, new.
    fn stall_book(&self, conn: usize) -> SharedStall {
        let book = SharedStall::default();
        if let Ok(mut all) = self.stalls.lock() {
            all.push((conn, Arc::clone(&book)));
        }
        book
    }

    /// A request went out on a connection at `at`.
    fn stall_sent(book: &SharedStall, at: Instant) {
        if let Ok(mut book) = book.lock() {
            book.sent(at);
        }
    }

    /// An echo came back on a connection at `at`.
    fn stall_completed(&self, book: &SharedStall, at: Instant) {
        let from = self.measuring_since.get().copied();
        let gap = book.lock().ok().and_then(|mut b| b.completed(at, from));
        if let Some(gap) = gap {
            self.interval_stall
                .fetch_max(gap.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    /// A connection ended (failed) at `at` with echoes owed.
    fn stall_finished(&self, book: &SharedStall, at: Instant) {
        let from = self.measuring_since.get().copied();
        if let Ok(mut book) = book.lock() {
            book.finish(at, from);
        }
    }

    /// The longest stall of all, each connection's books closed at `end`.
    fn longest_stall(&self, end: Instant) -> Option<Stall> {
        let started = *self.measuring_since.get()?;
        let all = self.stalls.lock().ok()?;
        all.iter()
            .filter_map(|(conn, book)| {
                let mut book = book.lock().ok()?.clone();
                book.finish(end, Some(started));
                let (began, length) = book.longest()?;
                Some(Stall {
                    connection: *conn,
                    began: began.saturating_duration_since(started),
                    length,
                })
            })
            .max_by_key(|s| (s.length, std::cmp::Reverse(s.connection)))
    }

    fn errors(&self) -> u64 {
        self.failures
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .sum()
    }
}

/// Latencies recorded by one thread's connections; the coordinator reads
/// them at the end even if that thread is still stuck in a request.
type SharedHistogram = Arc<std::sync::Mutex<Histogram<u64>>>;

/// Runs the benchmark on `threads` threads, each with its own
/// single-threaded runtime and its share of the connections (no work
/// stealing, no cross-thread wake-ups: the cheapest way for a load
/// generator to use more than one core), while this thread keeps time.
///
/// The run ends at the duration (or once exactly `requests` were measured);
/// requests still in flight then get a bounded drain and count as
/// unfinished after it, so a server that stops echoing cannot hold the run.
///
/// # Errors
/// A runtime or connect failure, or a load thread that failed, as a message.
pub fn run(
    config: BenchConfig,
    threads: usize,
    on_interval: &mut dyn FnMut(&Interval),
) -> Result<Run, String> {
    config.check()?;
    let connector = Connector::new(&config.endpoint, config.insecure)
        .map_err(|e| e.to_string())?
        .send_proxy(config.send_proxy);
    let shared = Arc::new(Shared {
        connector: Some(connector),
        ..Shared::default()
    });
    let threads = threads.clamp(1, config.connections.max(1));
    let mut workers = Vec::with_capacity(threads);
    let mut histograms = Vec::with_capacity(threads);
    for t in 0..threads {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        let (shared, config) = (Arc::clone(&shared), config.clone());
        let hist: SharedHistogram = Arc::new(std::sync::Mutex::new(new_histogram()));
        let raw: SharedHistogram = Arc::new(std::sync::Mutex::new(new_histogram()));
        histograms.push((Arc::clone(&hist), Arc::clone(&raw)));
        let mine: Vec<usize> = (t..config.connections).step_by(threads).collect();
        let worker = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || runtime.block_on(shard(&config, &mine, &shared, (&hist, &raw))))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        workers.push(worker);
    }
    let bar = Progress::new(&config);
    let total = config.connections as u64;
    // Wait until every connection is up (or one failed). The phase is
    // shown at least once, even when the connections were faster.
    loop {
        bar.show(format_args!(
            "connecting {}/{total}",
            shared.connected.load(Ordering::Relaxed)
        ));
        if shared.connected.load(Ordering::Relaxed) >= total {
            break;
        }
        if let Some(error) = shared.connect_error.lock().ok().and_then(|e| e.clone()) {
            shared.halt();
            bar.clear();
            for worker in workers {
                let _ = worker.join();
            }
            return Err(error);
        }
        if workers.iter().any(std::thread::JoinHandle::is_finished) {
            break; // a thread died while connecting; reported below
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let warm_until = Instant::now() + config.warmup;
    while Instant::now() < warm_until && !shared.stop.load(Ordering::Relaxed) {
        bar.show(format_args!(
            "warm-up {:.1}s/{:.1}s",
            (config.warmup - warm_until.saturating_duration_since(Instant::now())).as_secs_f64(),
            config.warmup.as_secs_f64()
        ));
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let _ = shared.measuring_since.set(started);
    shared.measuring.store(true, Ordering::Relaxed);
    let deadline = config.duration.map(|d| started + d);
    // Per interval: the merged histogram at the last tick, to subtract.
    let mut last_tick = (started, new_histogram(), 0u64, 0u64);
    // Each back end's books at the last tick, to subtract.
    let mut last_backends: std::collections::BTreeMap<String, BackendBook> =
        std::collections::BTreeMap::new();
    let mut tick = |now: Instant, last: &mut (Instant, Histogram<u64>, u64, u64)| {
        let mut backends = Vec::new();
        if let Ok(map) = shared.backends.lock() {
            for (name, book) in map.iter() {
                let before = last_backends.get(name);
                let mut this = book.latency.clone();
                if let Some(old) = before {
                    let _ = this.subtract(&old.latency);
                }
                let q = |p: f64| {
                    if this.is_empty() {
                        0.0
                    } else {
                        this.value_at_quantile(p) as f64 / 1e3
                    }
                };
                backends.push(BackendInterval {
                    name: name.clone(),
                    requests: book.requests - before.map_or(0, |b| b.requests),
                    p50_us: q(0.5),
                    p99_us: q(0.99),
                });
                last_backends.insert(name.clone(), book.clone());
            }
        }
        let mut merged = new_histogram();
        for (hist, _) in &histograms {
            if let Ok(hist) = hist.lock() {
                let _ = merged.add(&*hist);
            }
        }
        let mut this = merged.clone();
        let _ = this.subtract(&last.1);
        let (measured, errors) = (shared.measured.load(Ordering::Relaxed), shared.errors());
        let seen = !this.is_empty();
        let q = |p: f64| {
            if seen {
                this.value_at_quantile(p) as f64 / 1e3
            } else {
                0.0
            }
        };
        let interval = Interval {
            elapsed: now - started,
            seconds: (now - last.0).as_secs_f64(),
            requests: measured - last.2,
            errors: errors - last.3,
            connections: shared
                .connected
                .load(Ordering::Relaxed)
                .saturating_sub(shared.ended.load(Ordering::Relaxed)),
            p50_us: q(0.5),
            p99_us: q(0.99),
            stall_us: shared.interval_stall.swap(0, Ordering::Relaxed) as f64 / 1e3,
            backends,
        };
        *last = (now, merged, measured, errors);
        interval
    };
    // Until the time is up, the request count is reached, or every
    // connection has ended.
    while !shared.stop.load(Ordering::Relaxed)
        && deadline.is_none_or(|d| Instant::now() < d)
        && shared.ended.load(Ordering::Relaxed) < total
    {
        let elapsed = started.elapsed().as_secs_f64();
        let of = config
            .duration
            .map_or_else(String::new, |d| format!("/{:.0}s", d.as_secs_f64()));
        bar.show(format_args!(
            "measuring {elapsed:.1}s{of}: {} requests, {} errors",
            shared.measured.load(Ordering::Relaxed),
            shared.errors()
        ));
        if let Some(every) = config.interval {
            let now = Instant::now();
            if now - last_tick.0 >= every {
                let interval = tick(now, &mut last_tick);
                bar.0.suspend(|| on_interval(&interval));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The last interval, however short the run left it: a run of 3 s at
    // --interval 1 reports three.
    if config.interval.is_some() {
        let now = Instant::now();
        if now.duration_since(last_tick.0) >= Duration::from_millis(1) {
            let interval = tick(now, &mut last_tick);
            bar.0.suspend(|| on_interval(&interval));
        }
    }
    let elapsed = started.elapsed();
    let stall = shared.longest_stall(started + elapsed);
    shared.measuring.store(false, Ordering::Relaxed);
    shared.halt();
    let requests = shared.measured.load(Ordering::Relaxed);
    // Requests in flight get a bounded drain, then count as unfinished.
    let drain_until = Instant::now() + config.timeout.min(MAX_DRAIN);
    while shared.ended.load(Ordering::Relaxed) < shared.connected.load(Ordering::Relaxed)
        && Instant::now() < drain_until
    {
        bar.show(format_args!("draining requests still in flight"));
        std::thread::sleep(Duration::from_millis(5));
    }
    bar.clear();
    let unfinished = shared
        .connected
        .load(Ordering::Relaxed)
        .saturating_sub(shared.ended.load(Ordering::Relaxed));
    for _ in 0..unfinished {
        shared.fail(Failure::Unfinished);
    }
    for worker in workers {
        // A worker still stuck in a request is left behind; one that ended
        // by panicking fails the run.
        if worker.is_finished() && worker.join().is_err() {
            return Err("a load thread failed unexpectedly; the figures are incomplete".into());
        }
    }
    let (mut latency, mut raw) = (new_histogram(), new_histogram());
    for (hist, raw_hist) in histograms {
        if let Ok(hist) = hist.lock() {
            let _ = latency.add(&*hist);
        }
        if let Ok(hist) = raw_hist.lock() {
            let _ = raw.add(&*hist);
        }
    }
    Ok(Run {
        requests,
        elapsed,
        failures: Failures(
            shared
                .failures
                .each_ref()
                .map(|f| f.load(Ordering::Relaxed)),
        ),
        latency,
        len: config.len,
        connections: config.connections,
        backends: shared
            .backends
            .lock()
            .map(|map| {
                map.iter()
                    .map(|(name, book)| Backend {
                        name: name.clone(),
                        connections: book.connections,
                        requests: book.requests,
                        latency: book.latency.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        connects: shared
            .connect_times
            .lock()
            .ok()
            .and_then(|mut h| h.take())
            .unwrap_or_else(new_histogram),
        handshakes: shared
            .handshake_times
            .lock()
            .ok()
            .and_then(|mut h| h.take())
            .unwrap_or_else(new_histogram),
        reconnects: shared.reconnects.load(Ordering::Relaxed),
        tls_reason: shared.tls_reason.lock().ok().and_then(|mut r| r.take()),
        stall,
        open_loop: config.rate.map(|rate| OpenLoop {
            rate,
            raw,
            late: shared.late.load(Ordering::Relaxed),
            skipped: shared.skipped.load(Ordering::Relaxed),
        }),
    })
}

/// One thread's connections: connect them, then run each one's
/// ping-pong loop until told to stop.
async fn shard(
    config: &BenchConfig,
    conns: &[usize],
    shared: &Arc<Shared>,
    (hist, raw): (&SharedHistogram, &SharedHistogram),
) {
    let mut tasks = tokio::task::JoinSet::new();
    for &conn in conns {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(rate) = config.connect_rate {
            // This thread's share of the connect rate.
            let threads = (config.connections / conns.len().max(1)).max(1) as f64;
            tokio::time::sleep(Duration::from_secs_f64(threads / rate)).await;
        }
        let (stream, backend) = match open_stream(config, shared, false).await {
            Ok(opened) => opened,
            Err(e) => {
                if let Ok(mut first) = shared.connect_error.lock() {
                    first.get_or_insert(e.to_string());
                }
                break;
            }
        };
        shared.connected.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            conn,
            len: config.len,
            limit: config.requests,
            timeout: config.timeout,
            backend,
        };
        let churn = config.reconnect_every.map(|every| Churn {
            every,
            config: Arc::new(config.clone()),
        });
        match config.rate {
            None => tasks.spawn(ping_pong(
                stream,
                job,
                churn,
                Arc::clone(shared),
                Arc::clone(hist),
            )),
            Some(rate) => {
                // Each connection's share of the rate, its first send
                // staggered so the connections' sends interleave evenly.
                let per = config.connections as f64 / rate;
                let schedule = Schedule {
                    interval: Duration::from_secs_f64(per),
                    offset: Duration::from_secs_f64(per * conn as f64 / config.connections as f64),
                    max_in_flight: config.max_in_flight,
                };
                let hists = (Arc::clone(hist), Arc::clone(raw));
                tasks.spawn(open_loop(stream, job, schedule, Arc::clone(shared), hists))
            }
        };
    }
    while tasks.join_next().await.is_some() {}
}

/// Opens one connection (sending the PROXY header and shaking hands, if
/// asked), timing it.
async fn open_stream(
    config: &BenchConfig,
    shared: &Shared,
    reconnect: bool,
) -> Result<(AnyStream, Option<Arc<str>>), echo_net::ClientError> {
    let started = Instant::now();
    let connected = match &shared.connector {
        Some(connector) => connector.connect().await?,
        None => connect(&config.endpoint).await?,
    };
    shared.connect_took(started.elapsed(), connected.handshake, reconnect);
    let mut stream = connected.stream;
    if !config.banner {
        return Ok((stream, None));
    }
    // The banner line, a byte at a time (so no echo byte is read with it).
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let read = tokio::time::timeout(config.timeout, stream.read_exact(&mut byte)).await;
        match read {
            Ok(Ok(_)) if byte[0] == b'\n' => break,
            Ok(Ok(_)) if line.len() < echo_core::MAX_BANNER => line.push(byte[0]),
            _ => {
                return Err(echo_net::ClientError::Connect {
                    target: config.endpoint.to_string(),
                    source: std::io::Error::other("no banner line from the server"),
                });
            }
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let name: Arc<str> = Arc::from(String::from_utf8_lossy(&line).as_ref());
    shared.backend_connected(&name);
    Ok((stream, Some(name)))
}

/// Connection churn: after `every` messages, a fresh connection.
#[derive(Debug, Clone)]
struct Churn {
    every: u64,
    config: Arc<BenchConfig>,
}

/// One connection's part of the run.
#[derive(Debug, Clone)]
struct Job {
    conn: usize,
    len: usize,
    limit: Option<u64>,
    timeout: Duration,
    /// The back end's name, from its banner.
    backend: Option<Arc<str>>,
}

/// One connection's closed loop: send, wait for the echo, verify, repeat.
async fn ping_pong(
    mut stream: AnyStream,
    mut job: Job,
    churn: Option<Churn>,
    shared: Arc<Shared>,
    hist: SharedHistogram,
) {
    let (mut msg, mut back) = (vec![0u8; job.len], vec![0u8; job.len]);
    // One progress timer per connection, re-armed only when it fires.
    let mut timer = Box::pin(tokio::time::sleep(job.timeout));
    let mut seq = 0u64;
    let stall = shared.stall_book(job.conn);
    while !shared.stop.load(Ordering::Relaxed) {
        let counted = shared.measuring.load(Ordering::Relaxed);
        if counted
            && let Some(limit) = job.limit
            && shared.claimed.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break; // every measured request is taken
        }
        if let Some(churn) = &churn
            && seq > 0
            && seq.is_multiple_of(churn.every)
        {
            // Close cleanly, then replace the connection (its messages
            // carry on numbering, so a stale echo still cannot pass).
            let _ = stream.shutdown().await;
            drop(stream);
            (stream, job.backend) = match open_stream(&churn.config, &shared, true).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    shared.fail(shared.connect_failure(&e));
                    break;
                }
            };
        }
        fill(&mut msg, job.conn, seq);
        seq += 1;
        let start = Instant::now();
        Shared::stall_sent(&stall, start);
        let result = exchange(
            &shared,
            &mut stream,
            &msg,
            &mut back,
            job.timeout,
            &mut timer,
        )
        .await;
        let took = start.elapsed();
        let failure = match result {
            Ok(()) if back == msg => None,
            Ok(()) => Some(Failure::Mismatch),
            Err(failure) => Some(failure),
        };
        if let Some(failure) = failure {
            shared.stall_finished(&stall, Instant::now());
            if counted && job.limit.is_some() {
                // Give the claim back: another connection may complete it.
                shared.claimed.fetch_sub(1, Ordering::Relaxed);
            }
            shared.fail(failure);
            break; // a broken or desynchronised stream proves nothing more
        }
        shared.stall_completed(&stall, start + took);
        if counted && shared.measuring.load(Ordering::Relaxed) {
            if let Ok(mut hist) = hist.lock() {
                let _ = hist.record(took.as_nanos().max(1) as u64);
            }
            if let Some(name) = &job.backend {
                shared.backend_answered(name, took);
            }
            let done = shared.measured.fetch_add(1, Ordering::Relaxed) + 1;
            if job.limit.is_some_and(|l| done >= l) {
                shared.halt();
            }
        }
    }
    shared.ended.fetch_add(1, Ordering::Relaxed);
}

/// When one open-loop connection sends.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// Between two intended sends.
    interval: Duration,
    /// The first send's delay.
    offset: Duration,
    /// The most requests in flight.
    max_in_flight: usize,
}

/// One open-loop connection: a writer sends on the schedule (pipelining
/// when echoes are late), a reader verifies the echoes in order and records
/// each latency twice: from the intended send (corrected) and from the
/// actual send (raw).
async fn open_loop(
    stream: AnyStream,
    job: Job,
    schedule: Schedule,
    shared: Arc<Shared>,
    (hist, raw): (SharedHistogram, SharedHistogram),
) {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    type Sent = (u64, tokio::time::Instant, tokio::time::Instant);
    let flush = stream.buffers_writes();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let queue: Mutex<VecDeque<Sent>> = Mutex::new(VecDeque::new());
    let (sent, done) = (tokio::sync::Notify::new(), AtomicBool::new(false));
    let failed = AtomicBool::new(false);
    let stall = shared.stall_book(job.conn);
    let fail = |failure| {
        if !failed.swap(true, Ordering::Relaxed) {
            shared.stall_finished(&stall, Instant::now());
            shared.fail(failure);
        }
    };
    let writer = async {
        let mut msg = vec![0u8; job.len];
        let start = tokio::time::Instant::now() + schedule.offset;
        let mut seq = 0u64;
        for k in 0u32.. {
            let intended = start + schedule.interval * k;
            if !wait_until(intended, &shared).await || failed.load(Ordering::Relaxed) {
                break;
            }
            let measuring = shared.measuring.load(Ordering::Relaxed);
            let in_flight = queue.lock().map_or(0, |q| q.len());
            if in_flight >= schedule.max_in_flight {
                if measuring {
                    shared.skipped.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let now = tokio::time::Instant::now();
            if measuring && now.duration_since(intended) > schedule.interval {
                shared.late.fetch_add(1, Ordering::Relaxed);
            }
            fill(&mut msg, job.conn, seq);
            if let Ok(mut q) = queue.lock() {
                q.push_back((seq, intended, now));
                Shared::stall_sent(&stall, now.into_std());
            }
            seq += 1;
            sent.notify_one();
            // Flushed too: over TLS a write ends once rustls holds the
            // bytes, and the last record of a message could wait unsent.
            let wrote = async {
                wr.write_all(&msg).await?;
                if flush {
                    wr.flush().await?;
                }
                Ok::<(), std::io::Error>(())
            };
            if let Err(e) = wrote.await {
                fail(shared.io_failure(&e));
                break;
            }
        }
        done.store(true, Ordering::Relaxed);
        sent.notify_one();
    };
    let reader = async {
        let (mut back, mut expected) = (vec![0u8; job.len], vec![0u8; job.len]);
        loop {
            let front = queue.lock().ok().and_then(|q| q.front().copied());
            let Some((seq, intended, at)) = front else {
                if done.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed) {
                    break;
                }
                sent.notified().await;
                continue;
            };
            match tokio::time::timeout(job.timeout, rd.read_exact(&mut back)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    fail(Failure::Closed);
                    break;
                }
                Ok(Err(e)) => {
                    fail(shared.io_failure(&e));
                    break;
                }
                Err(_) => {
                    fail(Failure::TimedOut);
                    break;
                }
            }
            let now = tokio::time::Instant::now();
            fill(&mut expected, job.conn, seq);
            if back != expected {
                fail(Failure::Mismatch);
                break;
            }
            if let Ok(mut q) = queue.lock() {
                q.pop_front();
                shared.stall_completed(&stall, now.into_std());
            }
            if shared.measuring.load(Ordering::Relaxed) {
                let nanos = |d: Duration| d.as_nanos().max(1) as u64;
                if let Ok(mut h) = hist.lock() {
                    let _ = h.record(nanos(now.duration_since(intended)));
                }
                if let Ok(mut h) = raw.lock() {
                    let _ = h.record(nanos(now.duration_since(at)));
                }
                if let Some(name) = &job.backend {
                    shared.backend_answered(name, now.duration_since(intended));
                }
                shared.measured.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    tokio::join!(writer, reader);
    shared.ended.fetch_add(1, Ordering::Relaxed);
}

/// How long before a scheduled send the open loop stops sleeping on the
/// timer and spins (yielding to the other connections): tokio's timer
/// wakes on whole milliseconds, rounding up, so a send that only slept
/// would go out up to a millisecond late, and at low latency that lateness
/// would be most of the corrected latency.
const SPIN: Duration = Duration::from_millis(2);

/// Waits until `at`: on the timer until [`SPIN`] before it, then spinning.
/// `false` once the run is told to stop (at once, even when `at` is far
/// off, as it is at low rates).
async fn wait_until(at: tokio::time::Instant, shared: &Shared) -> bool {
    let halted = shared.halted.notified();
    tokio::pin!(halted);
    halted.as_mut().enable();
    if shared.stop.load(Ordering::Relaxed) {
        return false;
    }
    let coarse = at.checked_sub(SPIN).unwrap_or(at);
    if coarse > tokio::time::Instant::now() {
        tokio::select! {
            biased;
            () = &mut halted => return false,
            () = tokio::time::sleep_until(coarse) => {}
        }
    }
    while tokio::time::Instant::now() < at {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        tokio::task::yield_now().await;
    }
    !shared.stop.load(Ordering::Relaxed)
}

/// Sends `msg` while reading its echo into `back` (reading as it writes, so
/// a message larger than the server's buffers cannot deadlock), failing
/// when nothing moves for `timeout` ("fire on the clock": the timer is
/// re-armed only when it fires early).
async fn exchange(
    shared: &Shared,
    stream: &mut AnyStream,
    msg: &[u8],
    back: &mut [u8],
    timeout: Duration,
    timer: &mut Pin<Box<tokio::time::Sleep>>,
) -> Result<(), Failure> {
    let (mut written, mut read) = (0, 0);
    // A socket's flush does nothing: only a stream that buffers asks for one.
    let mut flushed = !stream.buffers_writes();
    let mut last = tokio::time::Instant::now();
    poll_fn(|cx| {
        let mut moved = false;
        while written < msg.len() {
            match Pin::new(&mut *stream).poll_write(cx, &msg[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Failure::Broken)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(shared.io_failure(&e))),
                Poll::Ready(Ok(n)) => {
                    written += n;
                    moved = true;
                }
                Poll::Pending => break,
            }
        }
        // A TLS write is done once rustls holds the bytes: the message's
        // last records reach the socket only when flushed. Its waker is
        // registered while it waits.
        if written == msg.len() && !flushed {
            match Pin::new(&mut *stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => flushed = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(shared.io_failure(&e))),
                Poll::Pending => {}
            }
        }
        while read < back.len() {
            let mut buf = ReadBuf::new(&mut back[read..]);
            match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    return Poll::Ready(Err(Failure::Closed));
                }
                Poll::Ready(Ok(())) => {
                    read += buf.filled().len();
                    moved = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(shared.io_failure(&e))),
                Poll::Pending => break,
            }
        }
        if read == back.len() {
            // Bytes we never sent cannot be an echo.
            return Poll::Ready(if written == msg.len() {
                Ok(())
            } else {
                Err(Failure::Mismatch)
            });
        }
        if moved {
            last = tokio::time::Instant::now();
        }
        while timer.as_mut().poll(cx).is_ready() {
            let due = last + timeout;
            if tokio::time::Instant::now() >= due {
                return Poll::Ready(Err(Failure::TimedOut));
            }
            timer.as_mut().reset(due);
        }
        Poll::Pending
    })
    .await
}

/// The progress line on a terminal (phase, time, requests so far); nothing
/// anywhere else.
struct Progress(indicatif::ProgressBar);

impl Progress {
    fn new(_config: &BenchConfig) -> Self {
        let bar = indicatif::ProgressBar::new_spinner();
        if !std::io::stderr().is_terminal() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        Self(bar)
    }

    fn show(&self, line: std::fmt::Arguments<'_>) {
        if !self.0.is_hidden() {
            self.0.set_message(line.to_string());
            self.0.tick();
        }
    }

    fn clear(&self) {
        self.0.finish_and_clear();
    }
}

/// Opens `n` connections, proves each live with one echoed byte, and holds
/// them open for `hold` (for memory measurements). Returns how many opened.
///
/// # Errors
/// A connect or echo failure, as a message.
pub async fn idle(endpoint: &ClientEndpoint, n: usize, hold: Duration) -> Result<usize, String> {
    let mut open = Vec::new();
    for i in 0..n {
        let mut stream = connect(endpoint)
            .await
            .map_err(|e| format!("connection {}: {e}", i + 1))?
            .stream;
        let mut b = [0u8; 1];
        stream.write_all(b"i").await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        stream
            .read_exact(&mut b)
            .await
            .map_err(|e| format!("connection {}: no echo: {e}", i + 1))?;
        open.push(stream);
    }
    tokio::time::sleep(hold).await;
    Ok(open.len())
}
