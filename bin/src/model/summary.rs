//! [`Summary`]: a run's figures (percentiles, rates, counts), what `--json`
//! prints, thresholds judge and `compare` reads back. Field names are a
//! contract (`scripts/bench.py` reads them); times are in microseconds.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::failure::Failures;
use super::histogram::percentiles;
use super::run::Run;
use crate::threshold::Verdict;

/// The `schema_version` this build writes. A reader refuses a newer one;
/// output without the field is version 0 (the same fields, from before the
/// field existed).
pub const SCHEMA_VERSION: u32 = 1;

/// A run's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The version of this layout ([`SCHEMA_VERSION`]); 0 when absent.
    #[serde(default)]
    pub schema_version: u32,
    /// Connections.
    pub connections: usize,
    /// Message length in bytes.
    pub len: usize,
    /// Requests measured.
    pub requests: u64,
    /// Measured wall time.
    pub seconds: f64,
    /// Round trips per second.
    pub requests_per_sec: f64,
    /// Payload megabytes (10^6) per second, one direction.
    pub mb_per_sec: f64,
    /// Failed requests of every kind.
    pub errors: u64,
    /// Failed requests by kind.
    pub failures: Failures,
    /// Round-trip latency (open loop: corrected, from the intended send).
    pub latency_us: Percentiles,
    /// Open loop only.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub open_loop: Option<OpenLoopSummary>,
    /// The longest stall (no echo while one was owed), on which
    /// connection and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<StallSummary>,
    /// Connects made (first ones plus reconnects while measuring).
    pub connects: u64,
    /// Reconnects made while measuring.
    pub reconnects: u64,
    /// How long connects took.
    pub connect_us: ConnectPercentiles,
    /// TLS only.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub handshakes: Option<HandshakeSummary>,
    /// The first TLS failure's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_reason: Option<String>,
    /// Per back end (`--banner`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backends: BTreeMap<String, BackendSummary>,
    /// The thresholds judged (`--threshold`), in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<Verdict>,
    /// Which test it belongs to and its share (`--run-id`, `--shard`),
    /// and how late it began after `--start-at`.
    #[serde(flatten, default)]
    pub identity: super::Identity,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p99_9: f64,
    /// The largest.
    pub max: f64,
}

impl Percentiles {
    /// Of a histogram of nanoseconds, rounded to 0.1 us.
    #[must_use]
    pub fn of(h: &Histogram<u64>) -> Self {
        let [p50, p90, p99, p99_9, max] = percentiles(h).map(tenth);
        Self {
            p50,
            p90,
            p99,
            p99_9,
            max,
        }
    }
}

/// Connect (or handshake) percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConnectPercentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

impl ConnectPercentiles {
    /// Of a histogram of nanoseconds, rounded to 0.1 us.
    #[must_use]
    pub fn of(h: &Histogram<u64>) -> Self {
        let [p50, p90, p99, _, max] = percentiles(h).map(tenth);
        Self { p50, p90, p99, max }
    }
}

/// What an open-loop run adds (flattened into the summary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenLoopSummary {
    /// Requests per second asked for.
    pub rate: f64,
    /// Sends later than one interval after their time.
    pub late: u64,
    /// Sends skipped at `--max-in-flight`.
    pub skipped: u64,
    /// Latency from the actual send (uncorrected).
    pub latency_raw_us: Percentiles,
}

/// TLS handshakes (flattened into the summary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeSummary {
    /// Handshakes made.
    pub handshakes: u64,
    /// Of those, resumed sessions (the rest were full handshakes).
    #[serde(default)]
    pub resumed: u64,
    /// How long they took.
    pub handshake_us: ConnectPercentiles,
}

/// The longest stall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StallSummary {
    /// How long, microseconds.
    pub longest_us: f64,
    /// On which connection (from 0).
    pub connection: usize,
    /// When it began: seconds since measuring began.
    pub at: f64,
}

/// One back end's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSummary {
    /// Connections it accepted.
    pub connections: u64,
    /// Requests it answered.
    pub requests: u64,
    /// Their median latency, microseconds.
    pub p50: f64,
    /// Their 99th percentile, microseconds.
    pub p99: f64,
}

/// `x` rounded to one decimal, as the figures are printed.
pub(crate) fn tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `x` rounded to `digits` decimals.
fn rounded(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

impl Run {
    /// Its figures (no thresholds judged yet).
    #[must_use]
    pub fn summary(&self) -> Summary {
        Summary {
            schema_version: SCHEMA_VERSION,
            connections: self.connections,
            len: self.len,
            requests: self.requests,
            seconds: rounded(self.elapsed.as_secs_f64(), 6),
            requests_per_sec: tenth(self.requests_per_sec()),
            mb_per_sec: rounded(self.mb_per_sec(), 3),
            errors: self.errors(),
            failures: self.failures,
            latency_us: Percentiles::of(&self.latency),
            open_loop: self.open_loop.as_ref().map(|o| OpenLoopSummary {
                rate: o.rate,
                late: o.late,
                skipped: o.skipped,
                latency_raw_us: Percentiles::of(&o.raw),
            }),
            stall: self.stall.map(|s| StallSummary {
                longest_us: tenth(s.length.as_secs_f64() * 1e6),
                connection: s.connection,
                at: rounded(s.began.as_secs_f64(), 3),
            }),
            connects: self.connects.len(),
            reconnects: self.reconnects,
            connect_us: ConnectPercentiles::of(&self.connects),
            handshakes: (!self.handshakes.is_empty()).then(|| HandshakeSummary {
                handshakes: self.handshakes.len(),
                resumed: self.resumed,
                handshake_us: ConnectPercentiles::of(&self.handshakes),
            }),
            tls_reason: self.tls_reason.clone(),
            backends: self
                .backends
                .iter()
                .map(|b| {
                    let [p50, _, p99, _, _] = percentiles(&b.latency).map(tenth);
                    let figures = BackendSummary {
                        connections: b.connections,
                        requests: b.requests,
                        p50,
                        p99,
                    };
                    (b.name.clone(), figures)
                })
                .collect(),
            thresholds: Vec::new(),
            identity: self.identity.clone(),
        }
    }
}

impl Summary {
    /// Failed requests over all requests tried (0 with none tried).
    #[must_use]
    pub fn error_rate(&self) -> f64 {
        let tried = self.requests + self.errors;
        if tried == 0 {
            0.0
        } else {
            self.errors as f64 / tried as f64
        }
    }
}
