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

mod closed;
mod connect;
mod live;
mod open;
mod plan;
mod progress;
mod shared;
mod stall;

use closed::{Job, ping_pong};
pub use connect::idle;
use connect::{Churn, open_stream};
use live::LIVE_EVERY;
pub use live::{Live, LiveFigures};
use open::{Schedule, open_loop};
pub use plan::{BenchConfig, DEFAULT_MAX_IN_FLIGHT, MAX_BUFFERS, MAX_LEN};
use progress::Progress;
use shared::{BackendBook, Shared, SharedHistogram};

use crate::model::{
    Backend, BackendInterval, Failure, Failures, Interval, OpenLoop, Percentiles, Run, SoFar,
    Stall, new_histogram,
};
use crate::observe::{Flow, Observer};
use stall::StallBook;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// After the run ends, how long requests still in flight may take to finish
/// (at most the progress timeout) before they count as unfinished.
const MAX_DRAIN: Duration = Duration::from_secs(2);

/// The books at the last interval's end, to subtract from the next.
#[derive(Debug)]
struct Tick {
    at: Instant,
    latency: Histogram<u64>,
    measured: u64,
    failures: Failures,
    stall_us: f64,
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
    observer: &mut dyn Observer,
) -> Result<Run, String> {
    config.check()?;
    let connector = Connector::new(&config.endpoint, config.insecure)
        .map_err(|e| e.to_string())?
        .send_proxy(config.send_proxy);
    let connector = if config.resume {
        connector
    } else {
        connector.without_resumption()
    };
    let shared = Arc::new(Shared {
        connector: Some(connector),
        ..Shared::default()
    });
    if let Some(live) = &config.live {
        live.watch(&shared);
    }
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
    // Per interval: the books at the last tick, to subtract.
    let mut last_tick = Tick {
        at: started,
        latency: new_histogram(),
        measured: 0,
        failures: Failures::default(),
        stall_us: 0.0,
    };
    // Each back end's books at the last tick, to subtract.
    let mut last_backends: std::collections::BTreeMap<String, BackendBook> =
        std::collections::BTreeMap::new();
    let mut tick = |now: Instant, last: &mut Tick| {
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
        let _ = this.subtract(&last.latency);
        let measured = shared.measured.load(Ordering::Relaxed);
        let failures = shared.failures();
        let new = |kinds: &[Failure]| -> u64 {
            kinds
                .iter()
                .map(|k| failures.get(*k) - last.failures.get(*k))
                .sum()
        };
        // The longest stall that ended in the interval, or one still going
        // on (a server that stopped answering shows before it answers).
        let ended = Duration::from_nanos(shared.interval_stall.swap(0, Ordering::Relaxed));
        let stall_us = ended.max(shared.ongoing_stall(now)).as_secs_f64() * 1e6;
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
            seconds: (now - last.at).as_secs_f64(),
            requests: measured - last.measured,
            errors: failures.total() - last.failures.total(),
            connections: shared
                .connected
                .load(Ordering::Relaxed)
                .saturating_sub(shared.ended.load(Ordering::Relaxed)),
            p50_us: q(0.5),
            p99_us: q(0.99),
            stall_us,
            cut: new(&[Failure::Reset, Failure::Closed]),
            refused: new(&[Failure::Refused]),
            backends,
            so_far: SoFar {
                seconds: (now - started).as_secs_f64(),
                requests: measured,
                errors: failures.total(),
                latency_us: Percentiles::of(&merged),
                stall_us: last.stall_us.max(stall_us),
            },
        };
        *last = Tick {
            at: now,
            latency: merged,
            measured,
            failures,
            stall_us: interval.so_far.stall_us,
        };
        interval
    };
    let merged = || {
        let mut merged = new_histogram();
        for (hist, _) in &histograms {
            if let Ok(hist) = hist.lock() {
                let _ = merged.add(&*hist);
            }
        }
        merged
    };
    let mut published = started;
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
            if now - last_tick.at >= every {
                let interval = tick(now, &mut last_tick);
                if bar.0.suspend(|| observer.interval(&interval)) == Flow::Stop {
                    break;
                }
            }
        }
        if let Some(live) = &config.live
            && published.elapsed() >= LIVE_EVERY
        {
            live.publish(merged());
            published = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(live) = &config.live {
        live.publish(merged());
    }
    // The last interval, however short the run left it: a run of 3 s at
    // --interval 1 reports three.
    if config.interval.is_some() {
        let now = Instant::now();
        if now.duration_since(last_tick.at) >= Duration::from_millis(1) {
            let interval = tick(now, &mut last_tick);
            bar.0.suspend(|| observer.interval(&interval));
        }
    }
    let elapsed = started.elapsed();
    let stall = shared.longest_stall(started + elapsed);
    shared.measuring.store(false, Ordering::Relaxed);
    shared.halt();
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
    // Read after every histogram's lock was taken with measuring over: an
    // answer counted is an answer in the histograms, and the reverse.
    let requests = shared.measured.load(Ordering::Relaxed);
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
        resumed: shared.resumed.load(Ordering::Relaxed),
        tls_reason: shared.tls_reason.lock().ok().and_then(|mut r| r.take()),
        stall,
        identity: crate::model::Identity::default(),
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
                    offset: Duration::from_secs_f64(per * conn as f64 / config.connections as f64)
                        + config.shift,
                    max_in_flight: config.max_in_flight,
                };
                let hists = (Arc::clone(hist), Arc::clone(raw));
                tasks.spawn(open_loop(stream, job, schedule, Arc::clone(shared), hists))
            }
        };
    }
    while tasks.join_next().await.is_some() {}
}
