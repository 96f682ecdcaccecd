//! Listening sockets: a small trait the accept loop is generic over, and the
//! real TCP and Unix-domain listeners bound from endpoint strings.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use echo_core::ServerEndpoint;
use tokio::net::{TcpListener, TcpSocket, UnixListener, UnixStream};

use crate::stream::{AnyStream, Stream};

/// An accepted connection.
#[derive(Debug)]
pub struct Accepted<S> {
    /// The connected stream.
    pub stream: S,
    /// Who connected.
    pub peer: SocketAddr,
    /// The local address they reached.
    pub host: SocketAddr,
}

/// Something that accepts connections: a tokio listener here, a simulated
/// one under turmoil.
pub trait Listener {
    /// The stream type accepted.
    type Stream: Stream + Send + 'static;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<Accepted<Self::Stream>>>;
}

/// The address reported for Unix-domain peers, which have no IP address.
pub const UNIX_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// A bound TCP or Unix-domain listener.
#[derive(Debug)]
pub enum AnyListener {
    /// TCP; accepted sockets get `TCP_NODELAY`.
    Tcp(TcpListener),
    /// Unix-domain; the socket file is removed when this is dropped.
    Unix {
        /// The listener.
        listener: UnixListener,
        /// Its socket file.
        path: PathBuf,
    },
}

impl AnyListener {
    /// Binds `endpoint`.
    ///
    /// # Errors
    /// The bind's I/O error (address in use, permission denied), or
    /// `Unsupported` for endpoint types that are not stream listeners.
    pub async fn bind(endpoint: &ServerEndpoint) -> io::Result<Self> {
        match endpoint {
            ServerEndpoint::Tcp {
                port,
                interface,
                backlog,
            } => {
                let addr = SocketAddr::new(*interface, *port);
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.set_reuseaddr(true)?;
                socket.bind(addr)?;
                Ok(Self::Tcp(socket.listen(*backlog)?))
            }
            ServerEndpoint::Unix {
                path,
                mode,
                lockfile,
                ..
            } => {
                let path = PathBuf::from(path);
                if *lockfile {
                    remove_stale_socket(&path).await?;
                }
                let listener = UnixListener::bind(&path)?;
                set_mode(&path, *mode)?;
                Ok(Self::Unix { listener, path })
            }
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{other} is not a stream endpoint"),
            )),
        }
    }

    /// What this listener is bound to, as a canonical endpoint string (with
    /// the real port when port 0 was asked for).
    ///
    /// # Errors
    /// The socket's `local_addr` error.
    pub fn describe(&self, asked: &ServerEndpoint) -> io::Result<String> {
        Ok(match (self, asked) {
            (Self::Tcp(l), ServerEndpoint::Tcp { backlog, .. }) => {
                let addr = l.local_addr()?;
                ServerEndpoint::Tcp {
                    port: addr.port(),
                    interface: addr.ip(),
                    backlog: *backlog,
                }
                .to_string()
            }
            _ => asked.to_string(),
        })
    }

    /// The bound TCP address, if this is a TCP listener.
    #[must_use]
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix { .. } => None,
        }
    }
}

impl Drop for AnyListener {
    fn drop(&mut self) {
        if let Self::Unix { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Listener for AnyListener {
    type Stream = AnyStream;

    async fn accept(&self) -> io::Result<Accepted<AnyStream>> {
        match self {
            Self::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // An echo is latency-bound: without this, replies larger than
                // one write wait on Nagle and delayed ACKs.
                stream.set_nodelay(true)?;
                let host = stream.local_addr()?;
                Ok(Accepted {
                    stream: AnyStream::Tcp(stream),
                    peer,
                    host,
                })
            }
            Self::Unix { listener, .. } => {
                let (stream, _) = listener.accept().await?;
                Ok(Accepted {
                    stream: AnyStream::Unix(stream),
                    peer: UNIX_PEER,
                    host: UNIX_PEER,
                })
            }
        }
    }
}

/// Removes a socket file nobody listens on (what Twisted's lock file guards
/// against); refuses to touch one that is live.
async fn remove_stale_socket(path: &std::path::Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by a running server", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

fn set_mode(path: &std::path::Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
