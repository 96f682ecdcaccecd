//! A per-source rate limit for datagrams.
//!
//! UDP echo answers whoever the source address claims to be, so a spoofed
//! source turns the server into a reflector aimed at a victim, and two echo
//! services pointed at each other bounce one datagram forever. Each source
//! IP address therefore gets `rate` datagrams per second, in bursts of up
//! to one second's worth; the excess is dropped.
//!
//! The algorithm is GCRA (the "virtual scheduling" form of a token bucket):
//! one deadline per source, no floating point, and a source that has
//! stayed within its rate for a second holds no state at all, so the table
//! only ever holds sources that are sending now.

use alloc::collections::BTreeMap;
use core::net::IpAddr;
use core::time::Duration;

use crate::time::Instant;

/// Sources tracked at once unless configured otherwise.
pub(crate) const DEFAULT_MAX_SOURCES: usize = 65_536;

/// How often a full table may be swept for sources that went quiet (a
/// sweep walks the whole table, so it must not run per datagram).
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Why the limit said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// This source is over its rate.
    OverRate,
    /// Too many sources are over-active at once to track another one.
    TooManySources,
}

/// Per-source GCRA state: a table of "theoretical arrival times".
#[derive(Debug, Clone)]
pub(crate) struct RateLimit {
    /// Time one datagram uses up.
    interval: Duration,
    /// How far ahead of now a source's deadline may run (burst - 1
    /// intervals).
    tolerance: Duration,
    /// Each active source's next theoretical arrival time.
    sources: BTreeMap<IpAddr, Instant>,
    max_sources: usize,
    last_sweep: Option<Instant>,
}

impl RateLimit {
    /// `rate` datagrams per second per source, bursts of `rate`; `None` when
    /// `rate` is 0 (no limit).
    #[must_use]
    pub(crate) fn new(rate: u32, max_sources: usize) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let interval = Duration::from_secs(1) / rate;
        Some(Self {
            interval,
            tolerance: Duration::from_secs(1).saturating_sub(interval),
            sources: BTreeMap::new(),
            max_sources: max_sources.max(1),
            last_sweep: None,
        })
    }

    /// Whether a datagram from `source` at `now` is within the limit; if it
    /// is, it is counted.
    pub(crate) fn check(&mut self, source: IpAddr, now: Instant) -> Result<(), Limited> {
        if !self.sources.contains_key(&source) && self.sources.len() >= self.max_sources {
            self.sweep(now);
            if self.sources.len() >= self.max_sources {
                return Err(Limited::TooManySources);
            }
        }
        let tat = self.sources.entry(source).or_insert(now);
        let start = (*tat).max(now);
        if start.saturating_duration_since(now) > self.tolerance {
            return Err(Limited::OverRate);
        }
        *tat = start + self.interval;
        Ok(())
    }

    /// Forgets sources whose deadline has passed: they owe nothing, and a
    /// fresh entry would behave the same.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.sources.retain(|_, tat| *tat > now);
    }
}
