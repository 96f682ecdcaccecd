//! What a server has done, for a periodic stats line: connections open,
//! accepted and refused, bytes in and out, and connections lost by reason.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use echo_core::{CloseReason, Connection, Echo, EchoFactory, LostReason, UdpStats};

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
    /// PROXY header.
    pub bad_headers: u64,
    /// `ssl:` connections whose TLS handshake failed or timed out.
    pub tls_failures: u64,
    /// `ssl:` connections whose TLS handshake completed.
    pub tls_handshakes: u64,
    /// UDP datagrams, over every `udp:` endpoint.
    pub udp: UdpStats,
    /// `haproxy:` connections that were a balancer's health check (PROXY
    /// LOCAL or UNKNOWN), among the accepted.
    pub health_checks: u64,
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
            tls_failures: l(self.tls_failures, earlier.tls_failures),
            tls_handshakes: l(self.tls_handshakes, earlier.tls_handshakes),
            health_checks: l(self.health_checks, earlier.health_checks),
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
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    lost: [AtomicU64; 6],
    bad_headers: AtomicU64,
    tls_failures: AtomicU64,
    tls_handshakes: AtomicU64,
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
    }

    /// Counts a completed TLS handshake.
    pub(crate) fn tls_handshake(&self) {
        self.tls_handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tls_handshakes(&self) -> u64 {
        self.tls_handshakes.load(Ordering::Relaxed)
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
    pub(crate) fn bad_header(&self) {
        self.bad_headers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bad_headers(&self) -> u64 {
        self.bad_headers.load(Ordering::Relaxed)
    }

    pub(crate) fn tls_failure(&self) {
        self.tls_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tls_failures(&self) -> u64 {
        self.tls_failures.load(Ordering::Relaxed)
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
