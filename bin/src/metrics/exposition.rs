//! The server's counters as Prometheus metrics, read from [`Traffic`] at
//! each scrape: the same numbers as the stats line, from the same place.

use std::fmt;

use echo_net::{HandshakeFailure, HandshakeTimes, PROXY_REFUSALS, Traffic};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// Which text format a scraper gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4 (what anyone gets by default).
    Prometheus,
    /// OpenMetrics 1.0 text (asked for with `Accept: application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (with a weight above zero), else the
    /// Prometheus text format, which every scraper reads.
    #[must_use]
    pub fn from_accept(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                let refused = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of an exposition in this format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The metrics a scrape sees: a registry whose one collector reads the
/// server's counters when it is encoded.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// Metrics read from `traffic` (called once per scrape; it must not
    /// block: `EchoServer::traffic` takes no lock).
    pub fn new(traffic: impl Fn() -> Traffic + Send + Sync + 'static) -> Self {
        Self::of(TrafficCollector(Box::new(traffic)))
    }

    /// Metrics written by `collector` at each scrape, and the process's
    /// own (`process_*`).
    pub fn of(collector: impl Collector) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        registry.register_collector(Box::new(super::process::ProcessCollector));
        Self { registry }
    }

    /// The exposition now, in `format`.
    #[must_use]
    pub fn render(&self, format: Format) -> String {
        let mut text = String::new();
        let written = match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &self.registry)
            }
        };
        // Writing into a String cannot fail; an encoder's error would be a
        // bug in a name below, which the tests render.
        debug_assert!(written.is_ok(), "metrics encode: {written:?}");
        text
    }
}

/// Reads [`Traffic`] once per scrape and writes every metric from it.
struct TrafficCollector(Box<dyn Fn() -> Traffic + Send + Sync>);

impl fmt::Debug for TrafficCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrafficCollector")
    }
}

impl Collector for TrafficCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let t = (self.0)();
        let open = i64::try_from(t.open).unwrap_or(i64::MAX);
        encoder
            .encode_descriptor(
                "echo_connections_open",
                "Connections open now.",
                None,
                MetricType::Gauge,
            )
            .and_then(|m| ConstGauge::new(open).encode(m))?;
        let counters: [(&str, &str, Option<&Unit>, u64); 9] = [
            (
                "echo_connections_accepted",
                "Connections admitted (past the access list and the connection limit).",
                None,
                t.accepted,
            ),
            (
                "echo_connections_refused",
                "Connections refused at --max-connections.",
                None,
                t.refused,
            ),
            (
                "echo_connections_denied",
                "Connections turned away by --allow/--deny.",
                None,
                t.denied,
            ),
            (
                "echo_received",
                "Bytes read from peers.",
                Some(&Unit::Bytes),
                t.bytes_in,
            ),
            (
                "echo_sent",
                "Bytes echoed back to peers.",
                Some(&Unit::Bytes),
                t.bytes_out,
            ),
            (
                "echo_proxy_health_checks",
                "haproxy: connections that were a balancer's health check (PROXY LOCAL or UNKNOWN), counted among the accepted.",
                None,
                t.health_checks,
            ),
            (
                "echo_udp_datagrams_received",
                "UDP datagrams received on udp: endpoints.",
                None,
                t.udp.received,
            ),
            (
                "echo_udp_datagrams_echoed",
                "UDP datagrams queued to go back.",
                None,
                t.udp.echoed,
            ),
            (
                "echo_udp_echoed",
                "UDP bytes queued to go back.",
                Some(&Unit::Bytes),
                t.udp.echoed_bytes,
            ),
        ];
        for (name, help, unit, value) in counters {
            encoder
                .encode_descriptor(name, help, unit, MetricType::Counter)
                .and_then(|m| ConstCounter::new(value).encode(m))?;
        }
        // One family per count by reason, so that its sum is the whole
        // (connections ended: accepted minus open).
        labelled(
            &mut encoder,
            (
                "echo_connections_ended",
                "Connections that ended, by how: clean, reset (by the peer), timed_out (--idle-timeout), aborted (by the server), shut_down, io_error.",
            ),
            "reason",
            t.lost.by_reason(),
        )?;
        labelled(
            &mut encoder,
            (
                "echo_tls_handshakes",
                "TLS handshakes completed on ssl: endpoints, by kind: full, or resumed (a session ticket or ID, with sessionTickets=).",
            ),
            "kind",
            [
                ("full", t.tls_handshakes.saturating_sub(t.tls_resumed)),
                ("resumed", t.tls_resumed),
            ],
        )?;
        labelled(
            &mut encoder,
            (
                "echo_tls_handshake_failures",
                "TLS handshakes that failed on ssl: endpoints, by reason: timed_out, closed (by the peer, part way), not_tls, certificate (a client certificate missing or refused), incompatible (no version or cipher suite in common), alert (sent by the peer), protocol, io_error.",
            ),
            "reason",
            HandshakeFailure::LABELS.into_iter().zip(t.tls_failed),
        )?;
        let times = &t.handshake_times;
        let buckets: Vec<(f64, u64)> = HandshakeTimes::BOUNDS
            .into_iter()
            .zip(times.counts)
            .collect();
        encoder
            .encode_descriptor(
                "echo_tls_handshake_duration",
                "How long completed TLS handshakes took on the server, from the ClientHello's first record to the end.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )
            .and_then(|mut m| {
                #[allow(clippy::cast_precision_loss)] // microseconds: exact below 2^53
                let sum = times.sum_micros as f64 / 1e6;
                m.encode_histogram::<NoLabelSet>(sum, times.count(), &buckets, None)
            })?;
        labelled(
            &mut encoder,
            (
                "echo_proxy_headers_rejected",
                "haproxy: connections closed for their PROXY header, by reason: the decoder's (missing, line_too_long, malformed, version, command, family, too_long, short_address, bad_tlv), timed_out, io_error.",
            ),
            "reason",
            PROXY_REFUSALS.into_iter().zip(t.proxy_refused),
        )?;
        labelled(
            &mut encoder,
            (
                "echo_fault_cutoffs",
                "Connections the fault knobs cut off, by action: close (--close-after), reset (--reset-after), stall (--stall-after).",
            ),
            "action",
            echo_core::Cutoff::LABELS.into_iter().zip(t.cut_offs),
        )?;
        labelled(
            &mut encoder,
            (
                "echo_udp_datagrams_dropped",
                "UDP datagrams not echoed, by reason: rate_limited (--udp-rate), loop_port (from a port that would echo back), not_sent (queue full or the send failed).",
            ),
            "reason",
            [
                ("rate_limited", t.udp.rate_limited),
                ("loop_port", t.udp.loop_ports),
                ("not_sent", t.udp.not_sent),
            ],
        )?;
        Ok(())
    }
}

/// One counter family, `(name, help)`, with a sample per `label` value.
fn labelled(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    label: &str,
    counts: impl IntoIterator<Item = (&'static str, u64)>,
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in counts {
        ConstCounter::new(n).encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}
