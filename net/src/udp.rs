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
        // What this socket has added to the server's counters.
        let mut counted = UdpStats::default();
        while *accepting.borrow_and_update() {
            while let Some(reply) = echo.poll_transmit() {
                if let Err(error) = socket.send_to(&reply.payload, reply.to).await {
                    echo.handle_send_failed(&reply);
                    tracing::debug!(to = %reply.to, %error, "reply not sent");
                }
            }
            self.counters().udp_moved(&echo.stats(), &mut counted);
            let received = tokio::select! {
                biased;
                _ = accepting.changed() => continue,
                () = drops.window_end() => {
                    drops.flush();
                    continue;
                }
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
        drops.flush();
        self.counters().udp_moved(&echo.stats(), &mut counted);
        echo.stats()
    }
}

/// Most sources named one by one in a warning; drops from any others are
/// summed on one line.
const DROP_SOURCES_NAMED: usize = 8;

/// Warns about dropped datagrams at most once a second, each line counting
/// exactly the drops of the source and reason it names.
///
/// The first drop after a quiet second is warned at once; drops within the
/// following second are counted per source and reason and warned when the
/// second ends (then a new second starts only if there were any).
#[derive(Debug, Default)]
struct DropLog {
    /// Drops counted since the last warning, per source and reason.
    counts: Vec<(SocketAddr, echo_core::DropReason, u64)>,
    /// Drops from sources beyond the named ones.
    others: u64,
    /// When the current second of counting ends; `None`: quiet.
    window: Option<tokio::time::Instant>,
}

impl DropLog {
    fn note(&mut self, from: SocketAddr, reason: echo_core::DropReason) {
        if self.window.is_none() {
            warn_drops(from, reason, 1);
            self.window = Some(tokio::time::Instant::now() + DROP_WARNING_EVERY);
            return;
        }
        if let Some(entry) = self
            .counts
            .iter_mut()
            .find(|(f, r, _)| *f == from && *r == reason)
        {
            entry.2 += 1;
        } else if self.counts.len() < DROP_SOURCES_NAMED {
            self.counts.push((from, reason, 1));
        } else {
            self.others += 1;
        }
    }

    /// Waits for the end of the current second (forever when quiet).
    async fn window_end(&self) {
        match self.window {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// Warns what was counted; starts another second only if anything was.
    fn flush(&mut self) {
        let any = !self.counts.is_empty() || self.others > 0;
        for (from, reason, n) in self.counts.drain(..) {
            warn_drops(from, reason, n);
        }
        if self.others > 0 {
            tracing::warn!(
                from = "other sources",
                dropped = self.others,
                "dropping datagrams (count since the last warning)"
            );
            self.others = 0;
        }
        self.window = any.then(|| tokio::time::Instant::now() + DROP_WARNING_EVERY);
    }
}

fn warn_drops(from: SocketAddr, reason: echo_core::DropReason, dropped: u64) {
    tracing::warn!(
        %from,
        %reason,
        dropped,
        "dropping datagrams (count since the last warning)"
    );
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
