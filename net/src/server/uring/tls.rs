//! `ssl:` on the io_uring path: rustls is sans-IO too, so it is fed the
//! completed receives and fills the connection's own send buffer. The
//! handshake runs before admission, as on the tokio path (a peer that
//! fails it is never a connection of the echo); then the echo's bytes go
//! through the session, and the core counts them written only once the
//! ciphertext that carries them has been sent, so its water marks and its
//! flush before a close hold over TLS as over plain TCP.

use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use echo_core::{Address, Arrival, Connection, Echo};
use rustls::{ServerConfig, ServerConnection};

use super::conn::{Recv, Todo};
use crate::tls::{HandshakeFailure, describe_on_server, subject_of, was_resumed};

/// The most plaintext one send carries.
const MAX_BATCH: usize = 256 * 1024;

/// The least time a close gives its close_notify to go out (as the tokio
/// path's clean shutdown does).
const NOTIFY_FOR: Duration = Duration::from_secs(1);

/// What the peer's records held.
pub(super) enum Plain<'a> {
    /// Application data.
    Data(&'a [u8]),
    /// Its close_notify: the end of its input.
    End,
}

/// What comes once a close_notify has been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Then {
    /// Half-close the socket (the core's `ShutdownWrite`).
    ShutdownWrite,
    /// Close it (the core's `Close`).
    Close,
}

/// Feeds `data` (ciphertext, as it came) to `session` and hands on every
/// plaintext byte it yields, in order.
///
/// # Errors
/// The peer broke the protocol (or sent more than rustls buffers): the
/// error as tokio-rustls reports it, so it is described and counted the
/// same way.
fn open(
    session: &mut ServerConnection,
    mut data: &[u8],
    mut deliver: impl FnMut(Plain<'_>),
) -> io::Result<()> {
    while !data.is_empty() {
        session.read_tls(&mut data)?;
        session
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        loop {
            let mut reader = session.reader();
            match reader.fill_buf() {
                Ok([]) => {
                    deliver(Plain::End);
                    break;
                }
                Ok(bytes) => {
                    let n = bytes.len();
                    deliver(Plain::Data(bytes));
                    reader.consume(n);
                }
                // No more plaintext yet (or the TCP end, which the receive
                // reports itself).
                Err(_) => break,
            }
        }
    }
    Ok(())
}

/// Moves what the session has to send into `out`.
fn seal_pending(session: &mut ServerConnection, out: &mut Vec<u8>) {
    while session.wants_write() {
        if session.write_tls(out).is_err() {
            break; // a Vec takes everything: not reached
        }
    }
}

/// The TLS layer of an admitted `ssl:` connection.
#[derive(Debug)]
pub(super) struct Tls {
    session: Box<ServerConnection>,
    /// Plaintext bytes of the core's that the send in flight carries:
    /// acknowledged to the core once all of its ciphertext went.
    batch: usize,
    /// A close_notify is queued; once it went, this.
    then: Option<Then>,
    /// The close_notify was queued (it is sent once).
    notified: bool,
    /// How long a close waits for its close_notify to go.
    notify_until: Option<Instant>,
}

impl Tls {
    /// Takes over a finished handshake's session.
    pub(super) fn new(session: Box<ServerConnection>) -> Self {
        Self {
            session,
            batch: 0,
            then: None,
            notified: false,
            notify_until: None,
        }
    }

    /// A receive completed with ciphertext: the plaintext goes to the core.
    ///
    /// # Errors
    /// As [`open`].
    pub(super) fn receive(
        &mut self,
        echo: &mut Connection<Echo>,
        data: &[u8],
        now: Instant,
    ) -> io::Result<()> {
        open(&mut self.session, data, |plain| match plain {
            Plain::Data(bytes) => {
                // Bytes after a close of ours are discarded by the core.
                let _ = echo.handle_data(bytes, now);
            }
            Plain::End => echo.handle_read_closed(now),
        })
    }

    /// Fills an empty `out` with the next send: what the session owes
    /// (handshake messages, a close_notify) and the core's unsent bytes,
    /// which stay the core's until [`sent`](Self::sent).
    pub(super) fn seal(&mut self, echo: &Connection<Echo>, out: &mut Vec<u8>) {
        debug_assert_eq!(self.batch, 0, "a batch is still in flight");
        let plain = echo.pending_output();
        let n = plain.len().min(MAX_BATCH);
        if n > 0 && !self.notified {
            // Without a buffer limit the session takes it all.
            if self.session.writer().write_all(&plain[..n]).is_ok() {
                self.batch = n;
            }
        }
        seal_pending(&mut self.session, out);
    }

    /// The whole send went: its plaintext is written, as far as the core
    /// is concerned.
    pub(super) fn sent(&mut self, echo: &mut Connection<Echo>, now: Instant) {
        let batch = std::mem::take(&mut self.batch);
        if batch > 0
            && let Err(error) = echo.handle_written(batch, now)
        {
            tracing::warn!(%error, "TLS send out of step with the core; resetting");
            echo.abort(now);
        }
    }

    /// The core asked to half-close or close: a close_notify first (once).
    pub(super) fn notify(&mut self, then: Then, now: Instant, linger: Duration) {
        if !self.notified {
            self.session.send_close_notify();
            self.notified = true;
        }
        self.then = Some(match (self.then, then) {
            (Some(Then::Close), _) | (_, Then::Close) => Then::Close,
            _ => Then::ShutdownWrite,
        });
        if then == Then::Close {
            self.notify_until = Some(now + linger.max(NOTIFY_FOR));
        }
    }

    /// The send buffer drained: what is due now that the close_notify went.
    pub(super) fn drained(&mut self) -> Option<Then> {
        if self.session.wants_write() {
            return None;
        }
        let then = self.then.take()?;
        if then == Then::Close {
            self.notify_until = None;
        }
        Some(then)
    }

    /// Until when a close waits for its close_notify to go.
    pub(super) fn notify_deadline(&self) -> Option<Instant> {
        self.notify_until
    }
}

/// Why a handshake failed, for the counters and the log.
pub(super) struct Failed {
    pub(super) why: HandshakeFailure,
    pub(super) reason: String,
}

/// What a handshake step came to.
pub(super) enum Outcome {
    /// Still under way.
    Going,
    /// Done: admit the connection with this plaintext first.
    Done(Vec<u8>),
    /// Over without a connection: close once nothing is in the kernel.
    Over(Option<Failed>),
}

/// An `ssl:` connection before its handshake finished.
pub(super) struct Handshake {
    config: Arc<ServerConfig>,
    /// Made on the first byte: a peer that connects and stalls, or
    /// closes without a byte (a TCP health check), holds no session.
    session: Option<Box<ServerConnection>>,
    pub(super) out: Vec<u8>,
    pub(super) sent: usize,
    pub(super) sending: bool,
    pub(super) recv: Recv,
    pub(super) deadline: Instant,
    started: Instant,
    timeout: Duration,
    pub(super) peer: Address,
    pub(super) host: Address,
    pub(super) arrival: Arrival,
    /// No more reading: the socket closes once what is owed went (an
    /// alert) and nothing is in the kernel.
    pub(super) over: bool,
}

impl Handshake {
    pub(super) fn new(
        config: Arc<ServerConfig>,
        (peer, host, arrival): (Address, Address, Arrival),
        recv: Recv,
        now: Instant,
        timeout: Duration,
    ) -> Self {
        Self {
            config,
            session: None,
            out: Vec::new(),
            sent: 0,
            sending: false,
            recv,
            deadline: now + timeout,
            started: now,
            timeout,
            peer,
            host,
            arrival,
            over: false,
        }
    }

    /// Ciphertext came.
    pub(super) fn on_data(&mut self, data: &[u8]) -> Outcome {
        if self.over {
            return Outcome::Going;
        }
        let session = match self.session.as_mut() {
            Some(session) => session,
            None => match ServerConnection::new(Arc::clone(&self.config)) {
                Ok(session) => self.session.insert(Box::new(session)),
                Err(e) => return self.fail(&io::Error::new(io::ErrorKind::InvalidData, e)),
            },
        };
        let mut first = Vec::new();
        let mut ended = false;
        let opened = open(session, data, |plain| match plain {
            Plain::Data(bytes) => first.extend_from_slice(bytes),
            Plain::End => ended = true,
        });
        if let Err(error) = opened {
            // The alert rustls queued goes out before the close.
            seal_pending(session, &mut self.out);
            return self.fail(&error);
        }
        if session.is_handshaking() {
            return Outcome::Going;
        }
        if ended {
            // A close_notify right after the handshake: nothing to echo.
            self.over = true;
            return Outcome::Over(None);
        }
        Outcome::Done(first)
    }

    /// The peer's TCP end (or a receive error).
    pub(super) fn on_end(&mut self, error: Option<io::Error>) -> Outcome {
        if self.over {
            return Outcome::Going;
        }
        if self.session.is_none() && error.is_none() {
            tracing::debug!(peer = %self.peer, "closed before sending a TLS ClientHello");
            self.over = true;
            return Outcome::Over(None);
        }
        let error = error
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof"));
        self.fail(&error)
    }

    /// The handshake's deadline passed.
    pub(super) fn on_timeout(&mut self, now: Instant) -> Outcome {
        if self.over || now < self.deadline {
            return Outcome::Going;
        }
        self.over = true;
        Outcome::Over(Some(Failed {
            why: HandshakeFailure::TimedOut,
            reason: format!("no TLS handshake within {:?}", self.timeout),
        }))
    }

    fn fail(&mut self, error: &io::Error) -> Outcome {
        self.over = true;
        Outcome::Over(Some(Failed {
            why: HandshakeFailure::of(error),
            reason: describe_on_server(error),
        }))
    }

    /// A send completed.
    pub(super) fn on_sent(&mut self, result: io::Result<usize>) {
        self.sending = false;
        match result {
            Ok(n) if n > 0 => {
                self.sent += n;
                if self.sent >= self.out.len() {
                    self.sent = 0;
                    self.out.clear();
                }
            }
            // The peer is gone: nothing more goes.
            _ => {
                self.over = true;
                self.sent = 0;
                self.out.clear();
            }
        }
    }

    /// What the ring must do next.
    pub(super) fn step(&mut self) -> Todo {
        let mut todo = Todo::default();
        if !self.sending {
            if self.sent == self.out.len()
                && let Some(session) = self.session.as_mut()
            {
                self.sent = 0;
                self.out.clear();
                seal_pending(session, &mut self.out);
            }
            if self.sent < self.out.len() {
                self.sending = true;
                todo.send = true;
            }
        }
        match (self.over, self.recv) {
            (false, Recv::Idle) => {
                self.recv = Recv::Armed;
                todo.arm_recv = true;
            }
            (true, Recv::Armed) => {
                self.recv = Recv::Cancelling;
                todo.cancel_recv = true;
            }
            _ => {}
        }
        todo
    }

    /// The bytes the next send posts.
    pub(super) fn unsent(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// Over, and nothing in the kernel: the socket may close.
    pub(super) fn finished(&self) -> bool {
        self.over && self.recv == Recv::Idle && !self.sending
    }

    /// How long the finished handshake took, whether it resumed a session,
    /// and the client's certificate subject.
    pub(super) fn summary(&self) -> (Duration, bool, Option<String>) {
        match self.session.as_deref() {
            Some(session) => (
                self.started.elapsed(),
                was_resumed(session),
                subject_of(session),
            ),
            None => (self.started.elapsed(), false, None),
        }
    }

    /// The finished handshake's session, its send buffer as it stands
    /// (bytes, how many went, whether a send is in the kernel) and its
    /// receive, for the echo to carry on with.
    pub(super) fn take(&mut self) -> (Box<ServerConnection>, (Vec<u8>, usize, bool), Recv) {
        let session = self
            .session
            .take()
            .expect("a finished handshake has a session");
        let wire = (std::mem::take(&mut self.out), self.sent, self.sending);
        self.over = true;
        self.sending = false;
        let recv = std::mem::replace(&mut self.recv, Recv::Idle);
        (session, wire, recv)
    }
}
