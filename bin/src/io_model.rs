//! `echo-server --io`: which kernel interface drives the TCP sockets.
//! epoll (tokio's readiness) is the default and the path the simulation
//! covers; io_uring (completions, one ring and thread per listener) serves
//! `tcp:` and `ssl:` endpoints and their `haproxy:` forms with the same
//! core and the same server; `auto` takes io_uring where this kernel and
//! sandbox allow it.

use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use echo_core::{ServerEndpoint, ServerTls};
use echo_net::{EchoServer, TlsServer};

/// The `--io` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoModel {
    /// tokio's readiness (epoll): every endpoint
    Epoll,
    /// io_uring completions: tcp: and ssl: endpoints (and their haproxy:
    /// forms) only; an error where io_uring is not available
    Uring,
    /// io_uring for tcp: and ssl: (and their haproxy: forms) where
    /// available (else epoll, saying why); the other endpoints on epoll
    Auto,
}

/// The longest `--batch-wait`: past this it is a delay, not a batch.
pub const MAX_BATCH_WAIT: Duration = Duration::from_millis(10);

/// Parses `--batch-wait`: 0, or 1us to [`MAX_BATCH_WAIT`] (the kernel
/// counts the wait in whole microseconds).
///
/// # Errors
/// Not a duration, or out of that range, in words.
pub fn batch_wait(s: &str) -> Result<Duration, String> {
    let wait = crate::duration(s)?;
    if wait.is_zero() || (Duration::from_micros(1)..=MAX_BATCH_WAIT).contains(&wait) {
        Ok(wait)
    } else {
        Err(format!(
            "{s:?} is out of range: the wait is 0 (off) or 1us to 10ms, such as 60us"
        ))
    }
}

/// An endpoint as io_uring serves it.
#[derive(Debug)]
pub struct OnRing<'a> {
    /// The TCP socket it listens on (`tcp:`, whatever the endpoint's form).
    pub tcp: ServerEndpoint,
    /// A PROXY header comes first (`haproxy:`).
    pub proxied: bool,
    /// A TLS handshake comes next (`ssl:`).
    pub tls: Option<&'a ServerTls>,
}

/// How io_uring would serve `endpoint`; `None` for what stays on epoll
/// (unix:, udp:).
#[must_use]
pub fn uring_endpoint(endpoint: &ServerEndpoint) -> Option<OnRing<'_>> {
    let (proxied, inner) = match endpoint {
        ServerEndpoint::Haproxy(inner) => (true, &**inner),
        other => (false, other),
    };
    match inner {
        ServerEndpoint::Tcp { .. } => Some(OnRing {
            tcp: inner.clone(),
            proxied,
            tls: None,
        }),
        ServerEndpoint::Ssl {
            port,
            interface,
            backlog,
            tls,
        } => Some(OnRing {
            tcp: ServerEndpoint::Tcp {
                port: *port,
                interface: *interface,
                backlog: *backlog,
            },
            proxied,
            tls: Some(tls),
        }),
        _ => None,
    }
}

/// `--io uring` takes only endpoints it drives: anything else would run
/// on epoll while the user asked for io_uring.
///
/// # Errors
/// The first endpoint io_uring does not serve, in words.
pub fn check_usage(model: IoModel, listen: &[ServerEndpoint]) -> Result<(), String> {
    if model != IoModel::Uring {
        return Ok(());
    }
    match listen.iter().find(|e| uring_endpoint(e).is_none()) {
        Some(other) => Err(format!(
            "--io uring serves tcp: and ssl: endpoints (and their haproxy: forms), and {other} is not one: use --io auto to serve it on epoll beside them, or --io epoll"
        )),
        None => Ok(()),
    }
}

/// Whether the TCP endpoints run on io_uring: `--io uring` where it is
/// not available is an error; `auto` falls back to epoll with one line
/// saying why.
///
/// # Errors
/// `--io uring` where io_uring cannot run, with the reason.
pub fn resolve(model: IoModel) -> Result<bool, String> {
    match (model, available()) {
        (IoModel::Epoll, _) => Ok(false),
        (IoModel::Uring, Ok(())) | (IoModel::Auto, Ok(())) => Ok(true),
        (IoModel::Uring, Err(why)) => Err(format!("--io uring: io_uring is not available: {why}")),
        (IoModel::Auto, Err(why)) => {
            tracing::info!(reason = %why, "--io auto: serving on epoll, io_uring is not available");
            Ok(false)
        }
    }
}

#[cfg(all(feature = "uring", target_os = "linux"))]
fn available() -> Result<(), String> {
    echo_net::uring::probe().map_err(|e| e.to_string())
}

#[cfg(not(all(feature = "uring", target_os = "linux")))]
fn available() -> Result<(), String> {
    Err("this echo-server was built without io_uring (Linux only, cargo feature \"uring\")".into())
}

/// Starts one thread per listener, each serving it on a ring of its own
/// until the server stops accepting and its connections ended. A ring
/// that fails is reported on `failed` (the server then exits 1).
///
/// # Errors
/// A thread could not be started.
pub fn start(
    server: &EchoServer,
    listeners: Vec<Ring>,
    failed: &tokio::sync::mpsc::UnboundedSender<String>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(listeners.len());
    for (i, ring) in listeners.into_iter().enumerate() {
        let (server, failed) = (server.clone(), failed.clone());
        let thread = std::thread::Builder::new()
            .name(format!("uring-{i}"))
            .spawn(move || serve(&server, ring, &failed))?;
        threads.push(thread);
    }
    Ok(threads)
}

/// A bound listener for a ring: a PROXY header first, a TLS handshake next.
pub type Ring = (TcpListener, bool, Option<TlsServer>);

#[cfg(all(feature = "uring", target_os = "linux"))]
fn serve(server: &EchoServer, ring: Ring, failed: &tokio::sync::mpsc::UnboundedSender<String>) {
    let (listener, proxied, tls) = ring;
    if let Err(error) = server.serve_uring(listener, proxied, tls.as_ref()) {
        let _ = failed.send(format!("io_uring loop failed: {error}"));
    }
}

#[cfg(not(all(feature = "uring", target_os = "linux")))]
fn serve(_server: &EchoServer, _ring: Ring, failed: &tokio::sync::mpsc::UnboundedSender<String>) {
    let _ = failed.send(available().unwrap_err());
}
