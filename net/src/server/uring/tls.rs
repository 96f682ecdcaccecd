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
        if session.read_tls(&mut data)? == 0 {
            // After the peer's close_notify rustls takes nothing more (it
            // says 0, every time): the rest is discarded, not looped on.
            break;
        }
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
            // The alert rustls queued goes out before the close, from
            // `step` (never into `out` here: a send may be reading it).
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
        (session, wire, self.recv)
    }
}

#[cfg(test)]
mod tests {
    //! A real rustls client against the handshake and the echo over TLS,
    //! with the kernel modelled as in `conn.rs`: every receive chunked at
    //! random, every send completed in random shares, the bytes of a send
    //! in flight never changing; the echo must come back exact, then the
    //! server's close_notify, then the socket may close.

    use std::io::Read;
    use std::sync::OnceLock;

    use echo_core::{EchoFactory, Factory, TlsMethod, WaterMarks};
    use proptest::prelude::*;
    use rustls::ClientConnection;

    use super::super::conn::{Conn, End};
    use super::*;
    use crate::tls::{KeyKind, ThrowawayCa, TlsClient, TlsServer};

    type Configs = ([Arc<ServerConfig>; 2], Arc<rustls::ClientConfig>);

    /// Servers on TLS 1.3 (and 1.2) and on TLS 1.2 only, and their client.
    fn configs() -> &'static Configs {
        static CONFIGS: OnceLock<Configs> = OnceLock::new();
        CONFIGS.get_or_init(|| {
            let ca = ThrowawayCa::new("uring test", KeyKind::EcdsaP256).unwrap();
            let issued = ca.server(&["localhost"]).unwrap();
            let server = |method| {
                TlsServer::from_pem(
                    issued.cert_pem.as_bytes(),
                    issued.key_pem.as_bytes(),
                    None,
                    method,
                )
                .unwrap()
                .config()
            };
            let client = TlsClient::from_pem(ca.pem().as_bytes(), None).unwrap();
            (
                [server(TlsMethod::Any), server(TlsMethod::Tls12)],
                client.config(),
            )
        })
    }

    enum Stage {
        Handshake(Box<Handshake>),
        Echo(Box<Conn>),
    }

    /// What the kernel holds: the receive's posting and the bytes of the
    /// send in flight.
    #[derive(Default)]
    struct Kernel {
        recv: bool,
        send: Option<Vec<u8>>,
        closed_write: bool,
    }

    fn apply(kernel: &mut Kernel, todo: Todo, unsent: &[u8]) -> Result<(), TestCaseError> {
        if todo.arm_recv {
            prop_assert!(!kernel.recv, "a second receive posted");
            kernel.recv = true;
        }
        if todo.cancel_recv {
            // Cancelled: its completion comes as an end without bytes.
            kernel.recv = false;
        }
        if todo.send {
            prop_assert!(kernel.send.is_none(), "a second send posted");
            prop_assert!(!unsent.is_empty(), "an empty send posted");
            kernel.send = Some(unsent.to_vec());
        }
        if todo.shutdown_write {
            kernel.closed_write = true;
        }
        Ok(())
    }

    fn run(
        len: usize,
        high: usize,
        chunks: &[u16],
        shares: &[u8],
        tls13: bool,
    ) -> Result<(), TestCaseError> {
        let (servers, client_config) = configs();
        let server_config = &servers[usize::from(!tls13)];
        let t0 = Instant::now();
        let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let mut client =
            ClientConnection::new(Arc::clone(client_config), "localhost".try_into().unwrap())
                .unwrap();
        let message: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        client.writer().write_all(&message).unwrap();
        let mut stage = Stage::Handshake(Box::new(Handshake::new(
            Arc::clone(server_config),
            (addr.into(), addr.into(), Arrival::default()),
            Recv::Idle,
            t0,
            Duration::from_secs(10),
        )));
        let mut kernel = Kernel::default();
        let (mut to_server, mut echoed) = (Vec::new(), Vec::new());
        let mut client_closed = false;
        let mut server_said_bye = false;
        let mut i = 0usize;
        for _ in 0..20_000 {
            i += 1;
            // The server's next moves.
            let (todo, unsent) = match &mut stage {
                Stage::Handshake(h) => (h.step(), h.unsent().to_vec()),
                Stage::Echo(c) => (c.step(t0, Duration::ZERO), c.unsent().to_vec()),
            };
            apply(&mut kernel, todo, &unsent)?;
            if let Stage::Echo(c) = &stage
                && let Some(end) = c.finished()
            {
                prop_assert_eq!(end, End::Close);
                break;
            }
            // The client writes what it owes; once every byte came back, it
            // says goodbye.
            if echoed.len() == message.len() && !client_closed && !client.is_handshaking() {
                client.send_close_notify();
                client_closed = true;
            }
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            let chunk = usize::from(chunks[i % chunks.len()]).max(1);
            let share = shares[i % shares.len()];
            if let Some(posted) = kernel.send.take() {
                // A share of the send goes; the rest is posted again.
                let n = (posted.len() * usize::from(share) / 255).max(1);
                let mut went = &posted[..n];
                while !went.is_empty() {
                    client.read_tls(&mut went).unwrap();
                    let state = client.process_new_packets().unwrap();
                    let mut plain = vec![0; state.plaintext_bytes_to_read()];
                    client.reader().read_exact(&mut plain).unwrap();
                    echoed.extend_from_slice(&plain);
                    server_said_bye |= state.peer_has_closed();
                }
                match &mut stage {
                    Stage::Handshake(h) => h.on_sent(Ok(n)),
                    Stage::Echo(c) => c.on_sent(Ok(n), t0),
                }
                continue;
            }
            if kernel.recv && !to_server.is_empty() {
                kernel.recv = false;
                let n = chunk.min(to_server.len());
                let bytes: Vec<u8> = to_server.drain(..n).collect();
                stage = match stage {
                    Stage::Handshake(mut h) => {
                        let outcome = h.on_data(&bytes);
                        h.recv = Recv::Idle;
                        match outcome {
                            Outcome::Going => Stage::Handshake(h),
                            Outcome::Over(failed) => {
                                let why = failed.map(|f| f.reason).unwrap_or_default();
                                return Err(TestCaseError::fail(format!(
                                    "the handshake failed: {why}"
                                )));
                            }
                            Outcome::Done(first) => {
                                let echo = EchoFactory::default()
                                    .build_protocol(&addr.into(), &addr.into())
                                    .unwrap();
                                let marks = WaterMarks::new(high, 0).unwrap();
                                let mut echo = Connection::new(echo, addr, addr, marks, t0);
                                if !first.is_empty() {
                                    let _ = echo.handle_data(&first, t0);
                                }
                                let (session, wire, _recv) = h.take();
                                Stage::Echo(Box::new(Conn::with_tls(
                                    echo,
                                    Recv::Idle,
                                    Tls::new(session),
                                    wire,
                                )))
                            }
                        }
                    }
                    Stage::Echo(mut c) => {
                        c.on_data(&bytes, t0);
                        c.on_recv_ended();
                        Stage::Echo(c)
                    }
                };
                continue;
            }
            if kernel.recv && client_closed && to_server.is_empty() {
                // The client's TCP end after its close_notify.
                kernel.recv = false;
                if let Stage::Echo(c) = &mut stage {
                    c.on_eof(t0);
                    c.on_recv_ended();
                }
                continue;
            }
            if let Stage::Echo(c) = &mut stage
                && !kernel.recv
                && kernel.send.is_none()
            {
                // A cancelled receive's completion.
                c.on_recv_ended();
            }
        }
        prop_assert!(
            matches!(&stage, Stage::Echo(c) if c.finished().is_some()),
            "the connection never finished"
        );
        prop_assert_eq!(echoed.len(), message.len());
        prop_assert!(echoed == message, "the echo differs");
        prop_assert!(server_said_bye, "no close_notify before the close");
        Ok(())
    }

    /// Bytes after the peer's close_notify, in a later receive: rustls
    /// takes none of them (its `read_tls` says 0 from then on), and the
    /// loop that fed it spun on them for ever, a core at 100 % per such
    /// peer.
    #[test]
    fn bytes_after_a_close_notify_are_dropped_not_spun_on() {
        let (servers, client_config) = configs();
        let t0 = Instant::now();
        let mut client =
            ClientConnection::new(Arc::clone(client_config), "localhost".try_into().unwrap())
                .unwrap();
        let mut handshake = Handshake::new(
            Arc::clone(&servers[0]),
            (
                "127.0.0.1:7"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
                "127.0.0.1:7"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
                Arrival::default(),
            ),
            Recv::Idle,
            t0,
            Duration::from_secs(10),
        );
        // The handshake, by hand: each side's bytes straight to the other.
        let mut first = None;
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            if !wire.is_empty()
                && let Outcome::Done(plain) = handshake.on_data(&wire)
            {
                first = Some(plain);
            }
            handshake.step();
            let back = handshake.unsent().to_vec();
            handshake.on_sent(Ok(back.len()));
            let mut back = &back[..];
            while !back.is_empty() {
                client.read_tls(&mut back).unwrap();
                client.process_new_packets().unwrap();
            }
            if first.is_some() {
                break;
            }
        }
        assert!(first.is_some(), "the handshake finished");
        let (session, _, _) = handshake.take();
        let mut tls = Tls::new(session);
        let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let echo = EchoFactory::default()
            .build_protocol(&addr.into(), &addr.into())
            .unwrap();
        let mut echo = Connection::new(echo, addr, addr, WaterMarks::default(), t0);
        client.writer().write_all(b"bye").unwrap();
        client.send_close_notify();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let first = tls.receive(&mut echo, &wire, t0);
            // A later receive: the peer went on sending.
            let later = tls.receive(&mut echo, b"\x17\x03\x03\x00\x05trailing bytes", t0);
            let _ = done.send((first.is_ok() && later.is_ok(), echo.protocol().received()));
        });
        let (ok, received) = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("receive returned (it spun on the bytes after close_notify)");
        assert!(ok);
        assert_eq!(received, 3, "what came before the close_notify is kept");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn over_tls_every_split_echoes_exactly_then_says_close_notify(
            len in 0usize..40_000,
            high in 1usize..20_000,
            chunks in proptest::collection::vec(1u16..20_000, 1..8),
            shares in proptest::collection::vec(any::<u8>(), 1..8),
            tls13 in any::<bool>(),
        ) {
            run(len, high, &chunks, &shares, tls13)?;
        }
    }
}
