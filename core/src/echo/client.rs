//! The echo client: sends bytes, checks the echo byte for byte, and closes
//! once every byte came back (or half-closes at the end of its input, when
//! asked to).

use alloc::collections::VecDeque;
use core::time::Duration;

use crate::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::connection::Connection;
use crate::protocol::Protocol;
use crate::reason::{CloseReason, LostReason};
use crate::transport::Transport;

/// Default cap on echoed bytes waiting for the application
/// ([`ClientEvent::Echoed`] not yet polled) before reading pauses.
pub const DEFAULT_MAX_UNDELIVERED: usize = 256 * 1024;

/// Settings for [`EchoClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Fail with [`EchoError::TimedOut`] when an echo is owed and nothing
    /// moved (no byte sent, none received) for this long. `None`: wait forever.
    pub idle_timeout: Option<Duration>,
    /// Stop reading while this many echoed bytes wait for the application.
    pub max_undelivered: usize,
    /// Send FIN as soon as the input ends, before the echo is complete
    /// (`nc -N`), instead of closing once every byte came back. Off by
    /// default: many servers (Twisted's default `Protocol`, ncat before
    /// 7.96 with `--exec`, socat `EXEC:`) treat FIN as the end of the
    /// connection and drop the echo they still owe. On, it tests how a
    /// server or proxy handles a half-closed connection.
    pub half_close: bool,
    /// The server starts with a one-line banner naming its back end
    /// (`echo-server --banner`): read that line first (reported as
    /// [`ClientEvent::Banner`]), then verify the echo of everything after it.
    pub banner: bool,
}

/// The longest banner line taken, newline excluded.
pub const MAX_BANNER: usize = 256;

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Some(Duration::from_secs(30)),
            max_undelivered: DEFAULT_MAX_UNDELIVERED,
            half_close: false,
            banner: false,
        }
    }
}

/// Why an echo failed: the server (or the network) did something wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EchoError {
    /// A byte came back different from the one sent.
    #[error(
        "echo mismatch at byte offset {offset}: sent {expected:#04x}, received {found:#04x}{}",
        mismatch_hint(*offset, *found)
    )]
    Mismatch {
        /// Offset of the first differing byte in the stream.
        offset: u64,
        /// The byte we sent there.
        expected: u8,
        /// The byte that came back.
        found: u8,
    },
    /// With [`ClientConfig::banner`]: no newline in the server's first
    /// [`MAX_BANNER`] bytes.
    #[error("no banner line in the server's first {MAX_BANNER} bytes (does the server send one?)")]
    NoBanner,
    /// The server sent bytes beyond what we had sent.
    #[error("server sent unexpected bytes beyond offset {offset} (only {offset} bytes were sent)")]
    Unexpected {
        /// Bytes sent (and echoed correctly) before the extra ones.
        offset: u64,
    },
    /// The server closed before echoing everything.
    #[error("truncated: sent {sent} bytes, received {received} before the server closed")]
    Truncated {
        /// Bytes we sent.
        sent: u64,
        /// Bytes that came back (all correct).
        received: u64,
    },
    /// Nothing moved for the idle timeout while an echo was owed.
    #[error("timed out: no progress for {idle:?} (sent {sent} bytes, received {received})")]
    TimedOut {
        /// The timeout in force.
        idle: Duration,
        /// Bytes we sent.
        sent: u64,
        /// Bytes that came back.
        received: u64,
    },
    /// The connection broke before the echo completed.
    #[error("connection {reason} (sent {sent} bytes, received {received})")]
    ConnectionLost {
        /// What the socket reported.
        reason: CloseReason,
        /// Bytes we sent.
        sent: u64,
        /// Bytes that came back.
        received: u64,
    },
}

/// The likely cause of a mismatch at the very first byte, where a few
/// bytes give it away; empty otherwise.
fn mismatch_hint(offset: u64, found: u8) -> &'static str {
    match (offset, found) {
        (0, 0x15) => " (0x15 starts a TLS alert: the server speaks TLS; connect with tls:)",
        (0, 0x16) => " (0x16 starts a TLS handshake: the server speaks TLS; connect with tls:)",
        (0, b'P' | 0x0d) => {
            " (an echoed PROXY header? the server expects none: leave out --send-proxy)"
        }
        _ => "",
    }
}

/// The application tried to send when it cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Input was already finished (or a whole message was given up front).
    #[error("input already finished")]
    Finished,
    /// The echo already ended (done or failed); nothing more can be sent.
    #[error("the echo has already ended")]
    Ended,
}

/// What the echo client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Verified echoed bytes, in order (for standard output, say).
    Echoed(Bytes),
    /// Terminal: input finished and every byte came back exactly.
    Done {
        /// Bytes sent.
        sent: u64,
        /// Bytes received (equal to `sent`).
        received: u64,
    },
    /// Terminal: the echo failed.
    Failed(EchoError),
    /// The server's banner line (with [`ClientConfig::banner`]): the name
    /// of the back end that answered, before any echo.
    Banner(Bytes),
}

/// Where the bytes to send come from.
#[derive(Debug)]
enum Input {
    /// A whole message known up front; the part not yet queued.
    Message(Bytes),
    /// The application feeds bytes with [`Connection::send`].
    Stream {
        /// [`Connection::finish`] was called.
        finished: bool,
    },
}

/// Sends bytes and verifies the echo byte for byte as it arrives, in
/// whatever chunks; closes once the input ended and every byte came back.
///
/// No FIN goes out before the echo is complete, unless
/// [`ClientConfig::half_close`] asks for one at the end of the input: a
/// server may take a FIN as the end of the whole connection and drop what it
/// still owes, which would fail an echo that nothing else was wrong with.
///
/// It reads while it writes, so it cannot deadlock against a server that
/// applies backpressure, and holds at most the transport's high-water mark of
/// unverified bytes: input beyond that waits (see [`Connection::wants_input`]).
/// Exactly one terminal event ([`ClientEvent::Done`] or
/// [`ClientEvent::Failed`]) is produced; a failure aborts the connection.
#[derive(Debug)]
pub struct EchoClient {
    /// Settings.
    config: ClientConfig,
    /// The bytes to send.
    input: Input,
    /// Accepted but not yet verified bytes (queued or in flight).
    window: BytesMut,
    /// Max `window` length: the transport's high-water mark.
    window_limit: usize,
    /// Bytes accepted from the input.
    accepted: u64,
    /// Bytes the socket took.
    sent: u64,
    /// Bytes verified.
    received: u64,
    /// Echoed bytes in `events` not yet polled.
    undelivered: usize,
    /// Last time a byte moved either way (from `connection_made` on).
    last_progress: Option<Instant>,
    /// Done or Failed was reported.
    ended: bool,
    /// Reading paused because the application held too much echo, and it
    /// has since taken some: the progress timer restarts at the next tick.
    resumed: bool,
    /// With a banner: its bytes so far, until its newline.
    banner: Option<BytesMut>,
    /// Events not yet polled.
    events: VecDeque<ClientEvent>,
}

impl EchoClient {
    /// A client that sends `message` and closes once its echo is complete.
    #[must_use]
    pub fn message(message: impl Into<Bytes>, config: ClientConfig) -> Self {
        Self::with_input(Input::Message(message.into()), config)
    }

    /// A client fed by the application through [`Connection::send`] and
    /// [`Connection::finish`].
    #[must_use]
    pub fn streaming(config: ClientConfig) -> Self {
        Self::with_input(Input::Stream { finished: false }, config)
    }

    fn with_input(input: Input, config: ClientConfig) -> Self {
        Self {
            config,
            input,
            window: BytesMut::new(),
            window_limit: 0,
            accepted: 0,
            sent: 0,
            received: 0,
            undelivered: 0,
            last_progress: None,
            ended: false,
            resumed: false,
            banner: config.banner.then(BytesMut::new),
            events: VecDeque::new(),
        }
    }

    /// Bytes the socket has taken.
    #[must_use]
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes echoed back and verified.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether Done or Failed was reported.
    #[must_use]
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    fn headroom(&self) -> usize {
        self.window_limit.saturating_sub(self.window.len())
    }

    /// The room new input may take now. Once the window is in use, it
    /// refills only when at least half of it is free: topping it up byte by
    /// byte as echoes trickle back would send ever smaller writes, each its
    /// own segment (the silly window syndrome; the simulation found a 107 KB
    /// echo crawling along in 1-byte segments).
    fn refill_room(&self) -> usize {
        let room = self.headroom();
        if self.window.is_empty() || room >= self.window_limit.div_ceil(2) {
            room
        } else {
            0
        }
    }

    fn input_finished(&self) -> bool {
        match &self.input {
            Input::Message(rest) => rest.is_empty(),
            Input::Stream { finished } => *finished,
        }
    }

    /// Queues up to the headroom of `data`; returns how much was taken.
    fn accept(&mut self, data: &[u8], transport: &mut Transport) -> usize {
        let n = data.len().min(self.refill_room());
        if n > 0 {
            transport.write(&data[..n]);
            self.window.extend_from_slice(&data[..n]);
            self.accepted += n as u64;
        }
        n
    }

    /// Moves message bytes into the window while there is room; after the
    /// last byte (or once streaming input is finished), half-closes if asked
    /// to; once everything is verified, reports Done (and closes).
    fn pump(&mut self, transport: &mut Transport) {
        if self.ended {
            return;
        }
        if let Input::Message(rest) = &mut self.input
            && !rest.is_empty()
        {
            let mut rest = core::mem::take(rest);
            let n = self.accept(&rest, transport);
            rest.advance(n);
            self.input = Input::Message(rest);
        }
        if self.input_finished() {
            if self.config.half_close {
                transport.lose_write_connection();
            }
            // With a banner, it comes first: even an empty echo is not
            // done before the back end has named itself.
            if self.window.is_empty() && self.banner.is_none() {
                self.end(
                    ClientEvent::Done {
                        sent: self.sent,
                        received: self.received,
                    },
                    transport,
                );
            }
        }
    }

    /// Reports the terminal event and ends the connection: politely after
    /// success, by reset after a failure.
    fn end(&mut self, event: ClientEvent, transport: &mut Transport) {
        if self.ended {
            return;
        }
        self.ended = true;
        match &event {
            ClientEvent::Done { .. } => transport.lose_connection(),
            ClientEvent::Failed(EchoError::TimedOut { .. }) => {
                transport.close_because(LostReason::TimedOut);
            }
            // The peer is sending garbage: stop reading it, reset.
            ClientEvent::Failed(
                EchoError::Mismatch { .. } | EchoError::Unexpected { .. } | EchoError::NoBanner,
            ) => {
                transport.abort_connection();
            }
            // The echo is over: never wait on a flush nobody will read (the
            // timer is off once the echo ended). FIN if nothing is unsent,
            // else reset.
            ClientEvent::Failed(_) => transport.close_because(LostReason::Aborted),
            ClientEvent::Echoed(_) | ClientEvent::Banner(_) => {}
        }
        self.events.push_back(event);
    }

    fn fail(&mut self, error: EchoError, transport: &mut Transport) {
        self.end(ClientEvent::Failed(error), transport);
    }

    /// Whether an echo (or the banner before it) is owed, so the progress
    /// timer should run.
    fn awaiting(&self) -> bool {
        !self.ended && (!self.window.is_empty() || self.banner.is_some())
    }
}

impl Protocol for EchoClient {
    type Event = ClientEvent;

    fn connection_made(&mut self, transport: &mut Transport, now: Instant) {
        self.window_limit = transport.water_marks().high();
        self.last_progress = Some(now);
        self.pump(transport);
    }

    fn data_received(&mut self, mut data: &[u8], transport: &mut Transport, now: Instant) {
        if self.ended {
            return;
        }
        if let Some(banner) = &mut self.banner {
            self.last_progress = Some(now);
            let Some(end) = data.iter().position(|&b| b == b'\n') else {
                banner.extend_from_slice(data);
                if banner.len() > MAX_BANNER {
                    self.fail(EchoError::NoBanner, transport);
                }
                return;
            };
            banner.extend_from_slice(&data[..end]);
            if banner.len() > MAX_BANNER {
                self.fail(EchoError::NoBanner, transport);
                return;
            }
            let mut line = banner.split().freeze();
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            self.banner = None;
            self.events.push_back(ClientEvent::Banner(line));
            data = &data[end + 1..];
            if data.is_empty() {
                self.pump(transport);
                return;
            }
        }
        // Only bytes the socket has taken can legitimately come back.
        let in_flight = usize::try_from(self.sent - self.received).unwrap_or(usize::MAX);
        let n = data.len().min(in_flight);
        let (expected, got) = (&self.window[..n], &data[..n]);
        let mismatch = expected.iter().zip(got).position(|(a, b)| a != b);
        let good = mismatch.unwrap_or(n);
        if good > 0 {
            self.window.advance(good);
            self.received += good as u64;
            self.last_progress = Some(now);
            self.undelivered += good;
            self.events
                .push_back(ClientEvent::Echoed(Bytes::copy_from_slice(&data[..good])));
        }
        if mismatch.is_some() {
            let error = EchoError::Mismatch {
                offset: self.received,
                expected: self.window[0],
                found: data[good],
            };
            self.fail(error, transport);
            return;
        }
        if n < data.len() {
            let offset = self.received;
            self.fail(EchoError::Unexpected { offset }, transport);
            return;
        }
        self.pump(transport);
    }

    fn data_written(&mut self, n: usize, _transport: &mut Transport, now: Instant) {
        self.sent += n as u64;
        self.last_progress = Some(now);
    }

    fn read_connection_lost(&mut self, transport: &mut Transport, _now: Instant) {
        // Done would have been reported already if everything had come back.
        let error = EchoError::Truncated {
            sent: self.sent,
            received: self.received,
        };
        self.fail(error, transport);
    }

    fn connection_lost(&mut self, reason: &CloseReason, _now: Instant) {
        if !self.ended {
            self.ended = true;
            self.events
                .push_back(ClientEvent::Failed(EchoError::ConnectionLost {
                    reason: *reason,
                    sent: self.sent,
                    received: self.received,
                }));
        }
    }

    fn wants_read(&self) -> bool {
        self.undelivered < self.config.max_undelivered
    }

    /// No timer while the application holds back the echo (reading is
    /// paused on our side: the silence is not the server's); once it takes
    /// some, the timer restarts from then.
    fn poll_timeout(&self) -> Option<Instant> {
        if !self.awaiting() || !self.wants_read() || self.config.idle_timeout.is_none() {
            return None;
        }
        if self.resumed {
            return self.last_progress;
        }
        self.config
            .idle_timeout
            .and_then(|idle| self.last_progress?.checked_add(idle))
    }

    fn handle_timeout(&mut self, transport: &mut Transport, now: Instant) {
        if self.resumed {
            self.resumed = false;
            self.last_progress = Some(now);
            return;
        }
        if let (Some(deadline), Some(idle)) = (self.poll_timeout(), self.config.idle_timeout)
            && now >= deadline
        {
            let error = EchoError::TimedOut {
                idle,
                sent: self.sent,
                received: self.received,
            };
            self.fail(error, transport);
        }
    }

    fn poll_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.pop_front()?;
        if let ClientEvent::Echoed(bytes) = &event {
            let was_paused = !self.wants_read();
            self.undelivered -= bytes.len();
            if was_paused && self.wants_read() && self.awaiting() {
                self.resumed = true;
            }
        }
        Some(event)
    }
}

/// A client-side echo connection.
pub type EchoClientConnection = Connection<EchoClient>;

impl Connection<EchoClient> {
    /// Application input (standard input, say). Takes at most the room left
    /// in the verification window and returns how many bytes it took; `0`
    /// means "wait for echoes to free room" (see
    /// [`wants_input`](Self::wants_input)).
    ///
    /// # Errors
    /// [`SendError::Finished`] after [`finish`](Self::finish) or for a client
    /// built with a whole message; [`SendError::Ended`] once the echo ended.
    pub fn send(&mut self, data: &[u8], now: Instant) -> Result<usize, SendError> {
        self.act(now, |client, transport, now| {
            if client.ended || transport.is_closing() {
                return Err(SendError::Ended);
            }
            if client.input_finished() || matches!(client.input, Input::Message(_)) {
                return Err(SendError::Finished);
            }
            let quiet = !client.awaiting();
            let n = client.accept(data, transport);
            if quiet && n > 0 {
                // The timer measures the server's silence while an echo is
                // owed: it starts when one is, not at the last echo before
                // the input went quiet (which would time out at once).
                client.last_progress = Some(now);
            }
            Ok(n)
        })
    }

    /// No more application input: report Done (and close) when the rest
    /// comes back; with [`ClientConfig::half_close`], half-close once flushed
    /// (`loseWriteConnection`) without waiting for it.
    /// Idempotent; a no-op for a client built with a whole message.
    pub fn finish(&mut self, now: Instant) {
        self.act(now, |client, transport, _now| {
            if let Input::Stream { finished } = &mut client.input {
                *finished = true;
            }
            client.pump(transport);
        });
    }

    /// Whether [`send`](Self::send) would take bytes now (level-triggered).
    #[must_use]
    pub fn wants_input(&self) -> bool {
        self.input_room() > 0
    }

    /// How many bytes [`send`](Self::send) would take now: read at most this
    /// much from the input source and none of it waits in a second buffer.
    #[must_use]
    pub fn input_room(&self) -> usize {
        let client = self.protocol();
        let open = matches!(client.input, Input::Stream { finished: false })
            && !client.ended
            && !self.transport().is_closing();
        if open { client.refill_room() } else { 0 }
    }
}
