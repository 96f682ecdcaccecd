//! The UDP echo server: a verdict per datagram, and a bounded queue of
//! replies for the adapter to send.

use crate::time::Instant;
use alloc::collections::VecDeque;
use core::net::SocketAddr;

use bytes::Bytes;

use super::rate::{DEFAULT_MAX_SOURCES, Limited, RateLimit};

/// Source ports a reply is never sent to: port 0 cannot be answered, and
/// the others are the classic UDP services that answer anything (echo,
/// daytime, chargen, time), with which an echo would ping-pong forever. BSD
/// `inetd` refuses the same ports for the same reason.
pub const UDP_LOOP_PORTS: [u16; 5] = [0, 7, 13, 19, 37];

/// Settings for [`UdpEcho`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// Datagrams per second each source IP address may have echoed, in
    /// bursts of one second's worth; 0 means no limit.
    pub rate: u32,
    /// Sources the rate limit tracks at once; beyond that, new sources are
    /// dropped until some go quiet.
    pub max_sources: usize,
    /// Bytes of replies that may wait to be sent; beyond that, datagrams
    /// are dropped (as a full socket buffer would).
    pub max_queued: usize,
}

impl UdpConfig {
    /// Datagrams per second per source by default: plenty for probing a
    /// path by hand or in a test, too few (at most 6.5 MB/s per victim even
    /// with 65 KB datagrams) to make the server worth abusing as a
    /// reflector.
    pub const DEFAULT_RATE: u32 = 100;
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            rate: Self::DEFAULT_RATE,
            max_sources: DEFAULT_MAX_SOURCES,
            max_queued: 1 << 20,
        }
    }
}

/// Why a datagram was not echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// Its source sent more than the rate limit allows.
    #[error("source over its rate limit")]
    RateLimited,
    /// The rate limit's table of sources is full.
    #[error("too many sources at once")]
    TooManySources,
    /// It came from a port an echo must not answer ([`UDP_LOOP_PORTS`]).
    #[error("source port {0} is never answered (echo loops)")]
    LoopPort(u16),
    /// Replies already waiting fill the queue.
    #[error("reply queue full")]
    QueueFull,
    /// The socket would not send the reply.
    #[error("the reply could not be sent")]
    SendFailed,
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to (the datagram's source).
    pub to: SocketAddr,
    /// The datagram, whole.
    pub payload: Bytes,
}

/// Counters since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams queued to go back.
    pub echoed: u64,
    /// Bytes queued to go back.
    pub echoed_bytes: u64,
    /// Datagrams dropped by the rate limit (either reason).
    pub rate_limited: u64,
    /// Datagrams dropped for their source port.
    pub loop_ports: u64,
    /// Datagrams dropped because the queue was full or the send failed.
    pub not_sent: u64,
}

impl UdpStats {
    /// Every datagram dropped, whatever the reason.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.rate_limited + self.loop_ports + self.not_sent
    }
}

/// The UDP echo server.
///
/// Feed each datagram to [`handle_datagram`](Self::handle_datagram), then
/// send what [`poll_transmit`](Self::poll_transmit) yields; read only while
/// [`wants_read`](Self::wants_read).
#[derive(Debug, Clone)]
pub struct UdpEcho {
    config: UdpConfig,
    limit: Option<RateLimit>,
    queue: VecDeque<Transmit>,
    queued: usize,
    stats: UdpStats,
}

impl UdpEcho {
    /// A server with `config`.
    #[must_use]
    pub fn new(config: UdpConfig) -> Self {
        Self {
            config,
            limit: RateLimit::new(config.rate, config.max_sources),
            queue: VecDeque::new(),
            queued: 0,
            stats: UdpStats::default(),
        }
    }

    /// A datagram arrived: queue it back to `from`, or say why not.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), DropReason> {
        self.stats.received += 1;
        if UDP_LOOP_PORTS.contains(&from.port()) {
            self.stats.loop_ports += 1;
            return Err(DropReason::LoopPort(from.port()));
        }
        if let Some(limit) = self.limit.as_mut()
            && let Err(limited) = limit.check(from.ip(), now)
        {
            self.stats.rate_limited += 1;
            return Err(match limited {
                Limited::OverRate => DropReason::RateLimited,
                Limited::TooManySources => DropReason::TooManySources,
            });
        }
        if self.queued + payload.len() > self.config.max_queued && !self.queue.is_empty() {
            self.stats.not_sent += 1;
            return Err(DropReason::QueueFull);
        }
        self.stats.echoed += 1;
        self.stats.echoed_bytes += payload.len() as u64;
        self.queued += payload.len();
        self.queue.push_back(Transmit { to: from, payload });
        Ok(())
    }

    /// The next reply to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let transmit = self.queue.pop_front()?;
        self.queued -= transmit.payload.len();
        Some(transmit)
    }

    /// A reply from [`poll_transmit`](Self::poll_transmit) could not be
    /// sent (UDP gives no second chance: it is counted and forgotten).
    pub fn handle_send_failed(&mut self, transmit: &Transmit) {
        self.stats.not_sent += 1;
        self.stats.echoed = self.stats.echoed.saturating_sub(1);
        self.stats.echoed_bytes = self
            .stats
            .echoed_bytes
            .saturating_sub(transmit.payload.len() as u64);
    }

    /// Whether to read more: not while the reply queue is full.
    #[must_use]
    pub fn wants_read(&self) -> bool {
        self.queued < self.config.max_queued
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> UdpStats {
        self.stats
    }
}
