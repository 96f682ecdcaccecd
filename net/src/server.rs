//! The echo server: accept loops over any [`Listener`], one task per
//! connection, an exact open-connection count, and graceful shutdown.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use echo_core::{Connection, Echo, EchoFactory, Factory, ServerConfig, ServerEvent, WaterMarks};
use tokio::sync::watch;
use tracing::Instrument;

use crate::driver::{DriveConfig, NoApp, drive, now};
use crate::listener::{Accepted, Listener};
use crate::signal::CloseSignal;
use crate::spawn::Spawner;
use crate::stream::Stream;
use crate::traffic::{Counters, Metered, Traffic};

/// First pause after an accept error that is not about one connection
/// (out of file descriptors, say); doubles up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between accept retries.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Everything the server needs to know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Connection limit and idle timeout.
    pub config: ServerConfig,
    /// Per-connection output buffer thresholds.
    pub marks: WaterMarks,
    /// Read size, linger and flush timeouts.
    pub drive: DriveConfig,
    /// Count bytes in and out as they move ([`EchoServer::traffic`]); off,
    /// the connections pay nothing for it.
    pub count_traffic: bool,
}

/// How a graceful shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// Every connection ended within the grace period.
    Drained,
    /// The grace period expired; this many connections were then closed.
    GraceExpired {
        /// Connections still open when the grace period ran out.
        closed: usize,
    },
}

/// A running echo server. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct EchoServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The core factory: admission, counting, events.
    factory: Mutex<EchoFactory>,
    /// Settings.
    options: ServerOptions,
    /// `false` once the server stops accepting.
    accepting: watch::Sender<bool>,
    /// Set once open connections must close.
    close: CloseSignal,
    /// Open connections, for waiting until there are none.
    open: watch::Sender<usize>,
    /// The largest unsent buffer any ended connection ever held.
    peak_buffered: AtomicUsize,
    /// The most capacity any connection's empty output buffer kept.
    peak_idle_capacity: AtomicUsize,
    /// Told every factory event, after it is logged.
    observer: OnceLock<Observer>,
    /// Bytes and losses, for [`EchoServer::traffic`].
    counters: Counters,
}

/// A callback for factory events (a newtype so `Inner` can be `Debug`).
struct Observer(Box<dyn Fn(&ServerEvent) + Send + Sync>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl Inner {
    /// Runs `f` on the factory, then logs its events and publishes the count.
    fn with_factory<R>(&self, f: impl FnOnce(&mut EchoFactory) -> R) -> R {
        let mut factory = self.factory.lock().unwrap_or_else(PoisonError::into_inner);
        let result = f(&mut factory);
        while let Some(event) = factory.poll_event() {
            log_event(&event);
            if let ServerEvent::ConnectionLost { reason, .. } = &event {
                self.counters.lost(reason);
            }
            if let Some(Observer(observe)) = self.observer.get() {
                observe(&event);
            }
        }
        self.open.send_replace(factory.open_connections());
        result
    }
}

fn log_event(event: &ServerEvent) {
    match event {
        ServerEvent::Started => tracing::debug!("factory started"),
        ServerEvent::Stopped => tracing::debug!("factory stopped"),
        ServerEvent::ConnectionMade {
            id,
            peer,
            host,
            open,
        } => {
            tracing::info!(%id, %peer, %host, open, "connection made");
        }
        ServerEvent::ConnectionRefused { peer, open, limit } => {
            tracing::warn!(%peer, open, limit, "connection refused: limit reached");
        }
        ServerEvent::ConnectionLost {
            id,
            peer,
            reason,
            received,
            open,
        } => {
            tracing::info!(%id, %peer, %reason, received, open, "connection lost");
        }
        other => tracing::debug!(?other, "server event"),
    }
}

impl EchoServer {
    /// A server with `options`, not yet accepting.
    #[must_use]
    pub fn new(options: ServerOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                factory: Mutex::new(EchoFactory::new(options.config)),
                options,
                accepting: watch::Sender::new(true),
                close: CloseSignal::new(),
                open: watch::Sender::new(0),
                peak_buffered: AtomicUsize::new(0),
                peak_idle_capacity: AtomicUsize::new(0),
                observer: OnceLock::new(),
                counters: Counters::default(),
            }),
        }
    }

    /// Accepts from `listener` until [`stop_accepting`](Self::stop_accepting),
    /// spawning a task per admitted connection; refused ones are closed at
    /// once. Accept errors are logged and retried with back-off, never fatal.
    pub async fn serve<L: Listener, Sp: Spawner>(&self, listener: L, spawner: Sp) {
        let mut accepting = self.inner.accepting.subscribe();
        if !*accepting.borrow_and_update() {
            return;
        }
        self.inner.with_factory(Factory::do_start);
        let mut backoff = MIN_ACCEPT_BACKOFF;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = accepting.wait_for(|on| !*on) => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok(accepted) => {
                    backoff = MIN_ACCEPT_BACKOFF;
                    self.admit(accepted, &spawner);
                }
                Err(error) if is_per_connection(&error) => {
                    tracing::debug!(%error, "accept failed for one connection");
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "accept failed; backing off");
                    let stopped = tokio::select! {
                        biased;
                        _ = accepting.wait_for(|on| !*on) => true,
                        () = tokio::time::sleep(backoff) => false,
                    };
                    if stopped {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
            }
        }
        self.inner.with_factory(Factory::do_stop);
    }

    fn admit<S: Stream + Send + 'static, Sp: Spawner>(&self, accepted: Accepted<S>, spawner: &Sp) {
        let Accepted { stream, peer, host } = accepted;
        let now = now();
        let Some(echo) = self.inner.with_factory(|f| f.build_protocol(&peer, &host)) else {
            drop(stream); // refused: closed at once
            return;
        };
        let span = tracing::info_span!("conn", id = %echo.id(), %peer);
        let conn = Connection::new(echo, host, peer, self.inner.options.marks, now);
        let served = Served {
            stream: Some(stream),
            conn,
            inner: Arc::clone(&self.inner),
            seen: (0, 0),
        };
        spawner.spawn(served.run().instrument(span));
    }

    /// Hands every factory event (admission, refusal, loss, in order) to
    /// `observer` as well as to the log: for metrics, or for checking the
    /// accounting from outside, as the simulation does. It runs under the
    /// factory's lock, so it must be quick and must not call back into the
    /// server. Only the first observer set is kept; `false` if one was
    /// already set.
    pub fn observe(&self, observer: impl Fn(&ServerEvent) + Send + Sync + 'static) -> bool {
        self.inner
            .observer
            .set(Observer(Box::new(observer)))
            .is_ok()
    }

    /// Watches whether the server still accepts (for other serve loops).
    pub(crate) fn accepting(&self) -> watch::Receiver<bool> {
        self.inner.accepting.subscribe()
    }

    /// Connections open now.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        *self.inner.open.borrow()
    }

    /// Connections admitted and refused so far.
    #[must_use]
    pub fn totals(&self) -> (u64, u64) {
        self.inner.with_factory(|f| (f.accepted(), f.refused()))
    }

    /// The server's counters now: connections open, accepted and refused,
    /// bytes in and out (with `count_traffic`), losses by reason.
    #[must_use]
    pub fn traffic(&self) -> Traffic {
        let (open, accepted, refused) = self
            .inner
            .with_factory(|f| (f.open_connections(), f.accepted(), f.refused()));
        let counters = &self.inner.counters;
        Traffic {
            open,
            accepted,
            refused,
            bytes_in: counters.bytes_in.load(Ordering::Relaxed),
            bytes_out: counters.bytes_out.load(Ordering::Relaxed),
            lost: counters.losses(),
        }
    }

    /// The largest unsent output any ended connection ever held: with
    /// backpressure working, at most the high-water mark plus one read.
    #[must_use]
    pub fn peak_connection_buffer(&self) -> usize {
        self.inner.peak_buffered.load(Ordering::Relaxed)
    }

    /// The most capacity any ended connection's output buffer kept while
    /// empty: what an idle connection holds after a burst (at most
    /// [`echo_core::KEEP_DRAINED_CAPACITY`]).
    #[must_use]
    pub fn peak_idle_capacity(&self) -> usize {
        self.inner.peak_idle_capacity.load(Ordering::Relaxed)
    }

    /// Stops every accept loop at once; open connections carry on.
    pub fn stop_accepting(&self) {
        self.inner.accepting.send_replace(false);
    }

    /// Tells every open connection to stop reading, flush what it owes, and
    /// close (resetting if the flush outlasts the flush timeout).
    pub fn close_all(&self) {
        self.inner.close.trigger();
    }

    /// Waits until no connection is open.
    pub async fn wait_idle(&self) {
        let mut open = self.inner.open.subscribe();
        let _ = open.wait_for(|n| *n == 0).await;
    }

    /// Graceful shutdown: stop accepting, let open connections finish for up
    /// to `grace`, then close the rest and wait for them.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownOutcome {
        self.stop_accepting();
        let open = self.open_connections();
        if open > 0 {
            tracing::info!(open, ?grace, "waiting for open connections to finish");
        }
        if tokio::time::timeout(grace, self.wait_idle()).await.is_ok() {
            return ShutdownOutcome::Drained;
        }
        let closed = self.open_connections();
        tracing::info!(open = closed, "grace period expired; closing connections");
        self.close_all();
        self.wait_idle().await;
        ShutdownOutcome::GraceExpired { closed }
    }
}

/// Errors that concern one connection attempt, not the listener.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// One served connection. Its drop closes the socket and then reports the
/// connection lost, so the count is exact however the task ends: normally,
/// by a panic, or cancelled with its runtime.
struct Served<S> {
    stream: Option<S>,
    conn: Connection<Echo>,
    inner: Arc<Inner>,
    /// Bytes (in, out) already added to the server's counters.
    seen: (u64, u64),
}

impl<S: Stream> Served<S> {
    async fn run(mut self) {
        let close = self.inner.close.clone();
        if let Some(stream) = self.stream.as_mut() {
            let config = self.inner.options.drive;
            if self.inner.options.count_traffic {
                let mut app = Metered {
                    counters: &self.inner.counters,
                    seen: &mut self.seen,
                };
                drive(stream, &mut self.conn, &mut app, config, Some(close)).await;
            } else {
                drive(stream, &mut self.conn, &mut NoApp, config, Some(close)).await;
            }
        }
    }
}

impl<S> Drop for Served<S> {
    fn drop(&mut self) {
        drop(self.stream.take());
        let peak = self.conn.transport().peak_buffered();
        self.inner.peak_buffered.fetch_max(peak, Ordering::Relaxed);
        let idle = self.conn.transport().peak_idle_capacity();
        self.inner
            .peak_idle_capacity
            .fetch_max(idle, Ordering::Relaxed);
        if self.inner.options.count_traffic {
            Metered::count(&self.inner.counters, &mut self.seen, &self.conn);
        }
        let conn = &self.conn;
        self.inner.with_factory(|f| f.connection_ended(conn));
    }
}
