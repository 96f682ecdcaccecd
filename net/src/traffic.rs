//! What a server has done, for a periodic stats line: connections open,
//! accepted and refused, bytes in and out, and connections lost by reason.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use echo_core::{CloseReason, Connection, Echo, EchoFactory, LostReason, ProxyError, UdpStats};

use crate::tls::HandshakeFailure;

use crate::driver::App;

/// Connections that ended, by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Losses {
    /// Closed cleanly.
    pub clean: u64,
    /// Reset by the peer.
    pub reset: u64,
    /// Idle timeout.
    pub timed_out: u64,
    /// Aborted by the server (a cut-off, a failed flush).
    pub aborted: u64,
    /// Ended by a shutdown.
    pub shut_down: u64,
    /// A socket error.
    pub io: u64,
}

impl Losses {
    /// Each count with its name, in one order: what the stats line and
    /// the metrics both print.
    #[must_use]
    pub fn by_reason(&self) -> [(&'static str, u64); 6] {
        [
            ("clean", self.clean),
            ("reset", self.reset),
            ("timed_out", self.timed_out),
            ("aborted", self.aborted),
            ("shut_down", self.shut_down),
            ("io_error", self.io),
        ]
    }
}

/// Why `haproxy:` connections were closed before their echo: the header
/// decoder's refusals ([`ProxyError::LABELS`], in that order), then no
/// header within the timeout, then a socket error while reading it.
pub const PROXY_REFUSALS: [&str; 11] = [
    ProxyError::LABELS[0],
    ProxyError::LABELS[1],
    ProxyError::LABELS[2],
    ProxyError::LABELS[3],
    ProxyError::LABELS[4],
    ProxyError::LABELS[5],
    ProxyError::LABELS[6],
    ProxyError::LABELS[7],
    ProxyError::LABELS[8],
    "timed_out",
    "io_error",
];

/// Where a refused PROXY header is counted in [`PROXY_REFUSALS`].
pub(crate) enum ProxyRefusal<'a> {
    Header(&'a ProxyError),
    TimedOut,
    Io,
}

impl ProxyRefusal<'_> {
    fn index(&self) -> usize {
        match self {
            Self::Header(error) => error.index(),
            Self::TimedOut => ProxyError::LABELS.len(),
            Self::Io => ProxyError::LABELS.len() + 1,
        }
    }
}

/// How long TLS handshakes took, from the ClientHello's first record to
/// the handshake's end, in the fixed buckets of a Prometheus histogram:
/// `counts[i]` handshakes took at most `BOUNDS[i]` seconds (and more than
/// the bound before it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeTimes {
    /// Handshakes per bucket (not cumulative).
    pub counts: [u64; 12],
    /// Their total, in microseconds.
    pub sum_micros: u64,
}

impl HandshakeTimes {
    /// The buckets' upper bounds in seconds: 0.5 ms (a resumed handshake
    /// on loopback) to 5 s, and the rest.
    pub const BOUNDS: [f64; 12] = [
        0.000_5,
        0.001,
        0.002_5,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        1.0,
        5.0,
        f64::INFINITY,
    ];

    /// How many handshakes were timed.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn bucket(took: std::time::Duration) -> usize {
        let seconds = took.as_secs_f64();
        Self::BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(Self::BOUNDS.len() - 1)
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            counts: minus(self.counts, earlier.counts),
            sum_micros: self.sum_micros.saturating_sub(earlier.sum_micros),
        }
    }
}

fn minus<const N: usize>(now: [u64; N], then: [u64; N]) -> [u64; N] {
    let mut out = now;
    for (o, t) in out.iter_mut().zip(then) {
        *o = o.saturating_sub(t);
    }
    out
}

/// A snapshot of a server's counters, or the difference of two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Connections open now.
    pub open: usize,
    /// Connections admitted.
    pub accepted: u64,
    /// Connections refused at the limit.
    pub refused: u64,
    /// Connections turned away by the access list (`--allow`/`--deny`).
    pub denied: u64,
    /// Bytes read from peers (counted with `ServerOptions::count_traffic`).
    pub bytes_in: u64,
    /// Bytes written to peers (likewise).
    pub bytes_out: u64,
    /// Connections that ended, by reason.
    pub lost: Losses,
    /// `haproxy:` connections closed for a missing, malformed or late
    /// PROXY header (the sum of `proxy_refused`).
    pub bad_headers: u64,
    /// Those, by reason, in the order of [`PROXY_REFUSALS`].
    pub proxy_refused: [u64; 11],
    /// `ssl:` connections whose TLS handshake failed or timed out (the sum
    /// of `tls_failed`).
    pub tls_failures: u64,
    /// Those, by reason, in the order of [`HandshakeFailure::LABELS`].
    pub tls_failed: [u64; 8],
    /// `ssl:` connections whose TLS handshake completed.
    pub tls_handshakes: u64,
    /// Those that resumed an earlier session (`sessionTickets=`); the
    /// rest were full handshakes.
    pub tls_resumed: u64,
    /// How long the completed handshakes took.
    pub handshake_times: HandshakeTimes,
    /// UDP datagrams, over every `udp:` endpoint.
    pub udp: UdpStats,
    /// `haproxy:` connections that were a balancer's health check (PROXY
    /// LOCAL or UNKNOWN), among the accepted.
    pub health_checks: u64,
    /// Connections the fault knobs cut off, by kind (close, reset, stall:
    /// [`echo_core::Cutoff::LABELS`]).
    pub cut_offs: [u64; 3],
}

impl Traffic {
    /// What happened between `earlier` and `self` (`open` stays as now).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let l = |a: u64, b: u64| a.saturating_sub(b);
        Self {
            open: self.open,
            accepted: l(self.accepted, earlier.accepted),
            refused: l(self.refused, earlier.refused),
            denied: l(self.denied, earlier.denied),
            bytes_in: l(self.bytes_in, earlier.bytes_in),
            bytes_out: l(self.bytes_out, earlier.bytes_out),
            bad_headers: l(self.bad_headers, earlier.bad_headers),
            proxy_refused: minus(self.proxy_refused, earlier.proxy_refused),
            tls_failures: l(self.tls_failures, earlier.tls_failures),
            tls_failed: minus(self.tls_failed, earlier.tls_failed),
            tls_handshakes: l(self.tls_handshakes, earlier.tls_handshakes),
            tls_resumed: l(self.tls_resumed, earlier.tls_resumed),
            handshake_times: self.handshake_times.since(&earlier.handshake_times),
            health_checks: l(self.health_checks, earlier.health_checks),
            cut_offs: minus(self.cut_offs, earlier.cut_offs),
            udp: UdpStats {
                received: l(self.udp.received, earlier.udp.received),
                echoed: l(self.udp.echoed, earlier.udp.echoed),
                echoed_bytes: l(self.udp.echoed_bytes, earlier.udp.echoed_bytes),
                rate_limited: l(self.udp.rate_limited, earlier.udp.rate_limited),
                loop_ports: l(self.udp.loop_ports, earlier.udp.loop_ports),
                not_sent: l(self.udp.not_sent, earlier.udp.not_sent),
            },
            lost: Losses {
                clean: l(self.lost.clean, earlier.lost.clean),
                reset: l(self.lost.reset, earlier.lost.reset),
                timed_out: l(self.lost.timed_out, earlier.lost.timed_out),
                aborted: l(self.lost.aborted, earlier.lost.aborted),
                shut_down: l(self.lost.shut_down, earlier.lost.shut_down),
                io: l(self.lost.io, earlier.lost.io),
            },
        }
    }

    /// Whether nothing happened (a difference with no activity).
    #[must_use]
    pub fn is_quiet(&self) -> bool {
        *self
            == Self {
                open: self.open,
                ..Self::default()
            }
    }
}

impl fmt::Display for Traffic {
    /// `open=2 accepted=5 refused=0 bytes_in=640 bytes_out=640`, then the
    /// losses that are not zero (`lost_clean=3 lost_reset=1`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "open={} accepted={} refused={} bytes_in={} bytes_out={}",
            self.open, self.accepted, self.refused, self.bytes_in, self.bytes_out
        )?;
        if self.denied > 0 {
            write!(f, " denied={}", self.denied)?;
        }
        if self.tls_handshakes > 0 {
            write!(
                f,
                " tls_handshakes={} tls_resumed={}",
                self.tls_handshakes, self.tls_resumed
            )?;
        }
        if self.tls_failures > 0 {
            write!(f, " tls_handshake_failures={}", self.tls_failures)?;
        }
        if self.bad_headers > 0 {
            write!(f, " bad_proxy_headers={}", self.bad_headers)?;
        }
        for (name, n) in self.lost.by_reason() {
            if n > 0 {
                write!(f, " lost_{name}={n}")?;
            }
        }
        for (name, n) in echo_core::Cutoff::LABELS.into_iter().zip(self.cut_offs) {
            if n > 0 {
                write!(f, " cut_off_{name}={n}")?;
            }
        }
        Ok(())
    }
}

/// The server's live counters. The factory's own counts (open, accepted,
/// refused, denied) are copied here whenever it changes, under its lock, so
/// that reading them (a stats line, a metrics scrape) takes no lock that
/// the connections' tasks wait on.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) open: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) denied: AtomicU64,
    cut_offs: [AtomicU64; 3],
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    lost: [AtomicU64; 6],
    proxy_refused: [AtomicU64; 11],
    tls_failed: [AtomicU64; 8],
    tls_resumed: AtomicU64,
    handshake_buckets: [AtomicU64; 12],
    handshake_micros: AtomicU64,
    /// [`UdpStats`]' fields, in their order, summed over the sockets.
    udp: [AtomicU64; 6],
    pub(crate) health_checks: AtomicU64,
}

impl Counters {
    /// Copies the factory's counts (called under its lock, after each change).
    pub(crate) fn publish(&self, factory: &EchoFactory) {
        self.open
            .store(factory.open_connections(), Ordering::Relaxed);
        self.accepted.store(factory.accepted(), Ordering::Relaxed);
        self.refused.store(factory.refused(), Ordering::Relaxed);
        self.denied.store(factory.denied(), Ordering::Relaxed);
        for (counter, n) in self.cut_offs.iter().zip(factory.cut_offs()) {
            counter.store(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn cut_offs(&self) -> [u64; 3] {
        self.cut_offs.each_ref().map(|a| a.load(Ordering::Relaxed))
    }

    /// Counts a completed TLS handshake that took `took`.
    pub(crate) fn tls_handshake(&self, took: std::time::Duration, resumed: bool) {
        if resumed {
            self.tls_resumed.fetch_add(1, Ordering::Relaxed);
        }
        self.handshake_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.handshake_buckets[HandshakeTimes::bucket(took)].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds what one UDP socket's counters (`now`) gained since `seen`.
    pub(crate) fn udp_moved(&self, now: &UdpStats, seen: &mut UdpStats) {
        let fields = |u: &UdpStats| {
            [
                u.received,
                u.echoed,
                u.echoed_bytes,
                u.rate_limited,
                u.loop_ports,
                u.not_sent,
            ]
        };
        for ((counter, now), then) in self.udp.iter().zip(fields(now)).zip(fields(seen)) {
            if now > then {
                counter.fetch_add(now - then, Ordering::Relaxed);
            }
        }
        *seen = *now;
    }

    pub(crate) fn udp(&self) -> UdpStats {
        let n = |i: usize| self.udp[i].load(Ordering::Relaxed);
        UdpStats {
            received: n(0),
            echoed: n(1),
            echoed_bytes: n(2),
            rate_limited: n(3),
            loop_ports: n(4),
            not_sent: n(5),
        }
    }

    /// Counts a connection that ended for `reason`.
    pub(crate) fn lost(&self, reason: &CloseReason) {
        let i = match reason {
            CloseReason::Lost(LostReason::Reset) => 1,
            CloseReason::Lost(LostReason::TimedOut) => 2,
            CloseReason::Lost(LostReason::Aborted) => 3,
            CloseReason::Lost(LostReason::ShutDown) => 4,
            CloseReason::Lost(_) => 5,
            _ => 0,
        };
        self.lost[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed for its PROXY header.
    pub(crate) fn bad_header(&self, why: &ProxyRefusal<'_>) {
        self.proxy_refused[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed TLS handshake.
    pub(crate) fn tls_failure(&self, why: HandshakeFailure) {
        self.tls_failed[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The TLS and PROXY counts of `traffic`, the totals summed from the
    /// counts by reason (so that the two always agree).
    pub(crate) fn fill_tls_and_proxy(&self, traffic: &mut Traffic) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        traffic.proxy_refused = self.proxy_refused.each_ref().map(load);
        traffic.bad_headers = traffic.proxy_refused.iter().sum();
        traffic.tls_failed = self.tls_failed.each_ref().map(load);
        traffic.tls_failures = traffic.tls_failed.iter().sum();
        traffic.handshake_times = HandshakeTimes {
            counts: self.handshake_buckets.each_ref().map(load),
            sum_micros: load(&self.handshake_micros),
        };
        traffic.tls_handshakes = traffic.handshake_times.count();
        traffic.tls_resumed = load(&self.tls_resumed);
    }

    pub(crate) fn losses(&self) -> Losses {
        let n = |i: usize| self.lost[i].load(Ordering::Relaxed);
        Losses {
            clean: n(0),
            reset: n(1),
            timed_out: n(2),
            aborted: n(3),
            shut_down: n(4),
            io: n(5),
        }
    }
}

/// The server side's application: counts each connection's bytes into the
/// server's counters as they move (only with `count_traffic`; otherwise the
/// driver runs with no application at all).
pub(crate) struct Metered<'a> {
    pub(crate) counters: &'a Counters,
    /// What this connection had already counted: (in, out).
    pub(crate) seen: &'a mut (u64, u64),
}

impl Metered<'_> {
    /// Adds what moved since the last count.
    pub(crate) fn count(counters: &Counters, seen: &mut (u64, u64), conn: &Connection<Echo>) {
        let (bytes_in, bytes_out) = (conn.protocol().received(), conn.transport().bytes_written());
        if bytes_in > seen.0 {
            counters
                .bytes_in
                .fetch_add(bytes_in - seen.0, Ordering::Relaxed);
        }
        if bytes_out > seen.1 {
            counters
                .bytes_out
                .fetch_add(bytes_out - seen.1, Ordering::Relaxed);
        }
        *seen = (bytes_in, bytes_out);
    }
}

impl App<Echo> for Metered<'_> {
    fn poll_app(&mut self, _cx: &mut Context<'_>, conn: &mut Connection<Echo>) -> Poll<()> {
        Self::count(self.counters, self.seen, conn);
        Poll::Pending
    }
}
