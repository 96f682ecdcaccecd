//! A running benchmark's live figures as Prometheus metrics
//! (`echo-client bench --metrics`): requests, errors by kind, connections
//! open and a latency histogram, for a dashboard that watches a long run.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::load::Live;

/// The latency histogram's bucket bounds, in seconds: 100 us to 10 s, the
/// range between a loopback echo and a failover.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Writes a run's [`Live`] figures at each scrape.
pub struct LoadCollector(pub Arc<Live>);

impl fmt::Debug for LoadCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoadCollector")
    }
}

impl Collector for LoadCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let live = self.0.figures();
        encoder
            .encode_descriptor(
                "echo_bench_requests",
                "Requests measured and verified (after the warm-up).",
                None,
                MetricType::Counter,
            )
            .and_then(|m| ConstCounter::new(live.requests).encode(m))?;
        let mut errors = encoder.encode_descriptor(
            "echo_bench_errors",
            "Failed requests and connections, by kind (as the report lists them).",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in &live.errors {
            let labels = [("kind", *kind)];
            ConstCounter::new(*n).encode(errors.encode_family(&labels)?)?;
        }
        let open = i64::try_from(live.connections).unwrap_or(i64::MAX);
        encoder
            .encode_descriptor(
                "echo_bench_connections_open",
                "Connections open now.",
                None,
                MetricType::Gauge,
            )
            .and_then(|m| ConstGauge::new(open).encode(m))?;
        // Per-bucket counts from HdrHistogram (nanoseconds); the sum from
        // its mean, which it keeps exactly enough for a rate of averages.
        let (mut buckets, mut count, mut sum) = (Vec::new(), 0, 0.0);
        if let Some(h) = &live.latency {
            let mut below = 0;
            for bound in LATENCY_BUCKETS {
                let upto = h.count_between(0, (bound * 1e9) as u64);
                buckets.push((bound, upto.saturating_sub(below)));
                below = upto;
            }
            count = h.len();
            buckets.push((f64::INFINITY, count.saturating_sub(below)));
            sum = h.mean() * count as f64 / 1e9;
        } else {
            buckets.extend(LATENCY_BUCKETS.iter().map(|b| (*b, 0)));
            buckets.push((f64::INFINITY, 0));
        }
        encoder
            .encode_descriptor(
                "echo_bench_latency",
                "Round-trip time of measured requests (refreshed each second).",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )
            .and_then(|mut m| m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None))?;
        Ok(())
    }
}
