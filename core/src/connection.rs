//! The sans-IO connection driver: inputs in, bytes and actions out.
//!
//! Everything that changes a connection's state lives in this file, so the
//! state machine can be read in one place.

use crate::time::Instant;
use core::net::SocketAddr;

use crate::error::UsageError;
use crate::protocol::Protocol;
use crate::reason::{CloseReason, LostReason};
use crate::transport::{CloseIntent, ProducerState, Transport, WaterMarks};

/// What the I/O adapter must do to the socket next.
///
/// Popped by [`Connection::poll_action`]. `ShutdownWrite` and `Close` are only
/// ever returned once [`Connection::pending_output`] is empty; `Abort` is
/// returned at once and means unsent output was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Half-close: send FIN, keep reading.
    ShutdownWrite,
    /// Everything was flushed: close the socket, then report
    /// [`Connection::handle_connection_lost`]. Terminal.
    Close,
    /// Reset the connection (close without flushing; RST where the platform
    /// allows), then report [`Connection::handle_connection_lost`]. Terminal.
    Abort,
}

/// One stream connection: a [`Protocol`] plus its in-memory [`Transport`].
///
/// Methods come in four kinds, after quinn-proto's `Connection`:
/// getters (`&self`), inputs (`handle_*`), application mutators
/// ([`Connection::close`], [`Connection::shut_down`], [`Connection::abort`],
/// [`Connection::close_because`], and per-protocol ones such as the echo
/// client's `send`), and outputs (`poll_*`).
///
/// After **every** input or mutation, drain before waiting on I/O again:
/// 1. write [`pending_output`](Self::pending_output) and report
///    [`handle_written`](Self::handle_written) (repeat while the socket takes
///    bytes; short writes are normal);
/// 2. [`poll_action`](Self::poll_action) until `None`;
/// 3. [`poll_event`](Self::poll_event) until `None`;
/// 4. re-arm the timer from [`poll_timeout`](Self::poll_timeout);
/// 5. read only if [`wants_read`](Self::wants_read).
///
/// `now` must not go backwards; an earlier `now` is treated as the latest
/// one seen.
#[derive(Debug)]
pub struct Connection<P: Protocol> {
    /// The protocol logic.
    protocol: P,
    /// Its buffered view of the socket.
    transport: Transport,
    /// The peer has not sent FIN yet.
    read_open: bool,
    /// `Action::ShutdownWrite` was handed out.
    shutdown_sent: bool,
    /// `Action::Close` or `Action::Abort` was handed out.
    terminal_sent: bool,
    /// Set once the connection was reported lost; `connection_lost` has run.
    lost: Option<CloseReason>,
    /// The latest `now` seen (time never goes backwards).
    last_now: Instant,
}

impl<P: Protocol> Connection<P> {
    /// Starts a connection that the socket layer has just established.
    ///
    /// Twisted: `makeConnection`: runs [`Protocol::connection_made`], which
    /// may already queue output or even close.
    pub fn new(
        protocol: P,
        host: SocketAddr,
        peer: SocketAddr,
        marks: WaterMarks,
        now: Instant,
    ) -> Self {
        let mut conn = Self {
            protocol,
            transport: Transport::new(host, peer, marks),
            read_open: true,
            shutdown_sent: false,
            terminal_sent: false,
            lost: None,
            last_now: now,
        };
        conn.protocol.connection_made(&mut conn.transport, now);
        conn
    }

    // ---- inputs -------------------------------------------------------

    /// Bytes read from the socket, in any chunking.
    ///
    /// An empty slice is ignored: end-of-file is
    /// [`handle_read_closed`](Self::handle_read_closed).
    ///
    /// # Errors
    /// [`UsageError`] if the read side is already closed, the connection is
    /// closing or closed; the bytes are then not delivered. A correct
    /// adapter reads only while [`wants_read`](Self::wants_read) holds and
    /// never sees these.
    pub fn handle_data(&mut self, data: &[u8], now: Instant) -> Result<(), UsageError> {
        let now = self.advance_time(now);
        if self.lost.is_some() {
            return Err(UsageError::Closed);
        }
        if !self.read_open {
            return Err(UsageError::AfterReadClosed);
        }
        if self.transport.is_closing() {
            return Err(UsageError::Closing);
        }
        if !data.is_empty() {
            self.protocol.data_received(data, &mut self.transport, now);
        }
        Ok(())
    }

    /// The peer closed its write side (a read returned 0). Idempotent.
    pub fn handle_read_closed(&mut self, now: Instant) {
        let now = self.advance_time(now);
        if self.lost.is_none() && self.read_open {
            self.read_open = false;
            self.protocol.read_connection_lost(&mut self.transport, now);
        }
    }

    /// The socket accepted the first `n` bytes of
    /// [`pending_output`](Self::pending_output). `n == 0` is a no-op.
    ///
    /// # Errors
    /// [`UsageError::WrittenTooMuch`] if `n` exceeds what was pending; nothing
    /// changes then.
    pub fn handle_written(&mut self, n: usize, now: Instant) -> Result<(), UsageError> {
        let now = self.advance_time(now);
        let pending = self.transport.buffered();
        if n > pending {
            return Err(UsageError::WrittenTooMuch {
                written: n,
                pending,
            });
        }
        if n > 0 {
            self.transport.consume(n);
            if self.lost.is_none() {
                self.protocol.data_written(n, &mut self.transport, now);
            }
        }
        Ok(())
    }

    /// Time has advanced to `now`. Spurious or early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance_time(now);
        if self.lost.is_none() && !self.terminal_sent {
            self.protocol.handle_timeout(&mut self.transport, now);
        }
    }

    /// The socket is gone: an error or reset, or we carried out
    /// [`Action::Close`] / [`Action::Abort`]. Runs
    /// [`Protocol::connection_lost`] exactly once; later calls are no-ops.
    ///
    /// If this connection ended itself uncleanly (an abort, an idle timeout),
    /// that cause is the reason reported, whatever the socket saw afterwards.
    pub fn handle_connection_lost(&mut self, reason: CloseReason, now: Instant) {
        let now = self.advance_time(now);
        if self.lost.is_some() {
            return;
        }
        let reason = match self.transport.local_reason() {
            Some(local) => CloseReason::Lost(local),
            None => reason,
        };
        self.lost = Some(reason);
        self.read_open = false;
        self.protocol.connection_lost(&reason, now);
    }

    // ---- application mutators ----------------------------------------

    /// Flush what is owed, then close (Twisted `loseConnection`). Reading
    /// stops at once.
    pub fn close(&mut self, now: Instant) {
        self.advance_time(now);
        self.transport.lose_connection();
    }

    /// Like [`close`](Self::close) (flush what is owed, then close), for a
    /// server that is shutting down: the connection is reported lost with
    /// [`LostReason::ShutDown`], not as closed cleanly by its peer.
    pub fn shut_down(&mut self, now: Instant) {
        self.advance_time(now);
        self.transport.lose_connection_because(LostReason::ShutDown);
    }

    /// Discards unsent output and resets the connection at once (Twisted's
    /// `abortConnection`): for an adapter whose own side failed (the echo
    /// client's standard output, say).
    pub fn abort(&mut self, now: Instant) {
        self.advance_time(now);
        self.transport.abort_connection();
    }

    /// Ends the connection for `reason`: politely (FIN) when nothing is
    /// unsent, by reset otherwise (a peer that is not reading); reported
    /// lost with `reason` either way. For an adapter's own deadlines, such
    /// as a shutdown flush that took too long.
    pub fn close_because(&mut self, reason: LostReason, now: Instant) {
        self.advance_time(now);
        self.transport.close_because(reason);
    }

    /// Runs `f` with the protocol and its transport: the hook for
    /// protocol-specific mutators (the echo client's `send` is one). Inside
    /// the crate only, so no caller can write behind a protocol's back (past
    /// the echo client's verification window, say).
    pub(crate) fn act<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut P, &mut Transport, Instant) -> R,
    ) -> R {
        let now = self.advance_time(now);
        f(&mut self.protocol, &mut self.transport, now)
    }

    // ---- outputs --------------------------------------------------------

    /// The next thing to do to the socket, if any.
    ///
    /// Call until `None` after every input. After `Close` or `Abort` nothing
    /// more is returned.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.lost.is_some() || self.terminal_sent {
            return None;
        }
        let flushed = self.transport.buffered() == 0;
        match self.transport.close_intent() {
            Some(CloseIntent::Abort) => {
                self.terminal_sent = true;
                return Some(Action::Abort);
            }
            Some(CloseIntent::Close) if flushed => {
                self.terminal_sent = true;
                return Some(Action::Close);
            }
            _ => {}
        }
        if self.transport.shutdown_write_requested() && !self.shutdown_sent && flushed {
            self.shutdown_sent = true;
            return Some(Action::ShutdownWrite);
        }
        None
    }

    /// The protocol's next event for the application, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<P::Event> {
        self.protocol.poll_event()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None`
    /// means no timer. After `handle_timeout(t)` this is `None` or later
    /// than `t`, so an event loop cannot spin on it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.lost.is_some() || self.terminal_sent {
            return None;
        }
        self.protocol.poll_timeout()
    }

    // ---- getters --------------------------------------------------------

    /// The front of the unsent buffer: write from here, then report
    /// [`handle_written`](Self::handle_written). Empty when nothing is owed
    /// (and always empty after an abort).
    #[must_use]
    pub fn pending_output(&self) -> &[u8] {
        self.transport.pending()
    }

    /// Unsent bytes.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.transport.buffered()
    }

    /// Whether the adapter should read from the socket now (level-triggered):
    /// the read side is open, no close was requested, the transport is not
    /// paused by backpressure and the protocol can take input.
    #[must_use]
    pub fn wants_read(&self) -> bool {
        self.lost.is_none()
            && self.read_open
            && !self.transport.is_closing()
            && self.transport.producer_state() == ProducerState::Producing
            && self.protocol.wants_read()
    }

    /// Read-side flow-control state (for tests and metrics).
    #[must_use]
    pub fn producer_state(&self) -> ProducerState {
        self.transport.producer_state()
    }

    /// Whether the peer's end-of-file has not been seen yet.
    #[must_use]
    pub fn is_read_open(&self) -> bool {
        self.read_open
    }

    /// Whether the connection was reported lost (the end state).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.lost.is_some()
    }

    /// Why it ended, once it has.
    #[must_use]
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.lost
    }

    /// Our address. Twisted: `getHost()`.
    #[doc(alias = "getHost")]
    #[must_use]
    pub fn host(&self) -> SocketAddr {
        self.transport.host()
    }

    /// The peer's address. Twisted: `getPeer()`.
    #[doc(alias = "getPeer")]
    #[must_use]
    pub fn peer(&self) -> SocketAddr {
        self.transport.peer()
    }

    /// The protocol, for its own getters.
    #[must_use]
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// The transport, for its getters.
    #[must_use]
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    fn advance_time(&mut self, now: Instant) -> Instant {
        if now > self.last_now {
            self.last_now = now;
        }
        self.last_now
    }
}
