//! The echo server: accept loops over any [`Listener`], one task per
//! connection, an exact open-connection count, and graceful shutdown.
//!
//! Here, what a server is and what it offers (serve, observe, count, shut
//! down); beside it, one concept per file: the accept loop (`accept`), a
//! `haproxy:` connection's PROXY header (`proxy`), an `ssl:` connection's
//! handshake (`handshake`), and a connection from admission to its booked
//! end (`served`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use echo_core::{EchoFactory, ServerConfig, ServerEvent, WaterMarks};
use tokio::sync::watch;

use crate::access::AccessList;
use crate::driver::DriveConfig;
use crate::listener::Listener;
use crate::policy::drain_events;
use crate::signal::CloseSignal;
use crate::spawn::Spawner;
use crate::tls::TlsServer;
use crate::traffic::{Counters, Traffic};
use crate::warnings::{Throttle, Warning};

mod accept;
mod handshake;
mod proxy;
mod served;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) mod uring;

/// How long a `haproxy:` connection has to send its PROXY header (the spec
/// asks for at least 3 s, to cover a TCP retransmission).
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

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

/// What each accepted connection goes through before its echo.
enum Wrap {
    /// Nothing: admitted at once.
    Plain,
    /// A PROXY header (`haproxy:`).
    Proxied,
    /// A TLS handshake (`ssl:`), after a PROXY header with `proxied`.
    Tls {
        /// Certificate and policy.
        tls: Arc<TlsServer>,
        /// `haproxy:ssl:`.
        proxied: bool,
    },
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
    /// Which peers are served ([`EchoServer::restrict`]).
    access: OnceLock<AccessList>,
    /// Thins the warnings a peer can cause.
    warnings: Throttle,
    /// A health check the access list would have turned away was served
    /// and said so.
    exempt_said: std::sync::atomic::AtomicBool,
    /// Loops that sleep in the kernel (io_uring's) until something
    /// happens: nudged when the server stops accepting or closes its
    /// connections, so they need no timer to notice.
    nudges: Mutex<Vec<std::sync::Weak<dyn Nudge>>>,
}

/// A loop's way to be woken from another thread.
pub(crate) trait Nudge: Send + Sync {
    fn nudge(&self);
}

impl std::fmt::Debug for dyn Nudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nudge")
    }
}

/// A callback for factory events (a newtype so `Inner` can be `Debug`).
struct Observer(Box<dyn Fn(&ServerEvent) + Send + Sync>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl Inner {
    /// Wakes every loop that asked to be (the ones still running).
    fn nudge_all(&self) {
        let mut nudges = self.nudges.lock().unwrap_or_else(PoisonError::into_inner);
        nudges.retain(|n| match n.upgrade() {
            Some(n) => {
                n.nudge();
                true
            }
            None => false,
        });
    }

    /// Has `nudge` woken when the server stops accepting or closes its
    /// connections (while the loop holds it).
    #[cfg_attr(not(all(feature = "uring", target_os = "linux")), allow(dead_code))]
    fn wake_on_change(&self, nudge: std::sync::Weak<dyn Nudge>) {
        self.nudges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(nudge);
    }

    /// Runs `f` on the factory, then logs its events and publishes the count.
    fn with_factory<R>(&self, f: impl FnOnce(&mut EchoFactory) -> R) -> R {
        let mut factory = self.factory.lock().unwrap_or_else(PoisonError::into_inner);
        let result = f(&mut factory);
        drain_events(&mut factory, |event| {
            log_event(event, &self.warnings);
            match event {
                ServerEvent::ConnectionLost { reason, .. } => self.counters.lost(reason),
                ServerEvent::ConnectionMade {
                    health_check: true, ..
                } => {
                    self.counters.health_checks.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            if let Some(Observer(observe)) = self.observer.get() {
                observe(event);
            }
        });
        self.counters.publish(&factory);
        self.open.send_replace(factory.open_connections());
        result
    }
}

fn log_event(event: &ServerEvent, warnings: &Throttle) {
    match event {
        ServerEvent::Started => tracing::debug!("factory started"),
        ServerEvent::Stopped => tracing::debug!("factory stopped"),
        ServerEvent::ConnectionMade {
            health_check: true,
            id,
            peer,
            host,
            open,
            ..
        } => {
            tracing::debug!(%id, %peer, %host, open, "health check made (PROXY LOCAL, or a v1 header declaring its own socket)");
        }
        ServerEvent::ConnectionMade {
            id,
            peer,
            host,
            via,
            client_subject,
            open,
            ..
        } => {
            // `None` fields are left out of the line.
            let via = via.as_ref().map(tracing::field::display);
            let subject = client_subject.as_deref();
            tracing::info!(%id, %peer, via, %host, subject, open, "connection made");
        }
        ServerEvent::ConnectionRefused { peer, open, limit } => {
            tracing::debug!(%peer, open, limit, "connection refused at the limit");
            if warnings.allow(Warning::LimitReached, peer, "limit reached") {
                tracing::warn!(%peer, open, limit, "connection refused: limit reached");
            }
        }
        ServerEvent::ConnectionDenied { peer } => {
            tracing::debug!(%peer, "connection denied by the access list");
            if warnings.allow(Warning::Denied, peer, "denied") {
                tracing::warn!(%peer, "connection denied by --allow/--deny");
            }
        }
        ServerEvent::ConnectionLost {
            health_check: true,
            id,
            peer,
            reason,
            open,
            ..
        } => {
            tracing::debug!(%id, %peer, %reason, open, "health check ended");
        }
        ServerEvent::ConnectionLost {
            id,
            peer,
            reason,
            received,
            open,
            ..
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
                access: OnceLock::new(),
                warnings: Throttle::default(),
                exempt_said: std::sync::atomic::AtomicBool::new(false),
                nudges: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Accepts from `listener` until [`stop_accepting`](Self::stop_accepting),
    /// spawning a task per admitted connection; refused ones are closed at
    /// once. Accept errors are logged and retried with back-off, never fatal.
    pub async fn serve<L: Listener, Sp: Spawner>(&self, listener: L, spawner: Sp) {
        self.serve_inner(listener, spawner, Wrap::Plain).await;
    }

    /// Like [`serve`](Self::serve), for a `haproxy:` endpoint: each
    /// connection must start with a PROXY header (v1 or v2) within
    /// [`PROXY_HEADER_TIMEOUT`]; the client it declares is the connection's
    /// peer (the balancer is logged as `via`). A missing, malformed or late
    /// header closes the connection, logged and counted
    /// ([`Traffic::bad_headers`]).
    pub async fn serve_proxied<L: Listener, Sp: Spawner>(&self, listener: L, spawner: Sp) {
        self.serve_inner(listener, spawner, Wrap::Proxied).await;
    }

    /// Like [`serve`](Self::serve), for an `ssl:` endpoint: each
    /// connection first completes a TLS handshake within
    /// [`DriveConfig::handshake_timeout`], and only then is admitted
    /// (counted, limited, logged with its client certificate's subject
    /// under mutual TLS). A failed or late handshake is logged once with
    /// its reason and counted ([`Traffic::tls_failures`]). With `proxied`
    /// (`haproxy:ssl:`) a PROXY header comes first, before the handshake, as
    /// HAProxy and AWS load balancers send it.
    pub async fn serve_tls<L: Listener, Sp: Spawner>(
        &self,
        listener: L,
        spawner: Sp,
        tls: TlsServer,
        proxied: bool,
    ) {
        let tls = Arc::new(tls);
        self.serve_inner(listener, spawner, Wrap::Tls { tls, proxied })
            .await;
    }

    /// Serves only the peers `access` admits (decided on the peer the
    /// server reports, after any PROXY header). Only the first list set is
    /// kept; `false` if one was set already.
    pub fn restrict(&self, access: AccessList) -> bool {
        self.inner.access.set(access).is_ok()
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

    /// The live counters (for other serve loops).
    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
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
    /// bytes in and out (with `count_traffic`), losses by reason. Takes no
    /// lock: a metrics scrape never waits on, nor holds up, a connection.
    #[must_use]
    pub fn traffic(&self) -> Traffic {
        let counters = &self.inner.counters;
        let mut traffic = Traffic {
            open: counters.open.load(Ordering::Relaxed),
            accepted: counters.accepted.load(Ordering::Relaxed),
            refused: counters.refused.load(Ordering::Relaxed),
            denied: counters.denied.load(Ordering::Relaxed),
            bytes_in: counters.bytes_in.load(Ordering::Relaxed),
            bytes_out: counters.bytes_out.load(Ordering::Relaxed),
            lost: counters.losses(),
            udp: counters.udp(),
            health_checks: counters.health_checks.load(Ordering::Relaxed),
            cut_offs: counters.cut_offs(),
            ..Traffic::default()
        };
        counters.fill_tls_and_proxy(&mut traffic);
        traffic
    }

    /// The largest echo any ended connection ever owed at once (unsent,
    /// or held back by a fault knob): with backpressure working, at most
    /// the high-water mark plus one read.
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
        self.inner.nudge_all();
    }

    /// Tells every open connection to stop reading, flush what it owes, and
    /// close (resetting if the flush outlasts the flush timeout).
    pub fn close_all(&self) {
        self.inner.close.trigger();
        self.inner.nudge_all();
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
            self.inner.warnings.flush();
            return ShutdownOutcome::Drained;
        }
        let closed = self.open_connections();
        tracing::info!(open = closed, "grace period expired; closing connections");
        self.close_all();
        self.wait_idle().await;
        self.inner.warnings.flush();
        ShutdownOutcome::GraceExpired { closed }
    }
}
