//! The sans-IO connection driver: inputs in, bytes and actions out.
//!
//! Everything that changes a connection's state lives in this file, so the
//! state machine can be read in one place. The protocol only *asks* (through
//! its [`Transport`]: write, close, abort, half-close, pause); after every
//! call into the protocol the connection takes those requests and moves its
//! [`State`] by the table on [`Connection`].

use crate::time::Instant;
use alloc::vec::Vec;
use core::time::Duration;

use crate::address::Address;
use crate::error::UsageError;
use crate::protocol::Protocol;
use crate::reason::{CloseReason, LostReason};
use crate::transport::{CloseRequest, ProducerState, Transport, WaterMarks};

/// What the I/O adapter must do to the socket next.
///
/// Popped by [`Connection::poll_action`]. `ShutdownWrite` and `Close` are only
/// ever returned once [`Connection::pending_output`] is empty. `Close` and
/// `Abort` complete themselves: when one is handed out the connection is
/// already closed with its reason and [`Protocol::connection_lost`] has run,
/// so the adapter only carries it out on the socket (and never reports it
/// back through [`Connection::handle_connection_lost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Half-close: send FIN, keep reading.
    ShutdownWrite,
    /// Everything was flushed: close the socket. If the peer may still be
    /// sending ([`Connection::is_read_open`]), close lingering (half-close,
    /// then read and discard for a while) so that its unread bytes do not
    /// turn the close into a reset that destroys the last echoes in flight.
    Close,
    /// Reset the connection (close without flushing; RST where the platform
    /// allows: `SO_LINGER` 0). Unsent output was discarded.
    Abort,
}

/// What became of bytes given to [`Connection::handle_data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// The protocol took them.
    Delivered,
    /// Reading had already stopped: the connection is closing or closed
    /// (a local close, an abort, a shutdown). A readiness adapter reads
    /// only while [`Connection::wants_read`] holds and never sees this; on
    /// a completion runtime a read posted before the close completes after
    /// it, which is normal, and its bytes are dropped as a close drops
    /// what the peer sends late.
    Discarded,
}

/// The target of the trace events that name every arc of the state table
/// taken and every action handed out: a simulation counts them to show
/// that its cases reach each one. `trace` level, so that nobody listening
/// costs one level check.
pub const TABLE: &str = "echo_core::table";

/// Where a connection is in its life (see the table on [`Connection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Established: reading (unless flow control pauses it) and writing.
    Open,
    /// Asked to close: reading has stopped, what is owed is being flushed;
    /// once it is, the connection closes with `reason`. With a
    /// `flush_deadline`, a flush still unfinished then is cut off by a reset.
    Closing {
        /// What the close will be reported as.
        reason: CloseReason,
        /// When an unfinished flush is given up ([`Connection::shut_down`]).
        flush_deadline: Option<Instant>,
    },
    /// The end: [`Protocol::connection_lost`] has run with this reason.
    Closed(CloseReason),
}

/// One stream connection: a [`Protocol`] plus its in-memory [`Transport`].
///
/// Methods come in four kinds, after quinn-proto's `Connection`:
/// getters (`&self`), inputs (`handle_*`), application mutators
/// ([`close`](Self::close), [`shut_down`](Self::shut_down),
/// [`abort`](Self::abort), [`close_because`](Self::close_because), and
/// per-protocol ones such as the echo client's `send`), and outputs
/// (`poll_*`).
///
/// After **every** input or mutation, drain before waiting on I/O again:
/// 1. write [`pending_output`](Self::pending_output) and report
///    [`handle_written`](Self::handle_written) (repeat while the socket takes
///    bytes; short writes are normal);
/// 2. [`poll_action`](Self::poll_action) until `None` (before looking at
///    [`is_closed`](Self::is_closed): a closed connection may still owe its
///    `Close` or `Abort`);
/// 3. [`poll_event`](Self::poll_event) until `None`;
/// 4. re-arm the timer from [`poll_timeout`](Self::poll_timeout);
/// 5. read only if [`wants_read`](Self::wants_read).
///
/// # States
/// The life of a connection is one [`State`]; its two directions are two
/// flags beside it (the read side closes on the peer's FIN, the write side on
/// our half-close), as in h11. Every transition:
///
/// | from | on | to | action out |
/// |---|---|---|---|
/// | `Open` | [`close`](Self::close), the protocol's `lose_connection` | `Closing` (clean) | |
/// | `Open` | [`shut_down`](Self::shut_down) | `Closing` (lost: shut down), flush deadline | |
/// | `Open` | [`close_because`](Self::close_because) with nothing unsent | `Closing` (lost: reason) | |
/// | `Closing` | [`shut_down`](Self::shut_down) | `Closing`, the earlier flush deadline | |
/// | `Closing` | output flushed | `Closed` (its reason) | `Close` |
/// | `Open`, `Closing` | [`abort`](Self::abort), `close_because` with bytes unsent, the flush deadline passing | `Closed` (lost: reason), output discarded | `Abort` |
/// | `Open`, `Closing` | [`handle_connection_lost`](Self::handle_connection_lost) | `Closed` (the socket's reason, unless `Closing` had its own) | |
/// | `Closed` | anything | `Closed` | |
///
/// | direction | on | effect |
/// |---|---|---|
/// | read | [`handle_read_closed`](Self::handle_read_closed) | closed; the protocol's `read_connection_lost` runs (by default it closes) |
/// | write | the protocol's `lose_write_connection`, output flushed, `Open` | closed | `ShutdownWrite` |
///
/// Reading happens only in `Open`; the protocol's timers run until `Closed`.
///
/// `now` must not go backwards; an earlier `now` is treated as the latest
/// one seen.
#[derive(Debug)]
pub struct Connection<P: Protocol> {
    /// The protocol logic.
    protocol: P,
    /// Its buffered view of the socket and its requests.
    transport: Transport,
    /// Where the connection is in its life.
    state: State,
    /// The peer has not sent FIN yet.
    read_open: bool,
    /// Our FIN was decided (`Action::ShutdownWrite` is or was owed).
    write_shut: bool,
    /// `Action::ShutdownWrite` is owed to the adapter.
    shutdown_owed: bool,
    /// `Action::Close` or `Action::Abort` is owed to the adapter.
    terminal_owed: Option<Action>,
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
        host: impl Into<Address>,
        peer: impl Into<Address>,
        marks: WaterMarks,
        now: Instant,
    ) -> Self {
        let mut conn = Self {
            protocol,
            transport: Transport::new(host.into(), peer.into(), marks),
            state: State::Open,
            read_open: true,
            write_shut: false,
            shutdown_owed: false,
            terminal_owed: None,
            last_now: now,
        };
        conn.protocol.connection_made(&mut conn.transport, now);
        conn.settle(now);
        conn
    }

    // ---- inputs -------------------------------------------------------

    /// Bytes read from the socket, in any chunking.
    ///
    /// An empty slice is ignored: end-of-file is
    /// [`handle_read_closed`](Self::handle_read_closed). Bytes that arrive
    /// while reading is paused (reads a completion runtime posted ahead)
    /// are delivered: with `k` reads in flight an echo holds at most the
    /// high-water mark plus `k` reads. Bytes that arrive once the
    /// connection is closing or closed are [`Received::Discarded`].
    ///
    /// # Errors
    /// [`UsageError::AfterReadClosed`] if the peer's end-of-file was
    /// already reported: no socket delivers bytes after it, so the adapter
    /// mixed up its reads.
    pub fn handle_data(&mut self, data: &[u8], now: Instant) -> Result<Received, UsageError> {
        let now = self.advance_time(now);
        if !self.read_open && !matches!(self.state, State::Closed(_)) {
            return Err(UsageError::AfterReadClosed);
        }
        if self.state != State::Open {
            tracing::debug!(len = data.len(), "data after reading stopped; discarded");
            return Ok(Received::Discarded);
        }
        if !data.is_empty() {
            self.protocol.data_received(data, &mut self.transport, now);
            self.settle(now);
        }
        Ok(Received::Delivered)
    }

    /// The peer closed its write side (a read returned 0). Idempotent.
    pub fn handle_read_closed(&mut self, now: Instant) {
        let now = self.advance_time(now);
        if !matches!(self.state, State::Closed(_)) && self.read_open {
            self.read_open = false;
            self.protocol.read_connection_lost(&mut self.transport, now);
            self.settle(now);
        }
    }

    /// The socket accepted the next `n` bytes: the front of what is in
    /// flight ([`poll_transmit`](Self::poll_transmit)) while anything is,
    /// else the front of [`pending_output`](Self::pending_output).
    /// `n == 0` is a no-op. A completion that arrives after an abort or a
    /// close is accepted: the kernel held those bytes, the abort could not
    /// take them back.
    ///
    /// # Errors
    /// [`UsageError::WrittenTooMuch`] if `n` exceeds what was in flight (or,
    /// with nothing in flight, pending); nothing changes then.
    pub fn handle_written(&mut self, n: usize, now: Instant) -> Result<(), UsageError> {
        let now = self.advance_time(now);
        let pending = self.transport.acknowledgeable();
        if n > pending {
            return Err(UsageError::WrittenTooMuch {
                written: n,
                pending,
            });
        }
        if n > 0 {
            self.transport.consume(n);
            if !matches!(self.state, State::Closed(_)) {
                self.protocol.data_written(n, &mut self.transport, now);
                self.settle(now);
            }
        }
        Ok(())
    }

    /// Time has advanced to `now`. Spurious or early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance_time(now);
        match self.state {
            State::Closed(_) => return,
            State::Closing {
                flush_deadline: Some(at),
                ..
            } if now >= at => {
                tracing::debug!(
                    unsent = self.transport.buffered(),
                    "flush did not finish in time; resetting"
                );
                self.transport.abort_because(LostReason::ShutDown);
                self.settle(now);
                return;
            }
            _ => {}
        }
        self.protocol.handle_timeout(&mut self.transport, now);
        self.settle(now);
    }

    /// The socket is gone: an error, a reset, or a close the adapter did not
    /// ask for. Runs [`Protocol::connection_lost`] exactly once; later calls
    /// (and calls after [`Action::Close`] or [`Action::Abort`]) are no-ops.
    ///
    /// A connection that was closing for a cause of its own (a server
    /// shutting down, an idle timeout) reports that cause, whatever the
    /// socket saw afterwards.
    pub fn handle_connection_lost(&mut self, reason: CloseReason, now: Instant) {
        let now = self.advance_time(now);
        let reason = match self.state {
            State::Closed(_) => return,
            State::Closing {
                reason: local @ CloseReason::Lost(_),
                ..
            } => local,
            _ => reason,
        };
        self.lose(reason, None, now);
    }

    // ---- application mutators ----------------------------------------

    /// Flush what is owed, then close (Twisted `loseConnection`). Reading
    /// stops at once.
    pub fn close(&mut self, now: Instant) {
        let now = self.advance_time(now);
        self.transport.lose_connection();
        self.settle(now);
    }

    /// Like [`close`](Self::close) (flush what is owed, then close), for a
    /// server that is shutting down: the protocol first writes what it
    /// still holds back ([`Protocol::shutting_down`]), the connection is
    /// reported lost with
    /// [`LostReason::ShutDown`], not as closed cleanly by its peer, and a
    /// flush still unfinished after `flush_timeout` (a peer that stopped
    /// reading) is cut off by a reset. The deadline holds also for a
    /// connection that was already closing; [`poll_timeout`](Self::poll_timeout)
    /// includes it.
    pub fn shut_down(&mut self, now: Instant, flush_timeout: Duration) {
        let now = self.advance_time(now);
        if matches!(self.state, State::Open) {
            self.protocol.shutting_down(&mut self.transport, now);
        }
        self.transport.lose_connection_because(LostReason::ShutDown);
        self.settle(now);
        if let State::Closing { flush_deadline, .. } = &mut self.state
            && let Some(at) = now.checked_add(flush_timeout)
        {
            *flush_deadline = Some(flush_deadline.map_or(at, |earlier| earlier.min(at)));
        }
    }

    /// Discards unsent output and resets the connection at once (Twisted's
    /// `abortConnection`): for an adapter whose own side failed (the echo
    /// client's standard output, say).
    pub fn abort(&mut self, now: Instant) {
        let now = self.advance_time(now);
        self.transport.abort_connection();
        self.settle(now);
    }

    /// Ends the connection for `reason`: politely (FIN) when nothing is
    /// unsent, by reset otherwise (a peer that is not reading); reported
    /// lost with `reason` either way. For an adapter's own deadlines.
    pub fn close_because(&mut self, reason: LostReason, now: Instant) {
        let now = self.advance_time(now);
        self.transport.close_because(reason);
        self.settle(now);
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
        let result = f(&mut self.protocol, &mut self.transport, now);
        self.settle(now);
        result
    }

    // ---- outputs --------------------------------------------------------

    /// The next thing to do to the socket, if any.
    ///
    /// Call until `None` after every input. After `Close` or `Abort` nothing
    /// more is returned.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = if let Some(terminal) = self.terminal_owed.take() {
            self.shutdown_owed = false;
            terminal
        } else if core::mem::take(&mut self.shutdown_owed) {
            Action::ShutdownWrite
        } else {
            return None;
        };
        tracing::trace!(target: TABLE, ?action);
        Some(action)
    }

    /// Whether [`poll_action`](Self::poll_action) has something to return
    /// (level-triggered): an adapter can keep moving bytes without
    /// returning to its action loop while this is `false`.
    #[must_use]
    pub fn has_action(&self) -> bool {
        self.terminal_owed.is_some() || self.shutdown_owed
    }

    /// The protocol's next event for the application, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<P::Event> {
        self.protocol.poll_event()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the
    /// protocol's timer or the shutdown flush deadline; `None` means no
    /// timer. After `handle_timeout(t)` this is `None` or later than `t`, so
    /// an event loop cannot spin on it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let flush_deadline = match self.state {
            State::Closed(_) => return None,
            State::Open => None,
            State::Closing { flush_deadline, .. } => flush_deadline,
        };
        match (self.protocol.poll_timeout(), flush_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- getters --------------------------------------------------------

    /// Where the connection is in its life.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// The queued output, borrowed, for a readiness adapter: write from
    /// here, then report [`handle_written`](Self::handle_written). Empty
    /// when nothing is owed (and always empty after an abort). The buffer
    /// may move on the next input, so nothing may keep a pointer into it
    /// (a completion runtime takes [`poll_transmit`](Self::poll_transmit)).
    #[must_use]
    pub fn pending_output(&self) -> &[u8] {
        self.transport.pending()
    }

    /// Moves up to `max` queued bytes to the end of `buf`, which the caller
    /// owns (and may hand to a kernel) until the write completes; they are
    /// in flight until [`handle_written`](Self::handle_written)
    /// acknowledges them, still counted by [`buffered`](Self::buffered).
    /// Returns how many were moved. An empty `buf` that takes the whole
    /// queue swaps allocations with it instead of copying (keep reusing
    /// one per connection). A short write is the caller's to resubmit from
    /// its own buffer; bytes queued later come after the ones in flight.
    /// After quinn-proto's `poll_transmit(now, max, buf)`; Twisted's IOCP
    /// reactor keeps its `dataBuffer` apart from new writes the same way.
    pub fn poll_transmit(&mut self, max: usize, buf: &mut Vec<u8>) -> usize {
        self.transport.transmit(max, buf)
    }

    /// Unsent bytes: queued and in flight.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.transport.buffered()
    }

    /// Bytes handed out by [`poll_transmit`](Self::poll_transmit) whose
    /// writes have not completed.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.transport.in_flight()
    }

    /// Whether the adapter should read from the socket now (level-triggered):
    /// the connection is open with its read side open, the transport is not
    /// paused by backpressure and the protocol can take input.
    #[must_use]
    pub fn wants_read(&self) -> bool {
        self.state == State::Open
            && self.read_open
            && self.transport.producer_state() == ProducerState::Producing
            && self.protocol.wants_read()
    }

    /// Whether inputs need the current time ([`Protocol::wants_time`]).
    /// While `false`, an adapter may give
    /// [`handle_data`](Self::handle_data),
    /// [`handle_written`](Self::handle_written) and
    /// [`handle_read_closed`](Self::handle_read_closed)
    /// [`latest_time`](Self::latest_time) instead of reading its clock;
    /// timeouts, closes and shutdowns still take the real time.
    #[must_use]
    pub fn wants_time(&self) -> bool {
        self.protocol.wants_time()
    }

    /// The latest `now` this connection was given.
    #[must_use]
    pub fn latest_time(&self) -> Instant {
        self.last_now
    }

    /// Read-side flow-control state (for tests and metrics).
    #[must_use]
    pub fn producer_state(&self) -> ProducerState {
        self.transport.producer_state()
    }

    /// Whether the peer's end-of-file has not been seen yet (so, after
    /// [`Action::Close`], whether the peer may still be sending).
    #[must_use]
    pub fn is_read_open(&self) -> bool {
        self.read_open
    }

    /// Whether the connection is [`State::Closed`] (the end state).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Why it ended, once it has.
    #[must_use]
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.state {
            State::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Our address. Twisted: `getHost()`.
    #[doc(alias = "getHost")]
    #[must_use]
    pub fn host(&self) -> &Address {
        self.transport.host()
    }

    /// The peer's address. Twisted: `getPeer()`.
    #[doc(alias = "getPeer")]
    #[must_use]
    pub fn peer(&self) -> &Address {
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

    // ---- transitions ----------------------------------------------------

    /// Takes the protocol's requests and applies the table above: called
    /// after every call into the protocol and every mutation.
    fn settle(&mut self, now: Instant) {
        if let Some(request) = self.transport.take_close_request() {
            match (self.state, request) {
                (State::Closed(_), _) => {}
                (_, CloseRequest::Abort(reason)) => {
                    self.lose(CloseReason::Lost(reason), Some(Action::Abort), now);
                }
                (State::Open, CloseRequest::Flush(reason)) => {
                    tracing::trace!(target: TABLE, arc = "Open -> Closing");
                    self.state = State::Closing {
                        reason: reason.map_or(CloseReason::Done, CloseReason::Lost),
                        flush_deadline: None,
                    };
                }
                // Already closing: the first close keeps its reason.
                (State::Closing { .. }, CloseRequest::Flush(_)) => {}
            }
        }
        let flushed = self.transport.buffered() == 0;
        match self.state {
            State::Closing { reason, .. } if flushed => {
                self.lose(reason, Some(Action::Close), now);
            }
            State::Open if flushed && !self.write_shut && self.transport.write_shut_requested() => {
                self.write_shut = true;
                self.shutdown_owed = true;
            }
            _ => {}
        }
    }

    /// Enters `Closed`, owing the adapter `action` if it must still act on
    /// the socket, and tells the protocol (exactly once).
    fn lose(&mut self, reason: CloseReason, action: Option<Action>, now: Instant) {
        tracing::trace!(
            target: TABLE,
            arc = match self.state {
                State::Open => "Open -> Closed",
                _ => "Closing -> Closed",
            },
            reason = reason.label(),
        );
        self.state = State::Closed(reason);
        self.terminal_owed = action;
        self.protocol.connection_lost(&reason, now);
        // Requests made from inside `connection_lost` come too late.
        let _ = self.transport.take_close_request();
    }

    fn advance_time(&mut self, now: Instant) -> Instant {
        if now > self.last_now {
            self.last_now = now;
        }
        self.last_now
    }
}
