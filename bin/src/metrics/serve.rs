//! The metrics server's socket, thread and connections, with their bounds.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::ACCEPT;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use super::{
    CONNECTION_LIFETIME, Exposition, HEADER_READ_TIMEOUT, Health, MAX_SCRAPES, MetricsError,
    respond,
};

/// The smallest read buffer hyper takes, which also bounds a request's
/// head: a scrape's request line and headers are far smaller.
const MAX_REQUEST_HEAD: usize = 8192;

/// How long the accept loop pauses after an accept error (out of file
/// descriptors, say) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The metrics socket, bound (so that a port in use fails at start, with
/// the echo's own bind errors) but not yet served.
#[derive(Debug)]
pub struct MetricsListener {
    listener: std::net::TcpListener,
}

impl MetricsListener {
    /// Binds `addr` (port 0: a free port).
    ///
    /// # Errors
    /// [`MetricsError::Bind`]: the port is in use, or the address is not
    /// this host's.
    pub fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let bind = |source| MetricsError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        Ok(Self { listener })
    }

    /// The address bound (with the port picked, for port 0).
    ///
    /// # Errors
    /// When the system cannot say (it always can for a bound socket).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on a thread with a
    /// runtime of its own, for the rest of the process's life: no scrape
    /// runs on a worker that echoes.
    ///
    /// # Errors
    /// [`MetricsError::Start`]: the runtime or the thread cannot start.
    pub fn start(self, exposition: Exposition, health: Arc<Health>) -> Result<(), MetricsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(MetricsError::Start)?;
        let exposition = Arc::new(exposition);
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || runtime.block_on(self.serve(exposition, health)))
            .map_err(MetricsError::Start)?;
        Ok(())
    }

    async fn serve(self, exposition: Arc<Exposition>, health: Arc<Health>) {
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot serve metrics");
                return;
            }
        };
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_REQUEST_HEAD)
            .max_headers(64);
        let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "metrics: accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!(%peer, limit = MAX_SCRAPES, "metrics: too many connections; closed");
                continue; // dropped: closed at once
            };
            let exposition = Arc::clone(&exposition);
            let health = Arc::clone(&health);
            let service = service_fn(move |request: Request<Incoming>| {
                // The body is never read: a request is its head.
                let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
                let response = respond(
                    request.method(),
                    request.uri().path(),
                    accept,
                    &exposition,
                    &health,
                );
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "metrics connection"),
                    Err(_) => {
                        tracing::debug!(%peer, "metrics connection cut off after {CONNECTION_LIFETIME:?}")
                    }
                }
                drop(slot);
            });
        }
    }
}
