//! One interval of a running benchmark (`--interval`): the figures of the
//! requests completed in it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::summary::tenth;

/// One interval of a running benchmark.
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
    /// The longest stall (no echo on a connection while one was owed) that
    /// ended in this interval or is still going on at its end,
    /// microseconds.
    pub stall_us: f64,
    /// Connections cut in it: reset or closed early by the server.
    pub cut: u64,
    /// Reconnects refused in it.
    pub refused: u64,
    /// With banners: per back end, what it served in this interval.
    pub backends: Vec<BackendInterval>,
    /// The whole run so far, for judging thresholds while it runs.
    pub so_far: SoFar,
}

/// The figures of the whole run up to an interval's end.
#[derive(Debug, Clone, PartialEq)]
pub struct SoFar {
    /// Measured seconds.
    pub seconds: f64,
    /// Requests measured.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Latency percentiles, microseconds.
    pub latency_us: super::Percentiles,
    /// The longest stall so far (ended, or going on), microseconds.
    pub stall_us: f64,
}

/// What one back end served in one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendInterval {
    /// Its banner line.
    pub name: String,
    /// Requests it answered in the interval.
    pub requests: u64,
    /// Their median latency, microseconds.
    pub p50_us: f64,
    /// Their 99th percentile, microseconds.
    pub p99_us: f64,
}

impl Interval {
    /// Requests per second in this interval.
    #[must_use]
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    /// Its JSON line's figures.
    #[must_use]
    pub fn summary(&self) -> IntervalSummary {
        IntervalSummary {
            interval: true,
            elapsed: (self.elapsed.as_secs_f64() * 1e3).round() / 1e3,
            seconds: (self.seconds * 1e3).round() / 1e3,
            requests: self.requests,
            requests_per_sec: tenth(self.requests_per_sec()),
            errors: self.errors,
            connections: self.connections,
            latency_us: IntervalLatency {
                p50: tenth(self.p50_us),
                p99: tenth(self.p99_us),
            },
            stall_us: tenth(self.stall_us),
            cut: self.cut,
            refused: self.refused,
            backends: self
                .backends
                .iter()
                .map(|b| {
                    let figures = IntervalBackend {
                        requests: b.requests,
                        p50: tenth(b.p50_us),
                        p99: tenth(b.p99_us),
                    };
                    (b.name.clone(), figures)
                })
                .collect(),
        }
    }
}

/// An interval as one JSON object (a line of a JSON-lines stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalSummary {
    /// Always true: tells these lines from the final summary.
    pub interval: bool,
    /// Seconds since measuring began, at its end.
    pub elapsed: f64,
    /// Its length in seconds.
    pub seconds: f64,
    /// Requests completed in it.
    pub requests: u64,
    /// Their rate.
    pub requests_per_sec: f64,
    /// Failures in it.
    pub errors: u64,
    /// Connections open at its end.
    pub connections: u64,
    /// Latency of its requests.
    pub latency_us: IntervalLatency,
    /// The longest stall that ended in it.
    #[serde(default)]
    pub stall_us: f64,
    /// Connections cut in it (reset, closed early).
    #[serde(default)]
    pub cut: u64,
    /// Reconnects refused in it.
    #[serde(default)]
    pub refused: u64,
    /// Per back end, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backends: BTreeMap<String, IntervalBackend>,
}

/// An interval's latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntervalLatency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// One back end in one interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntervalBackend {
    /// Requests it answered.
    pub requests: u64,
    /// Median latency, microseconds.
    pub p50: f64,
    /// 99th percentile, microseconds.
    pub p99: f64,
}
