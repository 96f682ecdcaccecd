//! Runs one `echo-core` connection over one stream, in the core's drain order.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use echo_core::{Action, Connection, Protocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::contract::Driven;
use crate::policy::{DEFAULT_LINGER, DEFAULT_READ_CHUNK, reason_for};
use crate::signal::CloseSignal;
use crate::stream::Stream;

/// Bytes a connection may read in one wake before it lets the others run:
/// what the C epoll reference server reads per ready connection per round.
const DEFAULT_READ_BUDGET: usize = 64 * 1024;

/// The least time a clean close gives its half-close (see
/// `lingering_close`).
const CLEAN_SHUTDOWN: Duration = Duration::from_secs(1);

/// The largest read chunk (the scratch buffer's size).
const MAX_READ_CHUNK: usize = 256 * 1024;

thread_local! {
    /// One read buffer per worker thread, not per connection: an idle
    /// connection holds no read buffer. It is borrowed only inside a single
    /// poll, during which the bytes are handed to the core.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `len` bytes of the worker's read buffer: borrowed once per
/// poll of a connection, not once per read (each borrow of the thread-local
/// cost about 65 instructions, two per echo). A poll nested inside another
/// on the same thread (an application that drives a second connection from
/// its own poll) finds it borrowed and gets a buffer of its own.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            if scratch.len() < len {
                scratch.resize(len, 0);
            }
            f(&mut scratch[..len])
        }
        Err(_) => f(&mut vec![0; len]),
    })
}

/// The current time as the core sees it: tokio's clock, so a paused or
/// simulated clock reaches the core.
#[must_use]
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How the driver treats a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriveConfig {
    /// Bytes per read (at most 256 KiB).
    pub read_chunk: usize,
    /// Bytes a connection may read (and echo) in one wake before it yields
    /// to the other connections of its worker and is polled again after
    /// them. Without it a peer that keeps the socket full is served until
    /// tokio's cooperative budget runs out (128 socket operations: 64 reads
    /// and their echoes, 1 MiB in 16 KiB reads) while every other
    /// connection waits. Always at least one read.
    pub read_budget: usize,
    /// After a close while the peer may still be sending, keep reading (and
    /// discarding) for up to this long so that closing does not reset the
    /// connection and destroy echoes still in flight to the peer.
    pub linger: Duration,
    /// After being told to close (shutdown grace expired), give the flush
    /// this long before resetting the connection (the core's
    /// [`Connection::shut_down`] deadline).
    pub flush_timeout: Duration,
    /// How long a TLS server connection has to finish its handshake
    /// before it is dropped (and counted as a failed handshake).
    pub handshake_timeout: Duration,
    /// io_uring only: while completions come fast, a turn of the loop may
    /// wait this long for more of them, so that one system call serves
    /// several (zero: never; the epoll path has no such wait). Each echo
    /// may come this much later.
    pub batch_wait: Duration,
}

impl Default for DriveConfig {
    fn default() -> Self {
        Self {
            read_chunk: DEFAULT_READ_CHUNK,
            read_budget: DEFAULT_READ_BUDGET,
            linger: DEFAULT_LINGER,
            flush_timeout: Duration::from_secs(5),
            handshake_timeout: crate::tls::DEFAULT_HANDSHAKE_TIMEOUT,
            batch_wait: Duration::ZERO,
        }
    }
}

/// The application side of a connection: takes the protocol's events and
/// feeds it input (the echo client's standard input and output, say).
pub trait App<P: Protocol> {
    /// Moves data between the application and the connection without
    /// blocking. Returns `Ready` when it changed something (the driver then
    /// drains the connection again) and `Pending`, with wakers registered,
    /// when it is waiting.
    fn poll_app(&mut self, cx: &mut Context<'_>, conn: &mut Connection<P>) -> Poll<()>;
}

/// An application that takes nothing: for protocols without events.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoApp;

impl<P: Protocol<Event = std::convert::Infallible>> App<P> for NoApp {
    fn poll_app(&mut self, _cx: &mut Context<'_>, _conn: &mut Connection<P>) -> Poll<()> {
        Poll::Pending
    }
}

/// Runs `conn` over `stream` until the connection is closed.
///
/// Follows the core's drain order: write what is pending (with `write`, which
/// is cancel safe), report it, carry out actions, let the application take
/// events and give input, re-arm the timer, and read only while the
/// connection wants to. When `close` turns `true`, the connection is closed
/// gracefully (stop reading, flush, close), with a reset if the flush takes
/// longer than [`DriveConfig::flush_timeout`]. Socket errors end the
/// connection with a reason; nothing the peer does can make this panic.
///
/// The settings are borrowed, not copied: a served connection's future
/// lives as long as the connection, and every byte of it is paid per
/// connection, idle or not.
#[allow(clippy::manual_async_fn)] // not an async fn on purpose: see its body
pub fn drive<'a, S, P, A>(
    stream: &'a mut S,
    conn: &'a mut Connection<P>,
    app: &'a mut A,
    config: &'a DriveConfig,
    close: Option<CloseSignal>,
) -> impl Future<Output = ()> + 'a
where
    S: Stream,
    P: Protocol + 'a,
    A: App<P>,
{
    // An `async move` block, not an `async fn`: the arguments are kept
    // once in the future, not twice (rust-lang issue 62958).
    async move {
        let read_chunk = config.read_chunk.clamp(1, MAX_READ_CHUNK);
        // One timer, re-armed only when the deadline moves earlier or fires
        // ("fire on the clock, not the timer"): cheap on the per-read path.
        // Made on first use: a connection that never needs a timer (no idle
        // timeout, no shutdown) never holds one.
        let mut sleep: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let mut armed: Option<Instant> = None;
        // One long-lived future for the close signal (a fresh one per pass
        // would register and drop a waiter on every read). It checks the
        // current value first, so a close sent before we started counts too.
        // Without a signal, one that is never set: polled once per pass,
        // the signal's own future costs less than one wrapped in an option.
        let signal = close.unwrap_or_default();
        let close_requested = signal.triggered();
        tokio::pin!(close_requested);
        let mut close_armed = true;
        let mut shutdown_owed = false;
        // Bytes read in this turn: kept across the loop's passes, so a turn
        // that stops for an action or an earlier deadline does not start a
        // fresh budget within the same poll.
        let mut spent = 0;
        loop {
            // Actions, in order. Close and Abort complete themselves in the
            // core (the connection is already closed); the socket follows.
            while let Some(action) = conn.poll_action() {
                match action {
                    // Carried out by `poll_io`, beside the timers and the
                    // close signal: a TLS stream's shutdown writes its
                    // close_notify first and waits while the peer does not
                    // read, and awaiting it here would stop the clock.
                    Action::ShutdownWrite => shutdown_owed = true,
                    Action::Close => {
                        Driven::closed(conn);
                        let clean = conn.close_reason().is_some_and(|r| r.is_clean());
                        // Boxed: its state (timer, drain) would otherwise sit
                        // inline in every connection's future, idle or not.
                        Box::pin(lingering_close(
                            stream,
                            conn.is_read_open(),
                            config.linger,
                            clean,
                            // This turn's reads so far count against the
                            // drain's first budget.
                            (read_chunk, config.read_budget, spent),
                        ))
                        .await;
                    }
                    Action::Abort => {
                        Driven::closed(conn);
                        stream.set_reset_on_close();
                    }
                    // A newer core's action this driver does not know: the
                    // connection cannot be carried on safely, so reset it.
                    other => {
                        tracing::warn!(?other, "unknown action; resetting the connection");
                        stream.set_reset_on_close();
                        conn.abort(now());
                    }
                }
            }
            if conn.is_closed() {
                return;
            }
            // One timer: the core's (its own timers and a shutdown flush
            // deadline alike).
            if let Some(at) = conn.poll_timeout()
                && armed.is_none_or(|armed| at < armed)
            {
                let when = tokio::time::Instant::from_std(at);
                match sleep.as_mut() {
                    Some(timer) => timer.as_mut().reset(when),
                    None => sleep = Some(Box::pin(tokio::time::sleep_until(when))),
                }
                armed = Some(at);
            }
            // What woke the connection, in this order (the socket first):
            // one hand-written poll rather than `select!`, whose branch
            // bookkeeping ran on every read.
            let woke = poll_fn(|cx| {
                if let Poll::Ready(result) = with_scratch(read_chunk, |scratch| {
                    let io = Io {
                        scratch,
                        spent: &mut spent,
                        read_budget: config.read_budget,
                        armed,
                    };
                    poll_io(cx, stream, conn, app, io, &mut shutdown_owed)
                }) {
                    return Poll::Ready(Woke::Io(result));
                }
                if armed.is_some()
                    && let Some(timer) = sleep.as_mut()
                    && timer.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Woke::Timer);
                }
                if close_armed && close_requested.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Close);
                }
                // The task yields: its next poll is a new turn. (Not
                // before: a turn that comes back for a timer or an action
                // keeps what it has read.)
                spent = 0;
                Poll::Pending
            })
            .await;
            match woke {
                Woke::Io(Ok(())) => {}
                Woke::Io(Err(e)) => conn.handle_connection_lost(reason_for(&e), now()),
                Woke::Timer => {
                    armed = None;
                    conn.handle_timeout(now());
                }
                Woke::Close => {
                    close_armed = false;
                    conn.shut_down(now(), config.flush_timeout);
                }
            }
        }
    }
}

/// The time of one pass, read from the clock only when an input needs it:
/// on a busy echo every other pass finds nothing to do, and reads none, and
/// a connection whose protocol ignores the time ([`Connection::wants_time`])
/// is given the latest time it saw instead.
struct PassClock(Option<Instant>);

impl PassClock {
    fn get<P: Protocol>(&mut self, conn: &Connection<P>) -> Instant {
        if let Some(at) = self.0 {
            return at;
        }
        if !conn.wants_time() {
            return conn.latest_time();
        }
        *self.0.insert(now())
    }
}

/// What one poll of a connection's I/O works with.
struct Io<'a> {
    /// The worker's read buffer (see `with_scratch`).
    scratch: &'a mut [u8],
    /// Bytes it may still read before yielding in this turn.
    spent: &'a mut usize,
    /// A turn's budget ([`DriveConfig::read_budget`]).
    read_budget: usize,
    /// The deadline the caller's timer is armed for.
    armed: Option<Instant>,
}

/// Moves bytes until the socket and the application have nothing more to
/// give, or the connection needs the caller: an action is owed, it closed,
/// or its deadline moved before the `armed` one. `Ready` then, so the
/// caller drains actions and re-arms its timer; `Pending` with every waker
/// registered otherwise. An echo thus stays in here from one read to the
/// next instead of going round the caller's loop once per read.
///
/// Each pass writes what is owed, reads one chunk and writes its echo at
/// once, then lets the application take the events (after every input, as
/// the core's drive order says) and give input. Once the read budget is
/// spent it yields: `Pending`, with the task woken to run again after the
/// connections already waiting.
fn poll_io<S: Stream, P: Protocol, A: App<P>>(
    cx: &mut Context<'_>,
    stream: &mut S,
    conn: &mut Connection<P>,
    app: &mut A,
    io: Io<'_>,
    shutdown_owed: &mut bool,
) -> Poll<io::Result<()>> {
    let spent = io.spent;
    if *spent > 0 && *spent >= io.read_budget {
        // The turn's budget went on reads before an action or a timer:
        // the others' turn first.
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    loop {
        let mut now = PassClock(None);
        let mut progressed = flush_output(cx, stream, conn, &mut now)?;
        // The half-close the core asked for, once what it owes is written.
        if *shutdown_owed && conn.pending_output().is_empty() {
            match Pin::new(&mut *stream).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => {
                    *shutdown_owed = false;
                    progressed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if conn.wants_read()
            && let Poll::Ready(read) = poll_read_chunk(cx, stream, conn, io.scratch, &mut now)
        {
            *spent += read?;
            // Echo what was just read in the same pass.
            flush_output(cx, stream, conn, &mut now)?;
            progressed = true;
        }
        progressed |= app.poll_app(cx, conn).is_ready();
        Driven::pass(conn);
        if !progressed {
            // Nothing moved: every waker this pass met is registered.
            return Poll::Pending;
        }
        let rearm = conn
            .poll_timeout()
            .is_some_and(|at| io.armed.is_none_or(|armed| at < armed));
        if conn.has_action() || conn.is_closed() || rearm {
            return Poll::Ready(Ok(()));
        }
        if *spent > 0 && *spent >= io.read_budget {
            // The socket may still hold more: the others' turn first.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
    }
}

/// Writes pending output until it is all written or the socket pushes back
/// (its waker is then registered). Returns whether any bytes were written.
///
/// Inlined by hand: called three times per echo, and as a call it cost
/// about 90 instructions per 64-byte echo more (callgrind, 10 x 64).
#[inline(always)]
fn flush_output<S: Stream, P: Protocol>(
    cx: &mut Context<'_>,
    stream: &mut S,
    conn: &mut Connection<P>,
    now: &mut PassClock,
) -> io::Result<bool> {
    let mut wrote = false;
    while !conn.pending_output().is_empty() {
        match Pin::new(&mut *stream).poll_write(cx, conn.pending_output()) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                let at = now.get(conn);
                // Read only for the debug build's check: this is the per-write path.
                #[cfg(debug_assertions)]
                let before = conn.producer_state();
                conn.handle_written(n, at).map_err(io::Error::other)?;
                #[cfg(debug_assertions)]
                Driven::written(before, conn);
                wrote = true;
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            // A stream that would block without registering a waker (a
            // nonblocking socket adapted by hand): try again on the next
            // pass, not never.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                cx.waker().wake_by_ref();
                return Ok(wrote);
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(wrote),
        }
    }
    // A TLS stream takes bytes into its records before they reach the
    // socket; flushing sends them (the waker is registered when it cannot
    // yet). A socket's flush does nothing: it is not asked for.
    if stream.buffers_writes()
        && let Poll::Ready(Err(e)) = Pin::new(&mut *stream).poll_flush(cx)
    {
        return Err(e);
    }
    Ok(wrote)
}

/// Reads one chunk (into the worker's scratch buffer) into the core;
/// `Ready` with the bytes read (0 at the peer's end of input).
///
/// Inlined by hand, as `flush_output` is: called twice per echo, and as a
/// call it cost about 55 instructions per 64-byte echo more (callgrind,
/// 10 x 64).
#[inline(always)]
fn poll_read_chunk<S: Stream, P: Protocol>(
    cx: &mut Context<'_>,
    stream: &mut S,
    conn: &mut Connection<P>,
    scratch: &mut [u8],
    now: &mut PassClock,
) -> Poll<io::Result<usize>> {
    let mut buf = ReadBuf::new(scratch);
    let read = loop {
        match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
            // A signal: the read did nothing; again.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            // No data and no waker registered: the next pass tries again.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            other => break other,
        }
    };
    match read {
        Poll::Ready(Ok(())) => {
            let data = buf.filled();
            if data.is_empty() {
                tracing::debug!("peer closed its write side");
                let at = now.get(conn);
                conn.handle_read_closed(at);
                Driven::read_closed(conn);
            } else {
                tracing::debug!(bytes = data.len(), "data received");
                let at = now.get(conn);
                if let Err(e) = conn.handle_data(data, at) {
                    return Poll::Ready(Err(io::Error::other(e)));
                }
            }
            Poll::Ready(Ok(data.len()))
        }
        // TLS: the peer's TCP end-of-file came without a close_notify.
        // Many peers close that way; for the echo it is an end of
        // input, and a client still owed bytes reports it truncated.
        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            tracing::debug!("peer closed without TLS close_notify");
            let at = now.get(conn);
            conn.handle_read_closed(at);
            Driven::read_closed(conn);
            Poll::Ready(Ok(0))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Closes after a flush. If the peer may still be sending, half-close first
/// and read (discarding) until its end-of-file or `linger`, so that unread
/// bytes do not turn the close into a reset that destroys our last echoes.
///
/// The half-close counts against `linger` too: a kernel socket's shutdown
/// returns at once, but a stream that waits for room to send its FIN (the
/// simulated one does, as TCP sends FIN after the data before it) must not
/// hold the close longer than a drain would. After a clean end the
/// half-close gets at least [`CLEAN_SHUTDOWN`], even with no linger: a TLS
/// stream's shutdown writes its close_notify first, and dropping it unsent
/// would make a finished echo look truncated to the peer.
async fn lingering_close<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    read_open: bool,
    linger: Duration,
    clean: bool,
    (read_chunk, read_budget, spent): (usize, usize, usize),
) {
    let started = tokio::time::Instant::now();
    let shutdown_for = if clean {
        linger.max(CLEAN_SHUTDOWN)
    } else {
        linger
    };
    let shut = tokio::time::timeout(shutdown_for, stream.shutdown()).await;
    if !matches!(shut, Ok(Ok(()))) || !read_open || linger.is_zero() {
        return;
    }
    let drain = async {
        // On the heap, and only now: an array here would sit inline in every
        // connection's future for its whole life (4 KiB per idle connection).
        // Reads no larger than the connection's own, so that a turn is
        // its read budget plus one read here too.
        let mut sink = vec![0u8; read_chunk.clamp(1, 4096)];
        let mut this_turn = spent;
        loop {
            let n = match stream.read(&mut sink).await {
                Ok(0) => break,
                Ok(n) => n,
                // Hiccups, as in `poll_io`: not the end of the drain.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(_) => break,
            };
            // A peer that keeps sending must not keep this task from
            // yielding: the others' turn after each read budget.
            this_turn += n;
            if this_turn >= read_budget {
                this_turn = 0;
                tokio::task::yield_now().await;
            }
        }
    };
    let _ = tokio::time::timeout_at(started + linger, drain).await;
}

/// What woke a connection's driver.
enum Woke {
    /// The socket or the application moved, or the connection needs the
    /// driver's loop (an action, its end, an earlier deadline); an error
    /// ends the connection.
    Io(io::Result<()>),
    /// The armed deadline passed.
    Timer,
    /// The server was told to close its connections.
    Close,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::counting_waker;
    use echo_core::{EchoFactory, Factory, WaterMarks};
    use std::cell::Cell;
    use std::pin::pin;
    use std::rc::Rc;

    #[test]
    fn the_read_buffer_is_the_length_asked_for_and_a_nested_borrow_gets_its_own() {
        with_scratch(8, |outer| {
            assert_eq!(outer.len(), 8);
            outer.fill(7);
            with_scratch(4, |inner| {
                assert_eq!(inner.len(), 4);
                inner.fill(1);
            });
            assert_eq!(outer, [7; 8], "the nested poll wrote into the outer buffer");
        });
        // Released again: a later poll gets the worker's buffer, grown.
        with_scratch(16, |again| assert_eq!(again.len(), 16));
    }

    /// A peer that always has more to send and takes every echo at once:
    /// its socket never runs dry (until `cap` bytes, after which it waits
    /// for ever, so that a driver with no budget fails the spec, not hangs).
    struct Firehose {
        read: Rc<Cell<usize>>,
        written: Rc<Cell<usize>>,
        cap: usize,
    }

    impl AsyncRead for Firehose {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = buf.remaining().min(self.cap - self.read.get());
            if n == 0 {
                return Poll::Pending;
            }
            buf.put_slice(&vec![b'x'; n]);
            self.read.set(self.read.get() + n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Firehose {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.set(self.written.get() + buf.len());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Stream for Firehose {
        fn buffers_writes(&self) -> bool {
            false
        }
    }

    /// Polls a served echo over a firehose twice, 100-byte reads; returns
    /// (bytes read, bytes echoed, wakes) after each poll, each poll pending.
    fn two_wakes_of_a_firehose(read_budget: usize) -> [(usize, usize, usize); 2] {
        let (read, written) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let mut stream = Firehose {
            read: read.clone(),
            written: written.clone(),
            cap: 1 << 20,
        };
        let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let echo = EchoFactory::default()
            .build_protocol(&addr.into(), &addr.into())
            .unwrap();
        let mut conn = Connection::new(echo, addr, addr, WaterMarks::default(), now());
        let config = DriveConfig {
            read_chunk: 100,
            read_budget,
            ..DriveConfig::default()
        };
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut app = NoApp;
        let mut driving = pin!(drive(&mut stream, &mut conn, &mut app, &config, None));
        [(); 2].map(|()| {
            assert!(driving.as_mut().poll(&mut cx).is_pending());
            (read.get(), written.get(), wakes.wakes())
        })
    }

    #[test]
    fn a_peer_that_never_runs_dry_is_read_one_budget_per_wake_and_woken_to_go_on() {
        assert_eq!(
            two_wakes_of_a_firehose(1000),
            [(1000, 1000, 1), (2000, 2000, 2)],
            "(read, echoed, wakes) after each poll"
        );
    }

    #[test]
    fn a_read_budget_is_spent_in_whole_reads_and_never_stops_the_first() {
        assert_eq!(two_wakes_of_a_firehose(150), [(200, 200, 1), (400, 400, 2)]);
        assert_eq!(two_wakes_of_a_firehose(0), [(100, 100, 1), (200, 200, 2)]);
    }

    /// A socket that hiccups as nonblocking ones do: each read and each
    /// write first fails with `Interrupted`, then with `WouldBlock` (no
    /// waker registered), then works.
    struct Hiccups {
        reads: std::collections::VecDeque<io::Result<&'static [u8]>>,
        writes: std::collections::VecDeque<io::ErrorKind>,
        echoed: Rc<Cell<usize>>,
    }

    impl AsyncRead for Hiccups {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.reads.pop_front() {
                Some(Ok(data)) => {
                    buf.put_slice(data);
                    Poll::Ready(Ok(()))
                }
                Some(Err(e)) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            }
        }
    }

    impl AsyncWrite for Hiccups {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if let Some(kind) = self.writes.pop_front() {
                return Poll::Ready(Err(kind.into()));
            }
            self.echoed.set(self.echoed.get() + buf.len());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Stream for Hiccups {}

    #[test]
    fn interrupted_and_would_block_are_hiccups_not_failures() {
        use io::ErrorKind::{Interrupted, WouldBlock};
        let echoed = Rc::new(Cell::new(0));
        let mut stream = Hiccups {
            reads: [
                Err(Interrupted.into()),
                Err(WouldBlock.into()),
                Ok(&b"abc"[..]),
            ]
            .into(),
            writes: [Interrupted, WouldBlock].into(),
            echoed: echoed.clone(),
        };
        let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let echo = EchoFactory::default()
            .build_protocol(&addr.into(), &addr.into())
            .unwrap();
        let mut conn = Connection::new(echo, addr, addr, WaterMarks::default(), now());
        let config = DriveConfig::default();
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut app = NoApp;
        let mut driving = pin!(drive(&mut stream, &mut conn, &mut app, &config, None));
        // Each WouldBlock wakes the task to try again; no poll ends it.
        for _ in 0..4 {
            assert!(driving.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(echoed.get(), 3, "the echo went out after the hiccups");
        assert!(
            wakes.wakes() >= 2,
            "a WouldBlock without a waker must wake the task"
        );
    }
}
