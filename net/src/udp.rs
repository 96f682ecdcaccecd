//! UDP echo (RFC 862) over any datagram socket: tokio's here, turmoil's in
//! the simulation. The core decides everything (echo or drop, what the
//! client counts); this module only moves datagrams.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use echo_core::{
    ClientEndpoint, ServerEndpoint, UdpClientEvent, UdpConfig, UdpEcho, UdpEchoClient, UdpReport,
    UdpStats,
};
use tokio::net::UdpSocket;

use crate::client::ClientError;
use crate::driver::now;
use crate::server::EchoServer;

/// Receive buffer size: more than any UDP payload (65,527 bytes over IPv6),
/// so no datagram is ever cut short.
const RECV_BUFFER: usize = 65_536;

/// Most datagrams the client sends before it looks for replies again.
const SEND_BURST: usize = 64;

/// Drops are logged one by one at debug level, and summed up at warn level
/// at most this often (a flood must not flood the log too).
const DROP_WARNING_EVERY: Duration = Duration::from_secs(1);

/// A datagram socket: tokio's `UdpSocket` here, turmoil's in the simulation.
pub trait Datagrams {
    /// Waits for a datagram; returns its length and source.
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>>;

    /// Sends one datagram to `to`.
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>>;
}

impl Datagrams for UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        Self::recv_from(self, buf)
    }

    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>> {
        Self::send_to(self, datagram, to)
    }
}

/// Binds a `udp:` server endpoint.
///
/// # Errors
/// The bind's error, or `Unsupported` for other endpoint types.
pub async fn bind_udp(endpoint: &ServerEndpoint) -> io::Result<UdpSocket> {
    match endpoint {
        ServerEndpoint::Udp { port, interface } => {
            UdpSocket::bind(SocketAddr::new(*interface, *port)).await
        }
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{other} is not a UDP endpoint"),
        )),
    }
}

/// Resolves a `udp:` client endpoint and opens a socket connected to it
/// (so the kernel filters out strangers and reports an ICMP "port
/// unreachable" as `ConnectionRefused`).
///
/// # Errors
/// Resolution, bind or connect failures, or `Unsupported` for other
/// endpoint types.
pub async fn connect_udp(
    endpoint: &ClientEndpoint,
) -> Result<(UdpSocket, SocketAddr), ClientError> {
    let ClientEndpoint::Udp { host, port } = endpoint else {
        return Err(ClientError::Unsupported(endpoint.to_string()));
    };
    let resolve = |source| ClientError::Resolve {
        host: host.clone(),
        source,
    };
    let server = tokio::net::lookup_host((host.as_str(), *port))
        .await
        .map_err(resolve)?
        .next()
        .ok_or_else(|| resolve(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let local = if server.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let failed = |source| ClientError::Connect {
        target: format!("udp {server}"),
        source,
    };
    let socket = UdpSocket::bind(local).await.map_err(failed)?;
    socket.connect(server).await.map_err(failed)?;
    Ok((socket, server))
}

impl EchoServer {
    /// Echoes datagrams on `socket` until the server stops accepting (its
    /// graceful shutdown, say); returns the counters. Drops (rate limit,
    /// loop ports, full queue) are logged; socket errors are logged and
    /// never end the loop.
    pub async fn serve_udp<S: Datagrams>(&self, socket: S, config: UdpConfig) -> UdpStats {
        let mut accepting = self.accepting();
        let mut echo = UdpEcho::new(config);
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut drops = DropLog::default();
        while *accepting.borrow_and_update() {
            while let Some(reply) = echo.poll_transmit() {
                if let Err(error) = socket.send_to(&reply.payload, reply.to).await {
                    echo.handle_send_failed(&reply);
                    tracing::debug!(to = %reply.to, %error, "reply not sent");
                }
            }
            let received = tokio::select! {
                biased;
                _ = accepting.changed() => continue,
                received = socket.recv_from(&mut buf) => received,
            };
            let (len, from) = match received {
                Ok(received) => received,
                Err(error) => {
                    // Not fatal (an ICMP error for an earlier reply, say);
                    // a pause keeps a persistent one from spinning.
                    tracing::debug!(%error, "receive failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            let payload = Bytes::copy_from_slice(&buf[..len]);
            match echo.handle_datagram(from, payload, now()) {
                Ok(()) => tracing::trace!(%from, len, "datagram echoed"),
                Err(reason) => {
                    tracing::debug!(%from, len, %reason, "datagram dropped");
                    drops.note(from, reason);
                }
            }
        }
        echo.stats()
    }
}

/// Sums drops up for the at-most-once-a-second warning.
#[derive(Debug, Default)]
struct DropLog {
    since: u64,
    last_warning: Option<tokio::time::Instant>,
}

impl DropLog {
    fn note(&mut self, from: SocketAddr, reason: echo_core::DropReason) {
        self.since += 1;
        let now = tokio::time::Instant::now();
        if self
            .last_warning
            .is_some_and(|at| now.duration_since(at) < DROP_WARNING_EVERY)
        {
            return;
        }
        tracing::warn!(
            %from,
            %reason,
            dropped = self.since,
            "dropping datagrams (count since the last warning)"
        );
        self.since = 0;
        self.last_warning = Some(now);
    }
}

/// Runs `client` against `server` over `socket`, handing each event to
/// `on_event`; returns the final report.
///
/// # Errors
/// A send or receive error (an ICMP "port unreachable" on a connected
/// socket becomes [`ClientError::Refused`]).
pub async fn udp_echo<S: Datagrams>(
    socket: &S,
    server: SocketAddr,
    mut client: UdpEchoClient,
    mut on_event: impl FnMut(&UdpClientEvent),
) -> Result<UdpReport, ClientError> {
    let mut buf = vec![0u8; RECV_BUFFER];
    let failed = |source: io::Error| match source.kind() {
        io::ErrorKind::ConnectionRefused => ClientError::Refused {
            target: format!("udp {server}"),
        },
        _ => ClientError::Udp {
            target: server.to_string(),
            source,
        },
    };
    loop {
        // A bounded burst per pass, so replies are read between bursts even
        // with no interval (else they pile up in the socket and are lost).
        for _ in 0..SEND_BURST {
            let Some(datagram) = client.poll_transmit(now()) else {
                break;
            };
            socket.send_to(&datagram, server).await.map_err(failed)?;
        }
        while let Some(event) = client.poll_event() {
            on_event(&event);
        }
        if client.is_done() {
            return Ok(client.report());
        }
        let deadline = client.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (len, from) = received.map_err(failed)?;
                if from == server {
                    client.handle_datagram(&buf[..len], now());
                } else {
                    tracing::debug!(%from, len, "ignoring a datagram from elsewhere");
                }
            }
            () = sleep_until(deadline) => client.handle_timeout(now()),
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
