//! A second runtime for the same core: blocking `std::net` sockets, a thread
//! per connection, no tokio. It exists to show that the state machines in
//! `echo-core` are runtime-free, and as a template for embedding them
//! elsewhere.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use echo_core::{Action, Connection, EchoFactory, Factory, Protocol, WaterMarks};

use crate::policy::{DEFAULT_LINGER, DEFAULT_READ_CHUNK, drain_events, reason_for};

/// Drives `conn` over a blocking stream until it closes, handing each event
/// to `on_event`. Reads and writes alternate (one thread); a read waits at
/// most until the core's next deadline.
///
/// # Errors
/// Only errors that the core cannot absorb as a connection loss (setting a
/// socket timeout); socket failures end the connection with a reason.
pub fn drive<P: Protocol>(
    stream: &mut TcpStream,
    conn: &mut Connection<P>,
    mut on_event: impl FnMut(P::Event),
) -> io::Result<()> {
    let mut buf = vec![0u8; DEFAULT_READ_CHUNK];
    loop {
        // A write to a peer that does not read waits at most until the
        // core's next deadline, like a read.
        stream.set_write_timeout(until_deadline(conn))?;
        while !conn.is_closed() && !conn.pending_output().is_empty() {
            match stream.write(conn.pending_output()) {
                Ok(0) => lose(conn, ErrorKind::WriteZero),
                Ok(n) => conn
                    .handle_written(n, Instant::now())
                    .map_err(io::Error::other)?,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    conn.handle_timeout(Instant::now());
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => lose(conn, e.kind()),
            }
        }
        // The same socket operations as the tokio driver: half-close,
        // lingering close, reset on abort. Close and Abort complete
        // themselves in the core; the socket only follows.
        while let Some(action) = conn.poll_action() {
            match action {
                Action::ShutdownWrite => {
                    if let Err(e) = stream.shutdown(Shutdown::Write) {
                        lose(conn, e.kind());
                    }
                }
                Action::Close => lingering_close(stream, conn.is_read_open()),
                Action::Abort => reset_on_close(stream),
                // A newer core's action this adapter does not know: reset
                // rather than guess.
                other => {
                    tracing::warn!(?other, "unknown action; resetting the connection");
                    reset_on_close(stream);
                    conn.abort(Instant::now());
                }
            }
        }
        while let Some(event) = conn.poll_event() {
            on_event(event);
        }
        if conn.is_closed() {
            return Ok(());
        }
        let wait = until_deadline(conn);
        if !conn.wants_read() {
            // Not reading, nothing to write: on one thread only a timer can
            // move us now. Without one nothing ever will (a protocol that
            // paused itself): say so instead of polling.
            let Some(wait) = wait else {
                return Err(io::Error::other(
                    "the connection neither reads nor writes and has no timer",
                ));
            };
            thread::sleep(wait);
            conn.handle_timeout(Instant::now());
            continue;
        }
        stream.set_read_timeout(wait)?;
        match stream.read(&mut buf) {
            Ok(0) => conn.handle_read_closed(Instant::now()),
            Ok(n) => {
                conn.handle_data(&buf[..n], Instant::now())
                    .map_err(io::Error::other)?;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                conn.handle_timeout(Instant::now());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => lose(conn, e.kind()),
        }
    }
}

/// Closes after a flush. If the peer may still be sending, half-close first
/// and read until its end-of-file or [`DEFAULT_LINGER`], so that unread bytes do not
/// turn the close into a reset that destroys our last echoes in flight.
fn lingering_close(stream: &mut TcpStream, read_open: bool) {
    if stream.shutdown(Shutdown::Write).is_err() || !read_open {
        return;
    }
    let until = Instant::now() + DEFAULT_LINGER;
    let mut sink = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// SO_LINGER 0: the close that follows sends RST, as an abort must.
fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// How long until the core's next deadline (at least 1 ms: a zero timeout
/// means "none" to the socket); `None` without a timer.
fn until_deadline<P: Protocol>(conn: &Connection<P>) -> Option<Duration> {
    conn.poll_timeout().map(|at| {
        at.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    })
}

fn lose<P: Protocol>(conn: &mut Connection<P>, kind: ErrorKind) {
    conn.handle_connection_lost(reason_for(&kind.into()), Instant::now());
}

/// Serves echo on `listener`, a thread per admitted connection, counting
/// them in `factory` exactly as the tokio server does, and draining its
/// events after each call (logged at debug), as the tokio server does: the
/// factory queues two per connection until they are polled. Returns when
/// accepting fails.
///
/// # Errors
/// The accept error that stopped it.
pub fn serve(
    listener: &TcpListener,
    factory: &Arc<Mutex<EchoFactory>>,
    marks: WaterMarks,
) -> io::Result<()> {
    loop {
        let (mut stream, peer) = listener.accept()?;
        let host = stream.local_addr()?;
        let _ = stream.set_nodelay(true);
        let admitted = with_factory(factory, |f| f.build_protocol(&peer.into(), &host.into()));
        let Some(echo) = admitted else {
            continue; // refused: the stream drops, closing it at once
        };
        let factory = Arc::clone(factory);
        thread::spawn(move || {
            let mut conn = Connection::new(echo, host, peer, marks, Instant::now());
            if drive(&mut stream, &mut conn, |never| match never {}).is_err() {
                lose(&mut conn, ErrorKind::Other);
            }
            with_factory(&factory, |f| f.connection_ended(&conn));
        });
    }
}

/// Runs `f` on the factory, then drains (and logs) the events it made.
fn with_factory<R>(factory: &Mutex<EchoFactory>, f: impl FnOnce(&mut EchoFactory) -> R) -> R {
    let mut factory = factory.lock().unwrap_or_else(PoisonError::into_inner);
    let result = f(&mut factory);
    drain_events(&mut factory, |event| {
        tracing::debug!(?event, "server event")
    });
    result
}
