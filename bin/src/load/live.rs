//! A running benchmark's figures as a scrape reads them (`echo-client bench
//! --metrics`), so a dashboard can watch a long run (a failover, say).

use super::*;

/// How often the coordinator hands [`Live`] a fresh latency histogram.
pub(super) const LIVE_EVERY: Duration = Duration::from_secs(1);

/// A running benchmark's live figures. Counts are read from the run's own
/// counters; the latency histogram is the one the coordinator merged last
/// (every `LIVE_EVERY`), so a scrape never takes a lock a connection
/// takes.
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
        let failures = shared.failures();
        LiveFigures {
            requests: shared.measured.load(Ordering::Relaxed),
            errors: Failure::ALL
                .iter()
                .map(|f| (f.key(), failures.get(*f)))
                .collect(),
            connections: shared
                .connected
                .load(Ordering::Relaxed)
                .saturating_sub(shared.ended.load(Ordering::Relaxed)),
            latency,
        }
    }

    /// The run whose counters it reads.
    pub(super) fn watch(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(Arc::clone(shared));
    }

    /// A freshly merged latency histogram.
    pub(super) fn publish(&self, merged: Histogram<u64>) {
        if let Ok(mut latency) = self.latency.lock() {
            *latency = Some(merged);
        }
    }
}
