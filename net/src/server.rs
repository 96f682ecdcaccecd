//! The echo server: accept loops over any [`Listener`], one task per
//! connection, an exact open-connection count, and graceful shutdown.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use echo_core::{
    Address, Arrival, Connection, Echo, EchoFactory, Factory, ProxyDecoder, ProxyError,
    ProxyHeader, ServerConfig, ServerEvent, WaterMarks,
};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tracing::Instrument;

use crate::access::AccessList;
use crate::driver::{DriveConfig, NoApp, drive, now};
use crate::listener::{Accepted, Listener};
use crate::signal::CloseSignal;
use crate::spawn::Spawner;
use crate::stream::{Prefixed, Stream};
use crate::tls::{HandshakeFailure, TlsServer, client_subject, describe_on_server, was_resumed};
use crate::traffic::{Counters, Metered, ProxyRefusal, Traffic};
use crate::warnings::{Throttle, Warning};

/// First pause after an accept error that is not about one connection
/// (out of file descriptors, say); doubles up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between accept retries.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
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
            log_event(&event, &self.warnings);
            match &event {
                ServerEvent::ConnectionLost { reason, .. } => self.counters.lost(reason),
                ServerEvent::ConnectionMade {
                    health_check: true, ..
                } => {
                    self.counters.health_checks.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            if let Some(Observer(observe)) = self.observer.get() {
                observe(&event);
            }
        }
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

    async fn serve_inner<L: Listener, Sp: Spawner>(&self, listener: L, spawner: Sp, wrap: Wrap) {
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
                    let inner = Arc::clone(&self.inner);
                    match &wrap {
                        Wrap::Plain => self.admit(accepted, &spawner),
                        Wrap::Proxied => spawner.spawn(proxied_connection(inner, accepted)),
                        Wrap::Tls { tls, proxied } => {
                            let tls = Arc::clone(tls);
                            spawner.spawn(tls_connection(inner, accepted, tls, *proxied));
                        }
                    }
                }
                Err(error) if is_per_connection(&error) => {
                    tracing::debug!(%error, "accept failed for one connection");
                }
                Err(error) => {
                    let reason = error.to_string();
                    if self
                        .inner
                        .warnings
                        .allow(Warning::AcceptFailed, &"-", &reason)
                    {
                        tracing::warn!(%error, retry_in = ?backoff, "accept failed; backing off");
                    }
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
        if let Some((served, span)) =
            start(&self.inner, stream, peer, host, Arrival::default(), &[])
        {
            // A disabled span (the log level is above info) would still
            // take its room in every connection's future.
            if span.is_disabled() {
                spawner.spawn(served.run());
            } else {
                spawner.spawn(served.run().instrument(span));
            }
        }
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

/// Errors that concern one connection attempt, not the listener.
/// Admits a connection (or turns it away: access list, limit) and makes
/// its served task: the protocol, its span, and `first` (bytes that came
/// with a PROXY header) already fed.
fn start<S: Stream>(
    inner: &Arc<Inner>,
    stream: S,
    peer: Address,
    host: Address,
    arrival: Arrival,
    first: &[u8],
) -> Option<(Served<S>, tracing::Span)> {
    if let Some(access) = inner.access.get()
        && !access.admits(&peer)
    {
        if !arrival.health_check {
            inner.with_factory(|f| f.deny(&peer));
            return None; // closed at once, before any byte is echoed
        }
        // A balancer's check carries no client address for the list to
        // judge, and whoever may send a PROXY header may declare any
        // client anyway: served, and said once.
        if !inner.exempt_said.swap(true, Ordering::Relaxed) {
            tracing::info!(balancer = %peer, "serving the balancer's health checks (PROXY LOCAL or UNKNOWN) although --allow/--deny would turn its address away: they declare no client to judge (said once)");
        }
    }
    let via = arrival.via.clone();
    let admitted = inner.with_factory(|f| f.build_protocol_for(&peer, &host, arrival));
    let echo = admitted?; // refused: the stream drops, closed at once
    let span = match &via {
        Some(via) => tracing::info_span!("conn", id = %echo.id(), %peer, %via),
        None => tracing::info_span!("conn", id = %echo.id(), %peer),
    };
    let now = now();
    let mut conn = Connection::new(echo, host, peer, inner.options.marks, now);
    if !first.is_empty() && conn.handle_data(first, now).is_err() {
        tracing::debug!("bytes after the PROXY header came too late");
    }
    Some((
        Served {
            stream: Some(stream),
            conn,
            inner: Arc::clone(inner),
            seen: (0, 0),
        },
        span,
    ))
}

/// A `haproxy:` connection: its PROXY header first, then the echo.
async fn proxied_connection<S: Stream>(inner: Arc<Inner>, accepted: Accepted<S>) {
    let Some(arrived) = proxy_header(&inner, accepted).await else {
        return;
    };
    if !*inner.accepting.borrow() {
        return; // shut down while the header was on its way
    }
    let Arrived {
        stream,
        peer,
        host,
        arrival,
        first,
    } = arrived;
    if let Some((served, span)) = start(&inner, stream, peer, host, arrival, &first) {
        served.run().instrument(span).await;
    }
}

/// A connection whose PROXY header has been read.
struct Arrived<S> {
    stream: S,
    peer: Address,
    host: Address,
    arrival: Arrival,
    /// Bytes that followed the header in its last read.
    first: Vec<u8>,
}

/// Reads the PROXY header of `accepted`; `None` (logged and counted) when
/// it is missing, malformed or late.
async fn proxy_header<S: Stream>(inner: &Inner, accepted: Accepted<S>) -> Option<Arrived<S>> {
    let Accepted {
        mut stream,
        peer: socket_peer,
        host: socket_host,
    } = accepted;
    let header = tokio::time::timeout(PROXY_HEADER_TIMEOUT, read_proxy_header(&mut stream)).await;
    let reason = match header {
        Ok(Ok(None)) => {
            tracing::debug!(peer = %socket_peer, "closed before sending a PROXY header");
            return None;
        }
        Ok(Ok(Some(Ok((header, first))))) => {
            let (peer, host, via, health_check) = match header {
                ProxyHeader::Proxied {
                    source,
                    destination,
                    tlvs,
                    ..
                } => {
                    tracing::debug!(?tlvs, %source, via = %socket_peer, "PROXY header");
                    // A PROXY command is a connection, whatever client it
                    // declares (HAProxy's v1 checks declare their own
                    // socket, but so may a real client on the same host).
                    (source.into(), destination.into(), Some(socket_peer), false)
                }
                // LOCAL (v2) and UNKNOWN (v1) declare no client: the
                // balancer's own health checks.
                _ => (socket_peer, socket_host, None, true),
            };
            return Some(Arrived {
                stream,
                peer,
                host,
                arrival: Arrival {
                    via,
                    health_check,
                    client_subject: None,
                },
                first,
            });
        }
        Ok(Ok(Some(Err(error)))) => {
            inner.counters.bad_header(&ProxyRefusal::Header(&error));
            error.to_string()
        }
        Ok(Err(error)) => {
            inner.counters.bad_header(&ProxyRefusal::Io);
            format!("socket error before the PROXY header: {error}")
        }
        Err(_) => {
            inner.counters.bad_header(&ProxyRefusal::TimedOut);
            format!("no PROXY header within {PROXY_HEADER_TIMEOUT:?}")
        }
    };
    if inner
        .warnings
        .allow(Warning::ProxyHeader, &socket_peer, &reason)
    {
        tracing::warn!(peer = %socket_peer, %reason, "closing a connection without a valid PROXY header");
    }
    None
}

/// An `ssl:` connection: its PROXY header (`haproxy:ssl:`), its handshake,
/// then the echo.
async fn tls_connection<S: Stream>(
    inner: Arc<Inner>,
    accepted: Accepted<S>,
    tls: Arc<TlsServer>,
    proxied: bool,
) {
    let timeout = inner.options.drive.handshake_timeout;
    let mut deadline = tokio::time::Instant::now() + timeout;
    let arrived = if proxied {
        let Some(arrived) = proxy_header(&inner, accepted).await else {
            return;
        };
        deadline = tokio::time::Instant::now() + timeout; // the handshake's time starts after the header
        arrived
    } else {
        // The first record read here, before any TLS state exists: a peer
        // that connects and closes without a byte (a TCP health check, a
        // port scan) is no failed handshake, and one that stalls inside
        // its ClientHello holds a few bytes, not rustls' buffers.
        let Accepted {
            mut stream,
            peer,
            host,
        } = accepted;
        let first = match first_record(&mut stream, deadline).await {
            Ok(None) => {
                tracing::debug!(%peer, "closed before sending a TLS ClientHello");
                return;
            }
            Ok(Some(first)) => first,
            Err(error) => {
                tracing::debug!(%peer, %error, "socket error before a TLS ClientHello");
                return;
            }
        };
        Arrived {
            stream,
            peer,
            host,
            arrival: Arrival::default(),
            first,
        }
    };
    let Arrived {
        stream,
        peer,
        host,
        mut arrival,
        first,
    } = arrived;
    // Boxed, the handshake's state (rustls' connection and buffers) and
    // then the echo's are allocated as each begins: a task's future holds
    // room for its largest stage from the start, and a peer stalled before
    // its first record must cost a few bytes, not that.
    let started = tokio::time::Instant::now();
    let handshake = Box::pin(tls.accept(Prefixed::new(first, stream)));
    let (why, reason) = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(stream)) => {
            let resumed = was_resumed(stream.get_ref().1);
            inner.counters.tls_handshake(started.elapsed(), resumed);
            if resumed {
                tracing::debug!(%peer, "TLS session resumed");
            }
            if !*inner.accepting.borrow() {
                return; // shut down during the handshake
            }
            arrival.client_subject = client_subject(&stream);
            if let Some((served, span)) = start(&inner, stream, peer, host, arrival, &[]) {
                Box::pin(served.run().instrument(span)).await;
            }
            return;
        }
        Ok(Err(error)) => (HandshakeFailure::of(&error), describe_on_server(&error)),
        Err(_) => (
            HandshakeFailure::TimedOut,
            format!("no TLS handshake within {timeout:?}"),
        ),
    };
    inner.counters.tls_failure(why);
    if inner.warnings.allow(Warning::TlsHandshake, &peer, &reason) {
        let via = arrival.via.as_ref().map(tracing::field::display);
        tracing::warn!(%peer, via, %reason, "TLS handshake failed");
    }
}

/// The largest TLS record a ClientHello may come in (2^14 bytes of
/// payload and the 5-byte header).
const MAX_RECORD: usize = (1 << 14) + 5;

/// Reads a TLS connection's first record (its ClientHello, or what a peer
/// that does not speak TLS sent first), as far as it comes by `deadline`
/// (then the handshake times out at once); `None` when the peer closed
/// before a byte. Bytes that do not start a
/// handshake record are handed over as they came, for the handshake to
/// refuse.
async fn first_record<S: Stream>(
    stream: &mut S,
    deadline: tokio::time::Instant,
) -> io::Result<Option<Vec<u8>>> {
    let mut first = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let want = match first.as_slice() {
            [] => 5,
            [0x16, _, _, hi, lo, ..] => {
                (5 + usize::from(u16::from_be_bytes([*hi, *lo]))).min(MAX_RECORD)
            }
            [0x16, ..] => 5,
            _ => return Ok(Some(first)), // not a handshake record
        };
        if first.len() >= want {
            return Ok(Some(first));
        }
        let room = (want - first.len()).min(buf.len());
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[..room])).await {
            Ok(Ok(0)) if first.is_empty() => return Ok(None),
            Ok(Err(error)) if first.is_empty() => return Err(error),
            Ok(Ok(n)) if n > 0 => first.extend_from_slice(&buf[..n]),
            // The handshake says why: a late, cut or broken ClientHello.
            _ => return Ok(Some(first)),
        }
    }
}

/// Reads until the PROXY header is complete; returns it and the bytes that
/// followed it in the last read, or `None` when the peer closed before
/// sending a byte (a TCP health check).
async fn read_proxy_header<S: Stream>(
    stream: &mut S,
) -> io::Result<Option<Result<(ProxyHeader, Vec<u8>), ProxyError>>> {
    let mut decoder = ProxyDecoder::new();
    let mut buf = vec![0u8; 1024];
    let mut any = false;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(any.then_some(Err(ProxyError::Missing)));
        }
        any = true;
        match decoder.feed(&buf[..n]) {
            Ok(None) => {}
            Ok(Some((header, used))) => return Ok(Some(Ok((header, buf[used..n].to_vec())))),
            Err(error) => return Ok(Some(Err(error))),
        }
    }
}

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
    /// Drives the connection to its end.
    ///
    /// Not an `async fn`: an async fn keeps its by-value arguments twice in
    /// its future (the argument, then the local it is moved into; rust-lang
    /// issue 62958), and this future lives as long as the connection. An
    /// `async move` block keeps `self` once: 344 bytes less per connection.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn run(mut self) -> impl Future<Output = ()> {
        async move {
            let close = self.inner.close.clone();
            if let Some(stream) = self.stream.as_mut() {
                let config = &self.inner.options.drive;
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
}

impl<S> Drop for Served<S> {
    fn drop(&mut self) {
        drop(self.stream.take());
        // Bytes a fault knob holds back count as buffered ones do.
        let peak = self
            .conn
            .transport()
            .peak_buffered()
            .max(self.conn.protocol().peak_owed());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection costs is mostly its task's future: keep it
    /// small (it was 1,184 bytes over TCP before the arguments stopped
    /// being stored twice and the settings stopped being copied in; 680
    /// before the close signal's future lost its wrapper: 664 now).
    #[tokio::test]
    async fn a_served_connections_future_stays_small() {
        let server = EchoServer::new(ServerOptions::default());
        let (stream, _peer) = tokio::io::duplex(64);
        let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let (served, _span) = start(
            &server.inner,
            stream,
            addr.into(),
            addr.into(),
            Arrival::default(),
            &[],
        )
        .expect("admitted");
        let future = served.run();
        let size = std::mem::size_of_val(&future);
        assert!(size <= 672, "a served connection's future is {size} bytes");
    }
}
