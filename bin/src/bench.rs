//! `echo-client bench`: a verifying load generator, closed loop or open.
//!
//! Closed loop (the default): each connection sends a `len`-byte message
//! whose content changes with every message, waits for its echo, checks it
//! byte for byte, and sends the next. Open loop (`rate`): each connection
//! sends on a fixed schedule whether or not earlier echoes came back
//! (pipelined, up to `max_in_flight`), and latency counts from the intended
//! send time, so a stall shows in the figures instead of delaying the sends
//! that would have seen it (coordinated omission). Latencies after the
//! warm-up go into HDR histograms.

use std::fmt::Write as _;
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
    /// Where the run's live figures go (`--metrics`), if anywhere.
    pub live: Option<Arc<Live>>,
}

/// How often the coordinator hands [`Live`] a fresh latency histogram.
const LIVE_EVERY: Duration = Duration::from_secs(1);

/// A running benchmark's figures as a scrape reads them (`echo-client
/// bench --metrics`), so a dashboard can watch a long run (a failover,
/// say). Counts are read from the run's own counters; the latency
/// histogram is the one the coordinator merged last (every
/// [`LIVE_EVERY`]), so a scrape never takes a lock a connection takes.
#[derive(Debug, Default)]
pub struct Live {
    shared: std::sync::OnceLock<Arc<Shared>>,
    latency: std::sync::Mutex<Option<Histogram<u64>>>,
}

/// What [`Live::figures`] reads.
#[derive(Debug, Clone, Default)]
pub struct LiveFigures {
    /// Requests measured and verified so far.
    pub requests: u64,
    /// Failures so far, by kind ([`Failure::key`]), every kind listed.
    pub errors: Vec<(&'static str, u64)>,
    /// Connections open now.
    pub connections: u64,
    /// Latencies of the measured requests (nanoseconds), as of the last
    /// merge; `None` before measuring began.
    pub latency: Option<Histogram<u64>>,
}

impl Live {
    /// The figures now (all zero before the run starts).
    #[must_use]
    pub fn figures(&self) -> LiveFigures {
        let latency = self.latency.lock().ok().and_then(|h| h.clone());
        let Some(shared) = self.shared.get() else {
            return LiveFigures {
                errors: Failure::ALL.iter().map(|f| (f.key(), 0)).collect(),
                ..LiveFigures::default()
            };
        };
        LiveFigures {
            requests: shared.measured.load(Ordering::Relaxed),
            errors: Failure::ALL
                .iter()
                .zip(&shared.failures)
                .map(|(f, n)| (f.key(), n.load(Ordering::Relaxed)))
                .collect(),
            connections: shared
                .connected
                .load(Ordering::Relaxed)
                .saturating_sub(shared.ended.load(Ordering::Relaxed)),
            latency,
        }
    }

    fn publish(&self, merged: Histogram<u64>) {
        if let Ok(mut latency) = self.latency.lock() {
            *latency = Some(merged);
        }
    }
}

/// One interval of a running benchmark (`--interval`).
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// Since measuring began, at the interval's end.
    pub elapsed: Duration,
    /// The interval's length.
    pub seconds: f64,
    /// Requests completed in it.
    pub requests: u64,
    /// Failures in it.
    pub errors: u64,
    /// Connections open at its end.
    pub connections: u64,
    /// Latency percentiles of its requests, microseconds (0 with none).
    pub p50_us: f64,
    /// The 99th.
    pub p99_us: f64,
    /// With banners: per back end, its requests, p50 and p99 in this
    /// interval.
    pub backends: Vec<(String, u64, f64, f64)>,
}

impl Interval {
    /// One line: `  2.0s  10067 req/s  errors 0  conns 10  p50 45.1us  p99 120.3us`.
    #[must_use]
    pub fn text(&self) -> String {
        let mut line = format!(
            "{:>6.1}s {:>9.0} req/s  errors {}  conns {}  p50 {:.1}us  p99 {:.1}us",
            self.elapsed.as_secs_f64(),
            self.requests as f64 / self.seconds.max(1e-9),
            self.errors,
            self.connections,
            self.p50_us,
            self.p99_us
        );
        for (name, requests, p50, p99) in &self.backends {
            let _ = write!(
                line,
                "  | {name} {:.0} req/s p50 {p50:.1}us p99 {p99:.1}us",
                *requests as f64 / self.seconds.max(1e-9)
            );
        }
        line
    }

    /// One JSON object (a line of a JSON-lines stream).
    #[must_use]
    pub fn json(&self) -> String {
        let backends = json_map(
            "backends",
            self.backends.iter().map(|(name, requests, p50, p99)| {
                (
                    name.as_str(),
                    format!("{{\"requests\":{requests},\"p50\":{p50:.1},\"p99\":{p99:.1}}}"),
                )
            }),
        );
        format!(
            "{{\"interval\":true,\"elapsed\":{:.3},\"seconds\":{:.3},\"requests\":{},\"requests_per_sec\":{:.1},\"errors\":{},\"connections\":{},\"latency_us\":{{\"p50\":{:.1},\"p99\":{:.1}}}{backends}}}",
            self.elapsed.as_secs_f64(),
            self.seconds,
            self.requests,
            self.requests as f64 / self.seconds.max(1e-9),
            self.errors,
            self.connections,
            self.p50_us,
            self.p99_us
        )
    }
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

/// Why a connection's request failed; each ends that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The echo differed from what was sent.
    Mismatch,
    /// The server closed before the whole echo came back.
    Closed,
    /// The peer reset the connection.
    Reset,
    /// Another socket error.
    Broken,
    /// No byte moved either way for the timeout (or a reconnect timed out).
    TimedOut,
    /// Still waiting for its echo when the run (and its drain) ended.
    Unfinished,
    /// A reconnect (`--reconnect-every`) was refused.
    Refused,
    /// A reconnect's host name did not resolve.
    NameResolution,
    /// A reconnect's TLS handshake failed.
    Tls,
}

impl Failure {
    /// Every kind, in report order.
    pub const ALL: [Self; 9] = [
        Self::Mismatch,
        Self::Closed,
        Self::Reset,
        Self::Broken,
        Self::TimedOut,
        Self::Unfinished,
        Self::Refused,
        Self::NameResolution,
        Self::Tls,
    ];

    /// The kind of a socket error: TLS's (an alert from the server, say
    /// `certificate_required` under mutual TLS), a reset, or broken.
    fn of_io(error: &std::io::Error) -> Self {
        if echo_net::tls_reason(error).is_some() {
            return Self::Tls;
        }
        match error.kind() {
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => Self::Reset,
            _ => Self::Broken,
        }
    }

    /// The kind of a failed (re)connect.
    fn of_connect(error: &echo_net::ClientError) -> Self {
        match error {
            echo_net::ClientError::Refused { .. } => Self::Refused,
            echo_net::ClientError::ConnectTimeout { .. } => Self::TimedOut,
            echo_net::ClientError::Resolve { .. } => Self::NameResolution,
            echo_net::ClientError::Tls { .. } => Self::Tls,
            _ => Self::Broken,
        }
    }

    /// The JSON key.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Mismatch => "mismatch",
            Self::Closed => "closed",
            Self::Reset => "reset",
            Self::Broken => "broken",
            Self::TimedOut => "timed_out",
            Self::Unfinished => "unfinished",
            Self::Refused => "refused",
            Self::NameResolution => "name_resolution",
            Self::Tls => "tls_handshake",
        }
    }

    /// What a user reads.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Mismatch => "echo mismatch",
            Self::Closed => "closed early by the server",
            Self::Reset => "reset by the server",
            Self::Broken => "connection broken",
            Self::TimedOut => "timed out",
            Self::Unfinished => "no echo by the end of the run",
            Self::Refused => "reconnect refused",
            Self::NameResolution => "reconnect could not resolve the host",
            Self::Tls => "TLS failure (handshake or alert)",
        }
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct BenchReport {
    /// Requests measured (after the warm-up).
    pub requests: u64,
    /// Measured wall time.
    pub elapsed: Duration,
    /// Failed requests by kind, in [`Failure::ALL`] order.
    pub failures: [u64; 9],
    /// Round-trip latencies in nanoseconds.
    pub latency: Histogram<u64>,
    /// The message length.
    pub len: usize,
    /// Connections.
    pub connections: usize,
    /// Open loop: the rate asked for, and the latencies from the actual
    /// send (raw, as a closed loop would measure them) beside the
    /// corrected ones in `latency`.
    pub open_loop: Option<OpenLoop>,
    /// How long each connect took (TCP, plus the PROXY header if sent,
    /// plus the TLS handshake), in nanoseconds: the initial ones and, with
    /// churn, every reconnect.
    pub connects: Histogram<u64>,
    /// How long each TLS handshake took (`tls:`), nanoseconds; empty
    /// otherwise.
    pub handshakes: Histogram<u64>,
    /// Reconnects made while measuring (`--reconnect-every`); `connects`
    /// holds them and the first connect of each connection.
    pub reconnects: u64,
    /// With `banner`: per back end, by name.
    pub backends: Vec<Backend>,
    /// The first TLS failure's reason, when any request failed so.
    pub tls_reason: Option<String>,
}

/// What one back end (named by its banner) served.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Its banner line.
    pub name: String,
    /// Connections it accepted.
    pub connections: u64,
    /// Measured requests it answered.
    pub requests: u64,
    /// Their latencies, nanoseconds.
    pub latency: Histogram<u64>,
}

/// What an open-loop run adds to its report.
#[derive(Debug)]
pub struct OpenLoop {
    /// Requests per second asked for.
    pub rate: f64,
    /// Latencies from the actual send, in nanoseconds.
    pub raw: Histogram<u64>,
    /// Sends that went out later than one interval after their time.
    pub late: u64,
    /// Sends skipped because `max_in_flight` requests were outstanding.
    pub skipped: u64,
}

impl BenchReport {
    /// Failed requests of every kind.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.failures.iter().sum()
    }

    /// The failures that happened, as `2 closed early by the server, 1 timed
    /// out`; empty when none did.
    #[must_use]
    pub fn failure_summary(&self) -> String {
        Failure::ALL
            .iter()
            .zip(self.failures)
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{n} {}", kind.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    }

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
        percentiles(&self.latency)
    }

    /// A human-readable summary: the load line, the latency line(s) and
    /// the connect line.
    #[must_use]
    pub fn text(&self) -> String {
        let [c50, c90, c99, _, cmax] = percentiles(&self.connects);
        let churn = if self.reconnects > 0 {
            format!(
                ": {} first, {} reconnects while measuring = {:.0}/s",
                self.connects.len().saturating_sub(self.reconnects),
                self.reconnects,
                self.reconnects as f64 / self.elapsed.as_secs_f64().max(1e-9)
            )
        } else {
            String::new()
        };
        let mut out = format!(
            "{}\nconnect us: p50 {c50:.1}  p90 {c90:.1}  p99 {c99:.1}  max {cmax:.1} ({} connects{churn})",
            self.load_text(),
            self.connects.len()
        );
        if !self.handshakes.is_empty() {
            let [h50, h90, h99, _, hmax] = percentiles(&self.handshakes);
            let _ = write!(
                out,
                "\ntls handshake us: p50 {h50:.1}  p90 {h90:.1}  p99 {h99:.1}  max {hmax:.1} ({} handshakes)",
                self.handshakes.len()
            );
        }
        if let Some(reason) = &self.tls_reason {
            let _ = write!(out, "\nfirst TLS failure: {reason}");
        }
        for b in &self.backends {
            let [p50, _, p99, _, _] = percentiles(&b.latency);
            let _ = write!(
                out,
                "\nbackend {}: {} connections, {} requests, p50 {p50:.1}us  p99 {p99:.1}us",
                b.name, b.connections, b.requests
            );
        }
        out
    }

    fn load_text(&self) -> String {
        let [p50, p90, p99, p999, max] = self.latency_us();
        let errors = match self.errors() {
            0 => "0".to_owned(),
            n => format!("{n} ({})", self.failure_summary()),
        };
        let Some(open) = &self.open_loop else {
            return format!(
                "{} connections x {} B: {} requests in {:.2}s = {:.0} req/s, {:.1} MB/s, errors {errors}\n\
                 latency us: p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}",
                self.connections,
                self.len,
                self.requests,
                self.elapsed.as_secs_f64(),
                self.requests_per_sec(),
                self.mb_per_sec(),
            );
        };
        let [r50, r90, r99, r999, rmax] = percentiles(&open.raw);
        let behind = if open.skipped > 0 {
            format!(
                "; {} sends skipped at --max-in-flight: the server cannot keep up",
                open.skipped
            )
        } else {
            String::new()
        };
        format!(
            "{} connections x {} B at {} req/s: {} requests in {:.2}s = {:.0} req/s, {:.1} MB/s, errors {errors}, late sends {}{behind}\n\
             latency us (corrected, from the intended send): p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}\n\
             latency us (raw, from the actual send):         p50 {r50:.1}  p90 {r90:.1}  p99 {r99:.1}  p99.9 {r999:.1}  max {rmax:.1}",
            self.connections,
            self.len,
            rate_text(open.rate),
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests_per_sec(),
            self.mb_per_sec(),
            open.late,
        )
    }

    /// One JSON object (field names are stable; times in microseconds).
    #[must_use]
    pub fn json(&self) -> String {
        let [p50, p90, p99, p999, max] = self.latency_us();
        let failures = Failure::ALL
            .iter()
            .zip(self.failures)
            .map(|(kind, n)| format!("\"{}\":{n}", kind.key()))
            .collect::<Vec<_>>()
            .join(",");
        let open = self.open_loop.as_ref().map_or_else(String::new, |o| {
            let [r50, r90, r99, r999, rmax] = percentiles(&o.raw);
            format!(
                ",\"rate\":{},\"late\":{},\"skipped\":{},\"latency_raw_us\":{{\"p50\":{r50:.1},\"p90\":{r90:.1},\"p99\":{r99:.1},\"p99_9\":{r999:.1},\"max\":{rmax:.1}}}",
                o.rate, o.late, o.skipped
            )
        });
        let backends = json_map(
            "backends",
            self.backends.iter().map(|b| {
                let [p50, _, p99, _, _] = percentiles(&b.latency);
                (
                    b.name.as_str(),
                    format!(
                        "{{\"connections\":{},\"requests\":{},\"p50\":{p50:.1},\"p99\":{p99:.1}}}",
                        b.connections, b.requests
                    ),
                )
            }),
        );
        let [c50, c90, c99, _, cmax] = percentiles(&self.connects);
        let tls = self.tls_reason.as_deref().map_or_else(String::new, |r| {
            format!(",\"tls_reason\":{}", json_string(r))
        });
        let mut connects = format!(
            ",\"connects\":{},\"reconnects\":{},\"connect_us\":{{\"p50\":{c50:.1},\"p90\":{c90:.1},\"p99\":{c99:.1},\"max\":{cmax:.1}}}",
            self.connects.len(),
            self.reconnects
        );
        if !self.handshakes.is_empty() {
            let [h50, h90, h99, _, hmax] = percentiles(&self.handshakes);
            let _ = write!(
                connects,
                ",\"handshakes\":{},\"handshake_us\":{{\"p50\":{h50:.1},\"p90\":{h90:.1},\"p99\":{h99:.1},\"max\":{hmax:.1}}}",
                self.handshakes.len()
            );
        }
        format!(
            "{{\"connections\":{},\"len\":{},\"requests\":{},\"seconds\":{:.6},\"requests_per_sec\":{:.1},\"mb_per_sec\":{:.3},\"errors\":{},\"failures\":{{{failures}}},\"latency_us\":{{\"p50\":{p50:.1},\"p90\":{p90:.1},\"p99\":{p99:.1},\"p99_9\":{p999:.1},\"max\":{max:.1}}}{open}{connects}{tls}{backends}}}",
            self.connections,
            self.len,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests_per_sec(),
            self.mb_per_sec(),
            self.errors(),
        )
    }

    /// The percentile distribution in HdrHistogram's `.hgrm` text format
    /// (values in microseconds; `TotalCount` is the count of values up to
    /// that one, ending at the total), as its plotters read it.
    #[must_use]
    pub fn hgrm(&self) -> String {
        let h = &self.latency;
        let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
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
                total,
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
            sub_buckets(h)
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

/// A rate as asked for: `1000`, `0.5`, `1.5`, never rounded to a whole
/// number (at most three decimals, as `--rate` takes).
#[must_use]
pub fn rate_text(rate: f64) -> String {
    let text = format!("{rate:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `,"key":{"name":body,...}`, or nothing without entries.
fn json_map<'a>(key: &str, entries: impl Iterator<Item = (&'a str, String)>) -> String {
    let each: Vec<String> = entries
        .map(|(name, body)| format!("{}:{body}", json_string(name)))
        .collect();
    if each.is_empty() {
        String::new()
    } else {
        format!(",\"{key}\":{{{}}}", each.join(","))
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// HdrHistogram's sub-bucket count (the `SubBuckets` of an `.hgrm` footer):
/// the power of two that holds 2 x 10^digits, the largest value kept at
/// single-unit resolution (the Rust crate keeps the figure private).
fn sub_buckets(h: &Histogram<u64>) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(h.sigfig()));
    largest.next_power_of_two()
}

/// p50, p90, p99, p99.9 and the maximum of `h`, in microseconds.
fn percentiles(h: &Histogram<u64>) -> [f64; 5] {
    let at = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    [at(0.5), at(0.9), at(0.99), at(0.999), h.max() as f64 / 1e3]
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// One back end's books while running: connections, requests, latencies.
type BackendBook = (u64, u64, Histogram<u64>);

/// What every connection loop shares with the coordinator.
#[derive(Debug, Default)]
struct Shared {
    measuring: AtomicBool,
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
                .or_insert_with(|| (0, 0, new_histogram()))
                .0 += 1;
        }
    }

    /// Back end `name` answered a measured request in `took`.
    fn backend_answered(&self, name: &str, took: Duration) {
        if let Ok(mut map) = self.backends.lock()
            && let Some(entry) = map.get_mut(name)
        {
            entry.1 += 1;
            let _ = entry.2.record(took.as_nanos().max(1) as u64);
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
        let i = Failure::ALL.iter().position(|k| *k == failure).unwrap_or(0);
        self.failures[i].fetch_add(1, Ordering::Relaxed);
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
) -> Result<BenchReport, String> {
    config.check()?;
    let connector = Connector::new(&config.endpoint, config.insecure)
        .map_err(|e| e.to_string())?
        .send_proxy(config.send_proxy);
    let shared = Arc::new(Shared {
        connector: Some(connector),
        ..Shared::default()
    });
    if let Some(live) = &config.live {
        let _ = live.shared.set(Arc::clone(&shared));
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
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let deadline = config.duration.map(|d| started + d);
    // Per interval: the merged histogram at the last tick, to subtract.
    let mut last_tick = (started, new_histogram(), 0u64, 0u64);
    // Each back end's books at the last tick, to subtract.
    let mut last_backends: std::collections::BTreeMap<String, BackendBook> =
        std::collections::BTreeMap::new();
    let mut tick = |now: Instant, last: &mut (Instant, Histogram<u64>, u64, u64)| {
        let mut backends = Vec::new();
        if let Ok(map) = shared.backends.lock() {
            for (name, (connections, requests, hist)) in map.iter() {
                let before = last_backends.get(name);
                let mut this = hist.clone();
                if let Some((_, _, old)) = before {
                    let _ = this.subtract(old);
                }
                let q = |p: f64| {
                    if this.is_empty() {
                        0.0
                    } else {
                        this.value_at_quantile(p) as f64 / 1e3
                    }
                };
                let served = requests - before.map_or(0, |b| b.1);
                backends.push((name.clone(), served, q(0.5), q(0.99)));
                last_backends.insert(name.clone(), (*connections, *requests, hist.clone()));
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
            backends,
        };
        *last = (now, merged, measured, errors);
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
            if now - last_tick.0 >= every {
                let interval = tick(now, &mut last_tick);
                bar.0.suspend(|| on_interval(&interval));
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
        if now.duration_since(last_tick.0) >= Duration::from_millis(1) {
            let interval = tick(now, &mut last_tick);
            bar.0.suspend(|| on_interval(&interval));
        }
    }
    let elapsed = started.elapsed();
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
    Ok(BenchReport {
        requests,
        elapsed,
        failures: shared
            .failures
            .each_ref()
            .map(|f| f.load(Ordering::Relaxed)),
        latency,
        len: config.len,
        connections: config.connections,
        backends: shared
            .backends
            .lock()
            .map(|map| {
                map.iter()
                    .map(|(name, (connections, requests, latency))| Backend {
                        name: name.clone(),
                        connections: *connections,
                        requests: *requests,
                        latency: latency.clone(),
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
            if counted && job.limit.is_some() {
                // Give the claim back: another connection may complete it.
                shared.claimed.fetch_sub(1, Ordering::Relaxed);
            }
            shared.fail(failure);
            break; // a broken or desynchronised stream proves nothing more
        }
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
    let fail = |failure| {
        if !failed.swap(true, Ordering::Relaxed) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_what_the_socket_said() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            Failure::of_io(&Error::from(ErrorKind::ConnectionReset)),
            Failure::Reset
        );
        assert_eq!(
            Failure::of_io(&Error::from(ErrorKind::BrokenPipe)),
            Failure::Reset
        );
        assert_eq!(
            Failure::of_io(&Error::from(ErrorKind::Other)),
            Failure::Broken
        );
        let target = "tcp:x:1".to_owned();
        let refused = echo_net::ClientError::Refused {
            target: target.clone(),
        };
        assert_eq!(Failure::of_connect(&refused), Failure::Refused);
        let timeout = echo_net::ClientError::ConnectTimeout {
            target,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(Failure::of_connect(&timeout), Failure::TimedOut);
        let tls = echo_net::ClientError::Tls {
            target: "tls:x:1".to_owned(),
            reason: "unknown issuer".to_owned(),
        };
        assert_eq!(Failure::of_connect(&tls), Failure::Tls);
        let keys: Vec<&str> = Failure::ALL.iter().map(|f| f.key()).collect();
        assert_eq!(
            keys,
            [
                "mismatch",
                "closed",
                "reset",
                "broken",
                "timed_out",
                "unfinished",
                "refused",
                "name_resolution",
                "tls_handshake"
            ]
        );
    }

    #[test]
    fn the_hgrm_file_counts_up_to_the_total_and_its_footer_is_the_histograms() {
        let mut latency = new_histogram();
        for us in 1..=5_000u64 {
            latency.record(us * 1_000).unwrap();
        }
        let report = BenchReport {
            requests: 5_000,
            elapsed: Duration::from_secs(1),
            failures: [0; 9],
            latency,
            len: 64,
            connections: 1,
            open_loop: None,
            connects: new_histogram(),
            handshakes: new_histogram(),
            reconnects: 0,
            backends: Vec::new(),
            tls_reason: None,
        };
        let hgrm = report.hgrm();
        let counts: Vec<u64> = hgrm
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "cumulative");
        assert_eq!(counts.last(), Some(&5_000), "ends at the total");
        assert!(hgrm.contains("Total count    =         5000"), "{hgrm}");
        assert!(hgrm.contains("SubBuckets     =         2048"), "{hgrm}");
        let buckets = format!("Buckets = {:12}", report.latency.buckets());
        assert!(hgrm.contains(&buckets), "{hgrm}");
        // Java's HdrHistogram: 3 significant digits take 2048 sub-buckets.
        assert_eq!(sub_buckets(&Histogram::<u64>::new(2).unwrap()), 256);
    }
}
