//! [`Run`]: everything one bench run measured, histograms included. Saved
//! whole (`bench --save`), several runs add up with [`Run::merge`].

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::failure::Failures;

/// What a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// Requests measured (after the warm-up).
    pub requests: u64,
    /// Measured wall time.
    pub elapsed: Duration,
    /// Failed requests by kind.
    pub failures: Failures,
    /// Round-trip latencies in nanoseconds (open loop: from the intended
    /// send).
    #[serde(with = "super::histogram")]
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
    #[serde(with = "super::histogram")]
    pub connects: Histogram<u64>,
    /// How long each TLS handshake took (`tls:`), nanoseconds; empty
    /// otherwise.
    #[serde(with = "super::histogram")]
    pub handshakes: Histogram<u64>,
    /// Reconnects made while measuring (`--reconnect-every`); `connects`
    /// holds them and the first connect of each connection.
    pub reconnects: u64,
    /// Of the TLS handshakes, those that resumed a session (the server
    /// sent tickets; not with `--no-resume`); the rest were full ones.
    #[serde(default)]
    pub resumed: u64,
    /// With `banner`: per back end, by name.
    pub backends: Vec<Backend>,
    /// The first TLS failure's reason, when any request failed so.
    pub tls_reason: Option<String>,
    /// The longest time any connection went without an echo while one was
    /// owed; none before any request.
    #[serde(default)]
    pub stall: Option<Stall>,
    /// Which test it belongs to and its share (many hosts, one test).
    #[serde(default, skip_serializing_if = "super::Identity::is_empty")]
    pub identity: super::Identity,
}

/// The longest stall of a run: which connection, when, how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    /// The connection (numbered from 0, as the load generator counts).
    pub connection: usize,
    /// When it began, since measuring began.
    pub began: Duration,
    /// How long no echo completed.
    pub length: Duration,
}

/// What one back end (named by its banner) served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backend {
    /// Its banner line.
    pub name: String,
    /// Connections it accepted.
    pub connections: u64,
    /// Measured requests it answered.
    pub requests: u64,
    /// Their latencies, nanoseconds.
    #[serde(with = "super::histogram")]
    pub latency: Histogram<u64>,
}

/// What an open-loop run adds to its report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenLoop {
    /// Requests per second asked for.
    pub rate: f64,
    /// Latencies from the actual send, in nanoseconds.
    #[serde(with = "super::histogram")]
    pub raw: Histogram<u64>,
    /// Sends that went out later than one interval after their time.
    pub late: u64,
    /// Sends skipped because `max_in_flight` requests were outstanding.
    pub skipped: u64,
}

/// Why two runs cannot be added.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeError {
    /// One ran open loop (`--rate`) and the other closed loop: their
    /// latencies measure different things.
    Loops,
    /// Messages of different sizes.
    Lengths {
        /// This run's.
        ours: usize,
        /// The other's.
        theirs: usize,
    },
    /// A histogram could not take the other's values.
    Histogram(String),
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Loops => f.write_str(
                "one run is open loop (--rate) and another closed loop: their latencies measure different things",
            ),
            Self::Lengths { ours, theirs } => {
                write!(f, "{ours}-byte and {theirs}-byte messages do not add up to one run")
            }
            Self::Histogram(e) => write!(f, "cannot add the histograms: {e}"),
        }
    }
}

impl std::error::Error for MergeError {}

impl Run {
    /// A run known only by its latencies (what `.hlog` files hold):
    /// `requests` is the histogram's count; everything else is empty.
    #[must_use]
    pub fn of_latencies(latency: Histogram<u64>, raw: Option<Histogram<u64>>) -> Self {
        Self {
            requests: latency.len(),
            elapsed: Duration::ZERO,
            failures: Failures::default(),
            latency,
            len: 0,
            connections: 0,
            open_loop: raw.map(|raw| OpenLoop {
                rate: 0.0,
                raw,
                late: 0,
                skipped: 0,
            }),
            connects: super::new_histogram(),
            handshakes: super::new_histogram(),
            reconnects: 0,
            resumed: 0,
            backends: Vec::new(),
            tls_reason: None,
            stall: None,
            identity: super::Identity::default(),
        }
    }

    /// Failed requests of every kind.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.failures.total()
    }

    /// The failures that happened, as `2 closed early by the server, 1 timed
    /// out`; empty when none did.
    #[must_use]
    pub fn failure_summary(&self) -> String {
        self.failures.describe()
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

    /// Adds `other` (a shard of the same load run at the same time from
    /// another host): counts and histograms add, connections add, the
    /// elapsed time is the longer one (the shards ran side by side), back
    /// ends merge by name, and the open-loop rates add.
    ///
    /// # Errors
    /// [`MergeError`] when the runs are not shards of one load.
    pub fn merge(&mut self, other: &Self) -> Result<(), MergeError> {
        if self.open_loop.is_some() != other.open_loop.is_some() {
            return Err(MergeError::Loops);
        }
        if self.len != other.len {
            return Err(MergeError::Lengths {
                ours: self.len,
                theirs: other.len,
            });
        }
        let add = |mine: &mut Histogram<u64>, theirs: &Histogram<u64>| {
            mine.auto(true);
            mine.add(theirs)
                .map_err(|e| MergeError::Histogram(format!("{e:?}")))
        };
        add(&mut self.latency, &other.latency)?;
        add(&mut self.connects, &other.connects)?;
        add(&mut self.handshakes, &other.handshakes)?;
        if let (Some(mine), Some(theirs)) = (&mut self.open_loop, &other.open_loop) {
            add(&mut mine.raw, &theirs.raw)?;
            mine.rate += theirs.rate;
            mine.late += theirs.late;
            mine.skipped += theirs.skipped;
        }
        self.requests += other.requests;
        self.elapsed = self.elapsed.max(other.elapsed);
        // The sum is the whole test: its id stays, the shard goes, the
        // skew is the worst of any host's.
        self.identity.shard = None;
        if self.identity.run_id != other.identity.run_id {
            self.identity.run_id = None;
        }
        self.identity.start_skew_us =
            match (self.identity.start_skew_us, other.identity.start_skew_us) {
                (Some(a), Some(b)) => Some(if a.abs() >= b.abs() { a } else { b }),
                (a, b) => a.or(b),
            };
        self.failures.add(&other.failures);
        self.connections += other.connections;
        self.reconnects += other.reconnects;
        self.resumed += other.resumed;
        for theirs in &other.backends {
            match self.backends.iter_mut().find(|b| b.name == theirs.name) {
                Some(mine) => {
                    mine.connections += theirs.connections;
                    mine.requests += theirs.requests;
                    add(&mut mine.latency, &theirs.latency)?;
                }
                None => self.backends.push(theirs.clone()),
            }
        }
        self.backends.sort_by(|a, b| a.name.cmp(&b.name));
        if other
            .stall
            .is_some_and(|s| self.stall.is_none_or(|mine| s.length > mine.length))
        {
            self.stall = other.stall;
        }
        if self.tls_reason.is_none() {
            self.tls_reason.clone_from(&other.tls_reason);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(samples: &[u64]) -> Run {
        let mut latency = crate::model::new_histogram();
        for v in samples {
            latency.record(*v).unwrap();
        }
        Run {
            elapsed: Duration::from_secs(1),
            len: 64,
            connections: 1,
            ..Run::of_latencies(latency, None)
        }
    }

    /// Many hosts' runs merge into exactly the figures one host would have
    /// had with all the samples: HDR histograms add exactly.
    #[test]
    fn merged_shards_have_the_percentiles_of_one_histogram_fed_every_sample() {
        let samples: Vec<u64> = (1..=30_000u64)
            .map(|i| (i * 7_919) % 5_000_000 + 1_000)
            .collect();
        let mut merged = run_of(&samples[..10_000]);
        merged.merge(&run_of(&samples[10_000..20_000])).unwrap();
        merged.merge(&run_of(&samples[20_000..])).unwrap();
        let whole = run_of(&samples);
        assert_eq!(merged.requests, whole.requests);
        assert_eq!(merged.summary().latency_us, whole.summary().latency_us);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.latency.value_at_quantile(q),
                whole.latency.value_at_quantile(q),
                "q={q}"
            );
        }
    }
}
