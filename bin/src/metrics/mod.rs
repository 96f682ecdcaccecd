//! `echo-server --metrics`: a small HTTP/1 server beside the echo, for
//! Prometheus (`/metrics`) and for balancers and Kubernetes (`/healthz`,
//! `/readyz`); `echo-client bench --metrics` serves a run's live figures
//! the same way ([`LoadCollector`]).
//!
//! It runs on a thread and a runtime of its own, and reads the echo
//! server's counters without a lock ([`echo_net::EchoServer::traffic`]), so
//! a slow or hostile scraper costs the echo nothing but that thread: each
//! of its connections is bounded ([`HEADER_READ_TIMEOUT`],
//! [`CONNECTION_LIFETIME`]), at most [`MAX_SCRAPES`] are served at once,
//! and no request body is ever read.

mod exposition;
mod load;
mod process;
mod routes;
mod serve;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use echo_core::ServerEndpoint;

pub use exposition::{Exposition, Format};
pub use load::{LATENCY_BUCKETS, LoadCollector};
pub use routes::{Health, respond};
pub use serve::MetricsListener;

/// How long a scraper has to send a request's headers (each request's, on
/// a kept-alive connection), before the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long any one metrics connection may stay open, however busy: a
/// scraper that reads its answer slowly, or keeps a connection for
/// ever, is cut off (Prometheus simply connects again).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// The most metrics connections served at once; one more is closed at once
/// (and said at debug level).
pub const MAX_SCRAPES: usize = 16;

/// Why the metrics endpoint cannot be used.
#[derive(Debug)]
pub enum MetricsError {
    /// The endpoint string is not a `tcp:` one.
    NotTcp(String),
    /// The endpoint is also one the echo listens on.
    Collides {
        /// `--metrics` as given.
        metrics: String,
        /// The `--listen` endpoint it collides with.
        listen: String,
    },
    /// Binding failed (a port in use, an address not on this host).
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The metrics thread or its runtime could not start.
    Start(std::io::Error),
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotTcp(given) => write!(
                f,
                "--metrics takes a tcp: endpoint such as tcp:9090:interface=127.0.0.1, not {given:?}"
            ),
            Self::Collides { metrics, listen } => write!(
                f,
                "--metrics {metrics} is the same port as --listen {listen}; give the metrics a port of their own"
            ),
            // The system's words are the source (`{:#}` prints the chain).
            Self::Bind { addr, .. } => write!(f, "cannot serve metrics on {addr}"),
            Self::Start(_) => f.write_str("cannot start the metrics thread"),
        }
    }
}

impl std::error::Error for MetricsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } | Self::Start(source) => Some(source),
            _ => None,
        }
    }
}

/// Parses `--metrics`: a `tcp:` (or `tcp6:`) endpoint string, as for
/// `--listen`; its address.
///
/// # Errors
/// Another kind of endpoint, or one that does not parse (the parser's
/// message).
pub fn metrics_endpoint(s: &str) -> Result<SocketAddr, String> {
    match crate::server_endpoint(s)? {
        ServerEndpoint::Tcp {
            port, interface, ..
        } => Ok(SocketAddr::new(interface, port)),
        _ => Err(MetricsError::NotTcp(s.trim().to_owned()).to_string()),
    }
}

/// The `--listen` endpoint that `metrics` would collide with: a TCP one
/// (plain, `ssl:` or behind `haproxy:`) on the same port, on the same
/// address or where either is every interface. Port 0 (a free one) never
/// collides.
#[must_use]
pub fn collision(metrics: SocketAddr, listen: &[ServerEndpoint]) -> Option<&ServerEndpoint> {
    if metrics.port() == 0 {
        return None;
    }
    listen.iter().find(|endpoint| {
        tcp_addr(endpoint).is_some_and(|(port, ip)| {
            port == metrics.port()
                && (ip == metrics.ip() || ip.is_unspecified() || metrics.ip().is_unspecified())
        })
    })
}

/// The port and address a stream endpoint binds over TCP.
fn tcp_addr(endpoint: &ServerEndpoint) -> Option<(u16, std::net::IpAddr)> {
    match endpoint {
        ServerEndpoint::Tcp {
            port, interface, ..
        }
        | ServerEndpoint::Ssl {
            port, interface, ..
        } => Some((*port, *interface)),
        ServerEndpoint::Haproxy(inner) => tcp_addr(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(s: &str) -> ServerEndpoint {
        s.parse().unwrap()
    }

    #[test]
    fn the_metrics_endpoint_is_a_tcp_endpoint_string() {
        assert_eq!(
            metrics_endpoint("tcp:9090:interface=127.0.0.1"),
            Ok("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(
            metrics_endpoint("tcp6:port=9090:interface=\\:\\:1"),
            Ok("[::1]:9090".parse().unwrap())
        );
        for other in [
            "unix:/tmp/m.sock",
            "udp:9090",
            "ssl:9090",
            "haproxy:tcp:9090",
        ] {
            let error = metrics_endpoint(other).unwrap_err();
            assert!(error.contains("tcp: endpoint"), "{other}: {error}");
        }
        assert!(metrics_endpoint("tcp:notaport").is_err());
    }

    #[test]
    fn a_metrics_port_that_an_echo_endpoint_binds_collides() {
        let m = |s: &str| metrics_endpoint(s).unwrap();
        let eps = [
            listen("tcp:8888:interface=127.0.0.1"),
            listen("haproxy:tcp:7777:interface=127.0.0.1"),
            listen("udp:9999:interface=127.0.0.1"),
        ];
        assert!(collision(m("tcp:8888:interface=127.0.0.1"), &eps).is_some());
        assert!(
            collision(m("tcp:8888"), &eps).is_some(),
            "0.0.0.0 covers loopback"
        );
        assert!(collision(m("tcp:7777:interface=127.0.0.1"), &eps).is_some());
        // UDP is another port space; another address, another socket.
        assert!(collision(m("tcp:9999:interface=127.0.0.1"), &eps).is_none());
        assert!(collision(m("tcp:8888:interface=127.0.0.2"), &eps).is_none());
        assert!(collision(m("tcp:9090:interface=127.0.0.1"), &eps).is_none());
        let any = [listen("tcp:0:interface=127.0.0.1")];
        assert!(collision(m("tcp:0:interface=127.0.0.1"), &any).is_none());
    }
}
