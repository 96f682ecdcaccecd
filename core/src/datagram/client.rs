//! The UDP echo client: numbered datagrams out, exact accounting of what
//! comes back.
//!
//! Each datagram is `seq` (8 bytes, big-endian), the send time in
//! nanoseconds since the client started (8 bytes), then the body. An echo
//! server returns it whole, so the client needs no table of send times to
//! measure round trips, only one bit per datagram to tell firsts from
//! duplicates.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use crate::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use super::MAX_DATAGRAM;

/// Bytes of header before the body.
pub const UDP_CLIENT_HEADER: usize = 16;

/// Most datagrams one client sends (its bitmap stays within 16 MiB).
pub const UDP_MAX_COUNT: u64 = 1 << 27;

/// Settings for [`UdpEchoClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpClientConfig {
    /// Datagrams to send.
    pub count: u64,
    /// Pause between datagrams (0: back to back).
    pub interval: Duration,
    /// After the last datagram, how long to wait for replies before
    /// counting the missing ones lost.
    pub wait: Duration,
}

impl Default for UdpClientConfig {
    fn default() -> Self {
        Self {
            count: 10,
            interval: Duration::from_millis(10),
            wait: Duration::from_secs(2),
        }
    }
}

/// A [`UdpClientConfig`] or body the client cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UdpClientError {
    /// `count` is 0 or above [`UDP_MAX_COUNT`].
    #[error("datagram count {0} is out of range (1 to {UDP_MAX_COUNT})")]
    Count(u64),
    /// Header and body do not fit in one datagram.
    #[error("a {body}-byte body makes {}-byte datagrams; at most {MAX_DATAGRAM} fit", body + UDP_CLIENT_HEADER)]
    TooLarge {
        /// The body's length.
        body: usize,
    },
}

/// What the client found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpReport {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams that came back (each counted once).
    pub received: u64,
    /// Sent but never back within the wait.
    pub lost: u64,
    /// Extra copies of datagrams already back.
    pub duplicates: u64,
    /// Datagrams back after a later-sent one was already back.
    pub reordered: u64,
    /// Arrivals that were not an unchanged datagram of ours.
    pub corrupt: u64,
    /// Fastest round trip.
    pub min_rtt: Option<Duration>,
    /// Slowest round trip.
    pub max_rtt: Option<Duration>,
}

impl UdpReport {
    /// Every datagram came back, unchanged.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.lost == 0 && self.corrupt == 0 && self.received == self.sent
    }
}

/// What the client reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UdpClientEvent {
    /// A datagram came back for the first time.
    Reply {
        /// Its number (0-based, in send order).
        seq: u64,
        /// Time since it was sent.
        rtt: Duration,
        /// Its body.
        body: Bytes,
        /// A later-sent datagram was already back.
        reordered: bool,
    },
    /// Another copy of a datagram already back.
    Duplicate {
        /// Its number.
        seq: u64,
    },
    /// Something came back that is not an unchanged datagram of ours.
    Corrupt {
        /// Its length.
        len: usize,
    },
    /// Every datagram is back, or the wait after the last one ran out.
    Done(UdpReport),
}

/// Sends numbered datagrams and accounts for each reply.
///
/// Drive it like the stream client: send what
/// [`poll_transmit`](Self::poll_transmit) yields, feed replies to
/// [`handle_datagram`](Self::handle_datagram), call
/// [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout), and drain
/// [`poll_event`](Self::poll_event) after every input.
#[derive(Debug, Clone)]
pub struct UdpEchoClient {
    body: Bytes,
    config: UdpClientConfig,
    epoch: Instant,
    next_send: Instant,
    last_send: Option<Instant>,
    /// One bit per datagram sent: back already?
    seen: Vec<u64>,
    highest: Option<u64>,
    report: UdpReport,
    events: VecDeque<UdpClientEvent>,
    done: bool,
}

impl UdpEchoClient {
    /// A client that sends `config.count` datagrams carrying `body`.
    pub fn new(
        body: impl Into<Bytes>,
        config: UdpClientConfig,
        now: Instant,
    ) -> Result<Self, UdpClientError> {
        let body = body.into();
        if config.count == 0 || config.count > UDP_MAX_COUNT {
            return Err(UdpClientError::Count(config.count));
        }
        if body.len() > MAX_DATAGRAM - UDP_CLIENT_HEADER {
            return Err(UdpClientError::TooLarge { body: body.len() });
        }
        Ok(Self {
            body,
            config,
            epoch: now,
            next_send: now,
            last_send: None,
            seen: vec![0; config.count.div_ceil(64) as usize],
            highest: None,
            report: UdpReport::default(),
            events: VecDeque::new(),
            done: false,
        })
    }

    /// The next datagram to send, once its time has come.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.done || self.report.sent == self.config.count || now < self.next_send {
            return None;
        }
        let seq = self.report.sent;
        let stamp =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let mut datagram = BytesMut::with_capacity(UDP_CLIENT_HEADER + self.body.len());
        datagram.put_u64(seq);
        datagram.put_u64(stamp);
        datagram.put_slice(&self.body);
        self.report.sent += 1;
        self.last_send = Some(now);
        self.next_send = now + self.config.interval;
        Some(datagram.freeze())
    }

    /// A datagram arrived from the server.
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Instant) {
        if self.done {
            return; // too late: already counted lost
        }
        match self.parse(datagram, now) {
            None => {
                self.report.corrupt += 1;
                self.events.push_back(UdpClientEvent::Corrupt {
                    len: datagram.len(),
                });
            }
            Some((seq, _)) if self.seen(seq) => {
                self.report.duplicates += 1;
                self.events.push_back(UdpClientEvent::Duplicate { seq });
            }
            Some((seq, rtt)) => {
                self.seen[(seq / 64) as usize] |= 1 << (seq % 64);
                self.report.received += 1;
                let reordered = self.highest.is_some_and(|h| seq < h);
                self.report.reordered += u64::from(reordered);
                self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
                self.report.min_rtt = Some(self.report.min_rtt.map_or(rtt, |m| m.min(rtt)));
                self.report.max_rtt = Some(self.report.max_rtt.map_or(rtt, |m| m.max(rtt)));
                self.events.push_back(UdpClientEvent::Reply {
                    seq,
                    rtt,
                    body: self.body.clone(),
                    reordered,
                });
                if self.report.received == self.config.count {
                    self.finish();
                }
            }
        }
    }

    /// Time has come: send the next datagram, or give up on the missing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done || self.report.sent < self.config.count {
            return;
        }
        if self
            .last_send
            .is_some_and(|at| now >= at + self.config.wait)
        {
            self.finish();
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) or
    /// [`poll_transmit`](Self::poll_transmit) has something to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            None
        } else if self.report.sent < self.config.count {
            Some(self.next_send)
        } else {
            self.last_send.map(|at| at + self.config.wait)
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<UdpClientEvent> {
        self.events.pop_front()
    }

    /// Whether the final report is out.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The accounting so far (final once done).
    #[must_use]
    pub fn report(&self) -> UdpReport {
        let mut report = self.report;
        report.lost = report.sent - report.received;
        report
    }

    fn seen(&self, seq: u64) -> bool {
        self.seen[(seq / 64) as usize] & (1 << (seq % 64)) != 0
    }

    /// `(seq, rtt)` if `datagram` is one of ours, unchanged.
    fn parse(&self, datagram: &[u8], now: Instant) -> Option<(u64, Duration)> {
        let (header, body) = datagram.split_at_checked(UDP_CLIENT_HEADER)?;
        let (seq, stamp) = header.split_at(8);
        let seq = u64::from_be_bytes(seq.try_into().ok()?);
        let stamp = Duration::from_nanos(u64::from_be_bytes(stamp.try_into().ok()?));
        let sent_at = self.epoch.checked_add(stamp)?;
        if seq >= self.report.sent || body != self.body || sent_at > now {
            return None;
        }
        Some((seq, now - sent_at))
    }

    fn finish(&mut self) {
        self.done = true;
        self.events.push_back(UdpClientEvent::Done(self.report()));
    }
}
