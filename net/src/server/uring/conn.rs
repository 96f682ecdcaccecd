//! One echo connection on the io_uring path, without the ring: what its
//! socket has in flight (a multishot receive, one send from a buffer the
//! connection owns), what the core asks for next, and when the socket may
//! be closed (never while the kernel still holds one of its operations).
//! Pure bookkeeping over completions, so a property test can drive it with
//! short sends, cancelled receives and completions after a close.

use std::io;
use std::time::{Duration, Instant};

use echo_core::{Action, Connection, Echo, KEEP_DRAINED_CAPACITY, UsageError};

use crate::policy::reason_for;

/// The most bytes one send hands the kernel.
const MAX_SEND: usize = 256 * 1024;

/// Where the connection's multishot receive stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recv {
    /// None posted (or its last completion came).
    Idle,
    /// Posted: completions keep coming until one without `MORE`.
    Armed,
    /// Posted, and asked to stop; completions may still come.
    Cancelling,
}

/// How the socket ends once nothing is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// A plain close (FIN, or already broken).
    Close,
    /// A reset (`SO_LINGER` 0): the core aborted.
    Reset,
}

/// What the ring must do for the connection after a step.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Todo {
    /// Post a multishot receive.
    pub(super) arm_recv: bool,
    /// Cancel the posted receive.
    pub(super) cancel_recv: bool,
    /// Post a send of [`Conn::unsent`].
    pub(super) send: bool,
    /// Cancel the send in flight (the connection is being reset).
    pub(super) cancel_send: bool,
    /// Half-close the socket now.
    pub(super) shutdown_write: bool,
}

/// An admitted connection: the core's state machine and its socket's
/// operations.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) echo: Connection<Echo>,
    /// The bytes of the current send, owned here while the kernel holds
    /// them (the core moved them out with `poll_transmit`).
    out: Vec<u8>,
    /// Of `out`, how many completed (a short send resubmits the rest).
    sent: usize,
    /// A send is in the kernel.
    sending: bool,
    recv: Recv,
    /// After the core closed while the peer may still send: until when
    /// its late bytes are read and discarded, so that they do not turn the
    /// close into a reset that destroys the last echoes in flight.
    linger_until: Option<Instant>,
    end: Option<End>,
    /// Bytes (in, out) already added to the server's counters.
    pub(super) seen: (u64, u64),
}

impl Conn {
    /// `recv`: the receive the connection already has (one posted for
    /// its PROXY header stays posted).
    pub(super) fn new(echo: Connection<Echo>, recv: Recv) -> Self {
        Self {
            echo,
            out: Vec::new(),
            sent: 0,
            sending: false,
            recv,
            linger_until: None,
            end: None,
            seen: (0, 0),
        }
    }

    /// The bytes the next send posts: the kernel reads them until it
    /// completes, so nothing touches them meanwhile.
    pub(super) fn unsent(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// A receive completed with bytes.
    pub(super) fn on_data(&mut self, data: &[u8], now: Instant) {
        if let Err(UsageError::AfterReadClosed) = self.echo.handle_data(data, now) {
            // The kernel reports end-of-file last: this cannot come.
            tracing::debug!(len = data.len(), "data after end-of-file; dropped");
        }
    }

    /// A receive reported the peer's end-of-file.
    pub(super) fn on_eof(&mut self, now: Instant) {
        self.echo.handle_read_closed(now);
        if self.linger_until.is_some() {
            self.end = Some(End::Close);
        }
    }

    /// A receive failed: the socket is gone.
    pub(super) fn on_recv_error(&mut self, error: &io::Error, now: Instant) {
        self.echo.handle_connection_lost(reason_for(error), now);
        if self.linger_until.is_some() {
            self.end = Some(End::Close);
        }
    }

    /// The multishot receive ended (cancelled, out of buffers, or after
    /// its last completion).
    pub(super) fn on_recv_ended(&mut self) {
        self.recv = Recv::Idle;
    }

    /// The send completed: `Ok(n)` bytes went, or it failed.
    pub(super) fn on_sent(&mut self, result: io::Result<usize>, now: Instant) {
        self.sending = false;
        match result {
            Ok(n) if n > 0 => {
                if let Err(error) = self.echo.handle_written(n, now) {
                    // A completion beyond what was posted: a kernel bug, not
                    // a peer's doing. Stop rather than echo out of order.
                    tracing::warn!(%error, "send completion out of step; resetting");
                    self.echo.abort(now);
                }
                self.sent += n;
                if self.sent >= self.out.len() {
                    self.sent = 0;
                    self.out.clear();
                    if self.out.capacity() > KEEP_DRAINED_CAPACITY {
                        self.out = Vec::new();
                    }
                }
            }
            Ok(_) => {
                let error = io::Error::from(io::ErrorKind::WriteZero);
                self.echo.handle_connection_lost(reason_for(&error), now);
            }
            // Cancelled by a reset of our own: the core is already closed.
            Err(error) if error.raw_os_error() == Some(libc::ECANCELED) => {}
            Err(error) => self.echo.handle_connection_lost(reason_for(&error), now),
        }
    }

    /// The connection's deadline passed (or a spurious wake).
    pub(super) fn on_timeout(&mut self, now: Instant) {
        match self.linger_until {
            Some(until) if now >= until => self.end = Some(End::Close),
            Some(_) => {}
            None => self.echo.handle_timeout(now),
        }
    }

    /// The server closes its connections: flush within `flush_timeout`.
    pub(super) fn on_close_all(&mut self, now: Instant, flush_timeout: Duration) {
        self.echo.shut_down(now, flush_timeout);
    }

    /// After every completion, in the core's drain order: post the output,
    /// carry out actions, then decide on the receive. `linger`: how long a
    /// close keeps discarding what the peer still sends.
    pub(super) fn step(&mut self, now: Instant, linger: Duration) -> Todo {
        let mut todo = Todo::default();
        if !self.sending && self.end.is_none() {
            if self.sent == self.out.len() && self.echo.poll_transmit(MAX_SEND, &mut self.out) > 0 {
                self.sent = 0;
            }
            if self.sent < self.out.len() {
                self.sending = true;
                todo.send = true;
            }
        }
        while let Some(action) = self.echo.poll_action() {
            match action {
                Action::ShutdownWrite => todo.shutdown_write = true,
                Action::Close if self.echo.is_read_open() && !linger.is_zero() => {
                    todo.shutdown_write = true;
                    self.linger_until = Some(now + linger);
                }
                Action::Close => self.end = Some(End::Close),
                _ => self.end = Some(End::Reset),
            }
        }
        if self.echo.is_closed() && self.linger_until.is_none() && self.end.is_none() {
            // Lost (an error, a reset by the peer): nothing to flush.
            self.end = Some(End::Close);
        }
        if self.end.is_some() && self.sending {
            todo.cancel_send = true;
        }
        let wanted = self.end.is_none() && (self.echo.wants_read() || self.linger_until.is_some());
        match (wanted, self.recv) {
            (true, Recv::Idle) => {
                self.recv = Recv::Armed;
                todo.arm_recv = true;
            }
            (false, Recv::Armed) => {
                self.recv = Recv::Cancelling;
                todo.cancel_recv = true;
            }
            _ => {}
        }
        todo
    }

    /// When [`on_timeout`](Self::on_timeout) is due next.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.end.is_some() {
            return None;
        }
        self.linger_until.or_else(|| self.echo.poll_timeout())
    }

    /// How the socket ends, once it has ended and the kernel holds none of
    /// its operations: only then may its descriptor be closed and the
    /// connection booked as ended.
    pub(super) fn finished(&self) -> Option<End> {
        self.end
            .filter(|_| self.recv == Recv::Idle && !self.sending)
    }

    /// A send is in the kernel.
    #[cfg(test)]
    pub(super) fn is_sending(&self) -> bool {
        self.sending
    }

    /// Where the receive stands.
    #[cfg(test)]
    pub(super) fn recv(&self) -> Recv {
        self.recv
    }
}
