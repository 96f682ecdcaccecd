//! One echo connection on the io_uring path, without the ring: what its
//! socket has in flight (a receive, one send from a buffer the
//! connection owns), what the core asks for next, and when the socket may
//! be closed (never while the kernel still holds one of its operations).
//! Pure bookkeeping over completions, so a property test can drive it with
//! short sends, cancelled receives and completions after a close.

use std::io;
use std::time::{Duration, Instant};

use echo_core::{Action, Connection, Echo, KEEP_DRAINED_CAPACITY, UsageError};

use super::tls::{Then, Tls};
use crate::policy::reason_for;

/// The most bytes one send hands the kernel.
const MAX_SEND: usize = 256 * 1024;

/// Where the connection's receive stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recv {
    /// None posted (or its completion came).
    Idle,
    /// Posted: its completion is to come.
    Armed,
    /// Posted, and asked to stop; it may still complete with bytes.
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
    /// Post a receive.
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
    /// An `ssl:` connection's session: `out` then holds ciphertext.
    tls: Option<Box<Tls>>,
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
            tls: None,
        }
    }

    /// An `ssl:` connection whose handshake just finished: its session,
    /// and the handshake's send buffer as it stands (a send may be in the
    /// kernel: the buffer moves, its bytes do not).
    pub(super) fn with_tls(
        echo: Connection<Echo>,
        recv: Recv,
        tls: Tls,
        (out, sent, sending): (Vec<u8>, usize, bool),
    ) -> Self {
        Self {
            out,
            sent,
            sending,
            tls: Some(Box::new(tls)),
            ..Self::new(echo, recv)
        }
    }

    /// The bytes the next send posts: the kernel reads them until it
    /// completes, so nothing touches them meanwhile.
    pub(super) fn unsent(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// A receive completed with bytes.
    pub(super) fn on_data(&mut self, data: &[u8], now: Instant) {
        if let Some(tls) = self.tls.as_mut() {
            if let Err(error) = tls.receive(&mut self.echo, data, now) {
                tracing::debug!(%error, "TLS error");
                self.echo.handle_connection_lost(reason_for(&error), now);
            }
            return;
        }
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

    /// The receive ended: its completion came (bytes, end-of-file, an
    /// error, a cancellation, no buffer free), and none is posted now.
    pub(super) fn on_recv_ended(&mut self) {
        self.recv = Recv::Idle;
    }

    /// The send completed: `Ok(n)` bytes went, or it failed.
    pub(super) fn on_sent(&mut self, result: io::Result<usize>, now: Instant) {
        self.sending = false;
        match result {
            Ok(n) if n > 0 && self.tls.is_some() => {
                self.sent += n;
                if self.sent >= self.out.len() {
                    self.sent = 0;
                    self.out.clear();
                    if let Some(tls) = self.tls.as_mut() {
                        tls.sent(&mut self.echo, now);
                    }
                }
            }
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
            // A close_notify that could not go in time: closed without it.
            None if self
                .tls
                .as_ref()
                .and_then(|tls| tls.notify_deadline())
                .is_some_and(|at| now >= at) =>
            {
                self.end = Some(End::Close);
            }
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
        while let Some(action) = self.echo.poll_action() {
            match (action, self.tls.as_mut()) {
                (Action::ShutdownWrite, None) => todo.shutdown_write = true,
                (Action::Close, None) => self.close(now, linger, &mut todo),
                // Over TLS, a close_notify goes first.
                (Action::ShutdownWrite, Some(tls)) => tls.notify(Then::ShutdownWrite, now, linger),
                (Action::Close, Some(tls)) => tls.notify(Then::Close, now, linger),
                _ => self.end = Some(End::Reset),
            }
        }
        if !self.sending && self.end.is_none() && self.sent == self.out.len() {
            self.sent = 0;
            match self.tls.as_mut() {
                None => {
                    self.echo.poll_transmit(MAX_SEND, &mut self.out);
                }
                Some(tls) => {
                    self.out.clear();
                    tls.seal(&self.echo, &mut self.out);
                    if self.out.is_empty() {
                        match tls.drained() {
                            Some(Then::ShutdownWrite) => todo.shutdown_write = true,
                            Some(Then::Close) => self.close(now, linger, &mut todo),
                            None => {}
                        }
                    }
                }
            }
        }
        if !self.sending && self.end.is_none() && self.sent < self.out.len() {
            self.sending = true;
            todo.send = true;
        }
        let notifying = self
            .tls
            .as_ref()
            .is_some_and(|tls| tls.notify_deadline().is_some());
        if self.echo.is_closed() && self.linger_until.is_none() && self.end.is_none() && !notifying
        {
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
        self.linger_until
            .or_else(|| self.tls.as_ref().and_then(|tls| tls.notify_deadline()))
            .or_else(|| self.echo.poll_timeout())
    }

    /// The core closed, everything owed sent: if the peer may still send,
    /// half-close and read on (discarding) for `linger`, so that its late
    /// bytes do not turn the close into a reset; else close.
    fn close(&mut self, now: Instant, linger: Duration, todo: &mut Todo) {
        if self.echo.is_read_open() && !linger.is_zero() {
            todo.shutdown_write = true;
            self.linger_until = Some(now + linger);
        } else {
            self.end = Some(End::Close);
        }
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

#[cfg(test)]
mod tests {
    //! The bookkeeping against a model of the kernel: a receive posted at
    //! most once and completing (with bytes, end-of-file, or its end) even
    //! after it was cancelled; one send at a time whose bytes must not
    //! change until it completes, in full, short, failed or cancelled.

    use super::*;
    use echo_core::{EchoFactory, Factory, WaterMarks};
    use proptest::prelude::*;

    const LINGER: Duration = Duration::from_millis(100);

    #[derive(Debug, Clone)]
    enum Event {
        /// The posted receive completes with this many bytes.
        Data(usize),
        /// ... with end-of-file.
        Eof,
        /// ... ends (cancelled, or out of buffers).
        RecvEnds,
        /// The posted send completes with a share of its bytes.
        Sent(u8),
        /// The posted send fails (the peer reset).
        SendFails,
        /// The server closes every connection.
        CloseAll,
        Tick(u16),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            6 => (1usize..3000).prop_map(Event::Data),
            1 => Just(Event::Eof),
            1 => Just(Event::RecvEnds),
            6 => any::<u8>().prop_map(Event::Sent),
            1 => Just(Event::SendFails),
            1 => Just(Event::CloseAll),
            1 => (0u16..300).prop_map(Event::Tick),
        ]
    }

    /// The kernel's side: what is posted.
    #[derive(Default)]
    struct Kernel {
        recv: bool,
        recv_cancelled: bool,
        eof_sent: bool,
        send: Option<Vec<u8>>,
        send_cancelled: bool,
    }

    impl Kernel {
        fn apply(&mut self, conn: &Conn, todo: Todo) -> Result<(), TestCaseError> {
            if todo.arm_recv {
                prop_assert!(!self.recv, "a second receive posted");
                self.recv = true;
                self.recv_cancelled = false;
            }
            if todo.cancel_recv {
                prop_assert!(self.recv, "cancelled a receive never posted");
                self.recv_cancelled = true;
            }
            if todo.send {
                prop_assert!(self.send.is_none(), "a second send posted");
                prop_assert!(!conn.unsent().is_empty(), "an empty send posted");
                self.send = Some(conn.unsent().to_vec());
                self.send_cancelled = false;
            }
            if todo.cancel_send {
                prop_assert!(self.send.is_some(), "cancelled a send never posted");
                self.send_cancelled = true;
            }
            Ok(())
        }
    }

    fn run(high: usize, idle: Option<u64>, events: &[Event]) -> Result<(), TestCaseError> {
        let t0 = Instant::now();
        let mut factory = EchoFactory::new(echo_core::ServerConfig {
            idle_timeout: idle.map(Duration::from_millis),
            ..echo_core::ServerConfig::default()
        });
        let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let echo = factory
            .build_protocol(&addr.into(), &addr.into())
            .expect("admitted");
        let marks = WaterMarks::new(high, 0).unwrap();
        let mut conn = Conn::new(Connection::new(echo, addr, addr, marks, t0), Recv::Idle);
        let mut kernel = Kernel::default();
        let (mut fed, mut wire) = (Vec::<u8>::new(), Vec::<u8>::new());
        let mut now = t0;
        let todo = conn.step(now, LINGER);
        kernel.apply(&conn, todo)?;
        for (step, event) in events.iter().enumerate() {
            if conn.finished().is_some() {
                break;
            }
            match *event {
                Event::Data(n) if kernel.recv && !kernel.eof_sent => {
                    let bytes: Vec<u8> = (0..n).map(|i| (fed.len() + i) as u8).collect();
                    let before = conn.echo.protocol().received();
                    conn.on_data(&bytes, now);
                    if conn.echo.protocol().received() > before {
                        fed.extend_from_slice(&bytes);
                    }
                }
                Event::Eof if kernel.recv && !kernel.eof_sent => {
                    kernel.eof_sent = true;
                    kernel.recv = false;
                    conn.on_eof(now);
                    conn.on_recv_ended();
                }
                Event::RecvEnds if kernel.recv => {
                    kernel.recv = false;
                    conn.on_recv_ended();
                }
                Event::Sent(share) => {
                    if let Some(posted) = kernel.send.take() {
                        prop_assert_eq!(
                            conn.unsent(),
                            &posted[..],
                            "step {}: the bytes of a send in flight changed",
                            step
                        );
                        let n = (posted.len() * usize::from(share) / 255).max(1);
                        wire.extend_from_slice(&posted[..n]);
                        conn.on_sent(Ok(n), now);
                    }
                }
                Event::SendFails => {
                    if let Some(_posted) = kernel.send.take() {
                        let error = if kernel.send_cancelled {
                            io::Error::from_raw_os_error(libc::ECANCELED)
                        } else {
                            io::Error::from(io::ErrorKind::ConnectionReset)
                        };
                        conn.on_sent(Err(error), now);
                    }
                }
                Event::CloseAll => conn.on_close_all(now, Duration::from_millis(500)),
                Event::Tick(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    if conn.deadline().is_some_and(|at| at <= now) {
                        conn.on_timeout(now);
                    }
                }
                _ => continue,
            }
            prop_assert_eq!(conn.recv() != Recv::Idle, kernel.recv, "step {}", step);
            prop_assert_eq!(conn.is_sending(), kernel.send.is_some(), "step {}", step);
            let todo = conn.step(now, LINGER);
            kernel.apply(&conn, todo)?;
            prop_assert!(
                fed.starts_with(&wire),
                "step {step}: sent bytes that were never received, or out of order"
            );
            if let Some(end) = conn.finished() {
                prop_assert!(
                    !kernel.recv && kernel.send.is_none(),
                    "step {step}: {end:?} with an operation still in the kernel"
                );
            }
        }
        // The peer reads everything and closes: a connection that was not
        // reset echoes all it took, then its socket may close.
        for _ in 0..10_000 {
            if conn.finished().is_some() {
                break;
            }
            if let Some(posted) = kernel.send.take() {
                wire.extend_from_slice(&posted);
                conn.on_sent(Ok(posted.len()), now);
            } else if kernel.recv {
                kernel.recv = false;
                if kernel.recv_cancelled || kernel.eof_sent {
                    conn.on_recv_ended();
                } else {
                    kernel.eof_sent = true;
                    conn.on_eof(now);
                    conn.on_recv_ended();
                }
            } else {
                now += LINGER + Duration::from_secs(1);
                conn.on_timeout(now);
            }
            let todo = conn.step(now, LINGER);
            kernel.apply(&conn, todo)?;
        }
        let end = conn.finished();
        prop_assert!(end.is_some(), "the connection never finished");
        prop_assert!(fed.starts_with(&wire));
        if end == Some(End::Close) && conn.echo.close_reason().is_some_and(|r| r.is_clean()) {
            prop_assert!(wire == fed, "a clean close lost echoed bytes");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_uring_bookkeeping_never_moves_a_posted_buffer_and_echoes_in_order(
            high in 1usize..20_000,
            idle in proptest::option::of(50u64..2000),
            events in proptest::collection::vec(event(), 1..300),
        ) {
            run(high, idle, &events)?;
        }
    }

    #[test]
    fn a_paused_connection_cancels_its_receive_and_takes_what_completes_meanwhile() {
        let t0 = Instant::now();
        let mut factory = EchoFactory::default();
        let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let echo = factory.build_protocol(&addr.into(), &addr.into()).unwrap();
        let marks = WaterMarks::new(100, 0).unwrap();
        let mut conn = Conn::new(Connection::new(echo, addr, addr, marks, t0), Recv::Idle);
        assert!(conn.step(t0, LINGER).arm_recv);
        conn.on_data(&[1; 150], t0);
        let todo = conn.step(t0, LINGER);
        assert!(todo.send && todo.cancel_recv, "{todo:?}");
        conn.on_data(&[2; 50], t0); // completed before the cancel took
        assert_eq!(conn.echo.protocol().received(), 200, "delivered, not lost");
        conn.on_recv_ended();
        assert_eq!(conn.step(t0, LINGER), Todo::default());
        conn.on_sent(Ok(150), t0);
        let todo = conn.step(t0, LINGER);
        assert!(
            todo.send && !todo.arm_recv,
            "the 50 late bytes go: {todo:?}"
        );
        assert_eq!(conn.unsent(), &[2; 50][..]);
        conn.on_sent(Ok(50), t0);
        assert!(conn.step(t0, LINGER).arm_recv, "drained to the low mark");
    }
}
