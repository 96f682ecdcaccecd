//! The in-memory transport a protocol writes to, with Twisted's flow control.

use alloc::vec::Vec;

use crate::address::Address;

use crate::error::ConfigError;
use crate::reason::LostReason;

/// Capacity above which a drained output buffer is freed rather than kept.
///
/// An idle connection should cost almost nothing; a busy one should not
/// reallocate on every read. Small buffers are kept, large ones released:
/// an empty buffer never holds more than this
/// ([`Transport::peak_idle_capacity`]).
pub const KEEP_DRAINED_CAPACITY: usize = 4 * 1024;

/// Flow-control thresholds for the unsent-output buffer.
///
/// Reading pauses when more than `high` bytes are unsent and resumes once the
/// buffer has drained to `low` or below. The default is Twisted's rule
/// (`FileDescriptor.bufferSize = 2**16`, resume when the buffer empties):
/// `high = 64 KiB`, `low = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaterMarks {
    /// Pause reading while more than this many bytes are unsent.
    high: usize,
    /// Resume reading once at most this many bytes are unsent.
    low: usize,
}

impl WaterMarks {
    /// Twisted's send-buffer size: 64 KiB.
    pub const DEFAULT_HIGH: usize = 64 * 1024;

    /// Builds water marks, checking `0 < high` and `low <= high`.
    ///
    /// # Errors
    /// [`ConfigError::WaterMarks`] when the pair makes no sense: a zero `high`
    /// would pause after every byte, and `low > high` would never resume.
    pub fn new(high: usize, low: usize) -> Result<Self, ConfigError> {
        if high == 0 || low > high {
            return Err(ConfigError::WaterMarks { high, low });
        }
        Ok(Self { high, low })
    }

    /// The pause threshold.
    #[must_use]
    pub fn high(&self) -> usize {
        self.high
    }

    /// The resume threshold.
    #[must_use]
    pub fn low(&self) -> usize {
        self.low
    }
}

impl Default for WaterMarks {
    fn default() -> Self {
        Self {
            high: Self::DEFAULT_HIGH,
            low: 0,
        }
    }
}

/// Whether the transport currently wants bytes from the socket.
///
/// Twisted: the transport is an `IPushProducer` for its own read side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerState {
    /// Reading is allowed.
    Producing,
    /// Reading is paused until the output buffer drains (or until
    /// [`Transport::resume_producing`] after a manual pause).
    Paused,
}

/// How the protocol (or the adapter) asked the connection to end; the
/// [`Connection`](crate::Connection) takes it and changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseRequest {
    /// Flush, then close both directions; reported lost for the reason, if
    /// any, else as a clean close.
    Flush(Option<LostReason>),
    /// Unsent output was discarded: reset, reported lost for the reason.
    Abort(LostReason),
}

/// In-memory transport handed to a [`Protocol`](crate::Protocol).
///
/// Twisted: `ITransport` / `ITCPTransport`, shaped like
/// `twisted.internet.testing.StringTransport`: writes land in a buffer that the
/// I/O adapter drains; closing is an intent the adapter carries out once the
/// buffer is flushed. It holds the buffer, the water marks and what the
/// protocol asked for; the connection's state lives in
/// [`Connection`](crate::Connection). Nothing here touches a socket.
#[derive(Debug)]
pub struct Transport {
    /// Bytes written by the protocol and not yet handed to the socket.
    out: Unsent,
    /// Bytes handed out by [`Connection::poll_transmit`](crate::Connection::poll_transmit)
    /// and not yet acknowledged: a completion runtime's kernel owns them
    /// until the write completes. They count as unsent (for the water
    /// marks and the flush), but an abort cannot take them back.
    in_flight: usize,
    /// Flow-control thresholds for `out`.
    marks: WaterMarks,
    /// Paused because `out` went above `marks.high`.
    paused_by_buffer: bool,
    /// Paused by the protocol through [`Transport::pause_producing`].
    paused_by_protocol: bool,
    /// `lose_write_connection` was called: send FIN once `out` is empty.
    write_shut_requested: bool,
    /// A close was asked for (writes are discarded from then on).
    closing: bool,
    /// The close request the connection has not taken yet.
    close_request: Option<CloseRequest>,
    /// Bytes the socket has accepted so far (`handle_written` totals).
    written: u64,
    /// The most bytes ever unsent at once.
    peak: usize,
    /// Largest capacity the buffer kept while empty.
    peak_idle: usize,
    /// Our address. Twisted: `getHost()`.
    host: Address,
    /// The other end's address. Twisted: `getPeer()`.
    peer: Address,
}

impl Transport {
    pub(crate) fn new(host: Address, peer: Address, marks: WaterMarks) -> Self {
        Self {
            out: Unsent::default(),
            in_flight: 0,
            marks,
            paused_by_buffer: false,
            paused_by_protocol: false,
            write_shut_requested: false,
            closing: false,
            close_request: None,
            written: 0,
            peak: 0,
            peak_idle: 0,
            host,
            peer,
        }
    }

    /// Twisted: `ITransport.write`.
    ///
    /// Queues `data` for sending. Never blocks, never drops, never fails. When
    /// more than `high` bytes are unsent, reading pauses; since the adapter
    /// reads only while [`Connection::wants_read`](crate::Connection::wants_read)
    /// holds, an echo protocol's buffer never exceeds `high` plus one read.
    /// Writes after the write side was shut down or the connection was asked
    /// to close are discarded (Twisted does the same) and logged at debug
    /// level.
    pub fn write(&mut self, data: &[u8]) {
        if self.closing || self.write_shut_requested {
            tracing::debug!(
                len = data.len(),
                "write after close was requested; discarded"
            );
            return;
        }
        self.out.push(data);
        self.peak = self.peak.max(self.buffered());
        if self.buffered() > self.marks.high {
            self.paused_by_buffer = true;
        }
    }

    /// Twisted: `ITransport.loseConnection`.
    ///
    /// Flushes what is pending, then closes both directions
    /// ([`Action::Close`](crate::Action::Close)). Reading stops at once.
    /// Idempotent; an abort already requested wins.
    pub fn lose_connection(&mut self) {
        self.request(CloseRequest::Flush(None));
    }

    /// Like [`lose_connection`](Self::lose_connection) (flush, then close),
    /// but the connection is reported lost for `reason`: this side ended it
    /// (a server shutting down), not the peer. Idempotent; an earlier close
    /// or abort keeps its reason.
    pub fn lose_connection_because(&mut self, reason: LostReason) {
        self.request(CloseRequest::Flush(Some(reason)));
    }

    /// Twisted: `ITCPTransport.loseWriteConnection`.
    ///
    /// Flushes what is pending, then half-closes
    /// ([`Action::ShutdownWrite`](crate::Action::ShutdownWrite)): the peer reads
    /// end-of-file while we keep reading. Idempotent.
    pub fn lose_write_connection(&mut self) {
        self.write_shut_requested = true;
    }

    /// Twisted: `ITCPTransport.abortConnection`.
    ///
    /// Discards unsent output and resets the connection
    /// ([`Action::Abort`](crate::Action::Abort)) without waiting for a flush.
    pub fn abort_connection(&mut self) {
        self.abort_because(LostReason::Aborted);
    }

    /// Ends the connection uncleanly for `reason` (an idle timeout, say).
    ///
    /// With nothing unsent this closes politely (FIN) so a live peer reads a
    /// normal end-of-file; with bytes still unsent the peer is evidently not
    /// reading, so they are discarded and the connection reset. Either way the
    /// connection is reported lost with `reason`.
    pub fn close_because(&mut self, reason: LostReason) {
        if self.buffered() == 0 {
            self.request(CloseRequest::Flush(Some(reason)));
        } else {
            self.abort_because(reason);
        }
    }

    /// Discards queued output and asks for a reset, reported as `reason`.
    /// Bytes in flight stay counted: their completions are still to come.
    pub(crate) fn abort_because(&mut self, reason: LostReason) {
        self.request(CloseRequest::Abort(reason));
        self.out = Unsent::default();
        self.paused_by_buffer = false;
    }

    /// Records a close request: an abort overrides a flush; otherwise the
    /// first request keeps its reason.
    fn request(&mut self, request: CloseRequest) {
        self.closing = true;
        match (self.close_request, request) {
            (None, _) | (Some(CloseRequest::Flush(_)), CloseRequest::Abort(_)) => {
                self.close_request = Some(request);
            }
            _ => {}
        }
    }

    /// Twisted: `IPushProducer.pauseProducing` on the transport.
    ///
    /// Stops reading until [`Transport::resume_producing`], independent of the
    /// buffer-driven pause.
    pub fn pause_producing(&mut self) {
        self.paused_by_protocol = true;
    }

    /// Twisted: `IPushProducer.resumeProducing`. Undoes
    /// [`Transport::pause_producing`]; a buffer-driven pause still holds until
    /// the buffer drains.
    pub fn resume_producing(&mut self) {
        self.paused_by_protocol = false;
    }

    /// Whether the read side is paused, by the buffer or by the protocol.
    #[must_use]
    pub fn producer_state(&self) -> ProducerState {
        if self.paused_by_buffer || self.paused_by_protocol {
            ProducerState::Paused
        } else {
            ProducerState::Producing
        }
    }

    /// Unsent bytes: queued ones and those in flight.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.out.len() + self.in_flight
    }

    /// Bytes handed to the socket by
    /// [`poll_transmit`](crate::Connection::poll_transmit) whose writes
    /// have not completed yet.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The most bytes that were ever unsent at once: what backpressure is
    /// meant to bound (`high` plus one read for an echo).
    #[must_use]
    pub fn peak_buffered(&self) -> usize {
        self.peak
    }

    /// The most capacity the output buffer kept while it was empty: what
    /// an idle connection costs after a burst drained (at most
    /// [`KEEP_DRAINED_CAPACITY`]).
    #[must_use]
    pub fn peak_idle_capacity(&self) -> usize {
        self.peak_idle
    }

    /// Bytes the socket has accepted so far on this connection.
    #[must_use]
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// The flow-control thresholds in force.
    #[must_use]
    pub fn water_marks(&self) -> WaterMarks {
        self.marks
    }

    /// Twisted: `ITransport.getHost`.
    #[doc(alias = "getHost")]
    #[must_use]
    pub fn host(&self) -> &Address {
        &self.host
    }

    /// Twisted: `ITransport.getPeer`.
    #[doc(alias = "getPeer")]
    #[must_use]
    pub fn peer(&self) -> &Address {
        &self.peer
    }

    /// Whether `lose_connection`, `abort_connection` or `close_because` was called.
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    pub(crate) fn pending(&self) -> &[u8] {
        self.out.as_slice()
    }

    /// The close request not yet taken by the connection.
    pub(crate) fn take_close_request(&mut self) -> Option<CloseRequest> {
        self.close_request.take()
    }

    pub(crate) fn write_shut_requested(&self) -> bool {
        self.write_shut_requested
    }

    /// How many bytes one write report may acknowledge: the bytes in
    /// flight while there are any (a completion reports on what was
    /// submitted), else the queued ones (a readiness adapter writes from
    /// [`pending`](Self::pending) directly).
    pub(crate) fn acknowledgeable(&self) -> usize {
        if self.in_flight > 0 {
            self.in_flight
        } else {
            self.out.len()
        }
    }

    /// Moves up to `max` queued bytes to the end of `buf`, in flight from
    /// then on. An empty `buf` taking the whole queue trades allocations
    /// with it: no byte is copied.
    pub(crate) fn transmit(&mut self, max: usize, buf: &mut Vec<u8>) -> usize {
        let n = max.min(self.out.len());
        if n > 0 {
            self.out.take_into(n, buf);
            self.in_flight += n;
        }
        n
    }

    /// The socket accepted the first `n` unsent bytes
    /// (`n <= acknowledgeable()`).
    pub(crate) fn consume(&mut self, n: usize) {
        if self.in_flight > 0 {
            self.in_flight -= n;
        } else {
            self.out.consume(n);
        }
        self.written += n as u64;
        if self.out.is_empty() {
            if self.out.capacity() > KEEP_DRAINED_CAPACITY {
                self.out = Unsent::default();
            }
            self.peak_idle = self.peak_idle.max(self.out.capacity());
        }
        if self.paused_by_buffer && self.buffered() <= self.marks.low {
            self.paused_by_buffer = false;
        }
    }
}

/// The unsent bytes: a vector read from a cursor.
///
/// Not `BytesMut`: an echo writes a chunk and the socket takes it whole,
/// and `BytesMut` paid for that on every round trip (its `reserve` moves a
/// drained view back to the allocation's start, its `advance` checks
/// bounds twice); here a drained buffer is reset by two stores, and bytes
/// are moved to the front only when a write would otherwise grow the
/// allocation while consumed bytes sit before the cursor.
#[derive(Debug, Default)]
struct Unsent {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    start: usize,
}

impl Unsent {
    fn as_slice(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// What the buffer holds in memory, consumed bytes included.
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.buf.capacity() - self.buf.len() < data.len() {
            // Reuse the consumed front before growing the allocation.
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Moves the first `n` bytes (`n <= len()`) to the end of `buf`; the
    /// whole buffer into an empty `buf` by swapping the two vectors.
    fn take_into(&mut self, n: usize, buf: &mut Vec<u8>) {
        if self.start == 0 && n == self.buf.len() && buf.is_empty() {
            core::mem::swap(&mut self.buf, buf);
            self.buf.clear();
        } else {
            buf.extend_from_slice(&self.as_slice()[..n]);
            self.consume(n);
        }
    }

    /// Drops the first `n` bytes (at most all of them).
    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}
