//! Listening sockets: a small trait the accept loop is generic over, and the
//! real TCP and Unix-domain listeners bound from endpoint strings.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use echo_core::{Address, ServerEndpoint};
use tokio::net::{TcpListener, TcpSocket, UnixListener, UnixStream};

use crate::stream::{AnyStream, MaybeTls, Socket, Stream};

/// An accepted connection.
#[derive(Debug)]
pub struct Accepted<S> {
    /// The connected stream.
    pub stream: S,
    /// Who connected.
    pub peer: Address,
    /// The local address they reached.
    pub host: Address,
}

/// Something that accepts connections: a tokio listener here, a simulated
/// one under turmoil.
pub trait Listener {
    /// The stream type accepted.
    type Stream: Stream + Send + 'static;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<Accepted<Self::Stream>>>;
}

/// A bound TCP or Unix-domain listener.
#[derive(Debug)]
pub enum AnyListener {
    /// TCP; accepted sockets get `TCP_NODELAY`.
    Tcp(TcpListener),
    /// Unix-domain; the socket file (and the lock, if taken) is removed
    /// when this is dropped.
    Unix {
        /// The listener.
        listener: UnixListener,
        /// Its socket file.
        file: SocketFile,
        /// Twisted's `PATH.lock`, with `lockfile=1`.
        lock: Option<LockFile>,
        /// `unix:PATH`, shared by every connection's host address.
        host: Address,
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
            // The wrapped endpoint's socket; the server reads the PROXY
            // header (`EchoServer::serve_proxied`).
            ServerEndpoint::Haproxy(inner) => Box::pin(Self::bind(inner)).await,
            // A TCP socket; the server runs the handshake (`serve_tls`).
            ServerEndpoint::Ssl {
                port,
                interface,
                backlog,
                ..
            } => {
                let tcp = ServerEndpoint::Tcp {
                    port: *port,
                    interface: *interface,
                    backlog: *backlog,
                };
                Box::pin(Self::bind(&tcp)).await
            }
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
                let path_name = path.clone();
                let path = PathBuf::from(path);
                // Twisted's order: take the lock, then replace only a stale
                // socket; never touch anything that is not a socket.
                let lock = if *lockfile {
                    Some(LockFile::acquire(&path)?)
                } else {
                    None
                };
                clear_stale_socket(&path, lock.is_some()).await?;
                let listener = UnixListener::bind(&path)?;
                let file = SocketFile::claim(path)?;
                set_mode(&file.path, *mode)?;
                Ok(Self::Unix {
                    listener,
                    file,
                    lock,
                    host: Address::unix(&path_name),
                })
            }
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{other} is not a stream endpoint"),
            )),
        }
    }

    /// Binds `n` TCP listeners to the address of `endpoint`, all with
    /// `SO_REUSEPORT` so the kernel spreads new connections among them: one
    /// per single-threaded worker (a thread per core, no work stealing). Port
    /// 0 picks one free port for all of them. Must run inside a tokio
    /// runtime; the listeners come back as `std` ones (non-blocking) for each
    /// worker's runtime to adopt with [`AnyListener::adopt`].
    ///
    /// Another process's listener on the same port makes this fail with
    /// `AddrInUse`, as a plain bind would: `SO_REUSEPORT` lets any socket of
    /// the same user join the group, so without that check a second server
    /// would silently take half the connections.
    ///
    /// # Errors
    /// The bind's I/O error, or `Unsupported` for an endpoint that is not TCP.
    pub fn bind_tcp_shards(
        endpoint: &ServerEndpoint,
        n: usize,
    ) -> io::Result<Vec<std::net::TcpListener>> {
        let ServerEndpoint::Tcp {
            port,
            interface,
            backlog,
        } = endpoint
        else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{endpoint} cannot be shared by workers"),
            ));
        };
        let mut addr = SocketAddr::new(*interface, *port);
        if *port != 0 {
            refuse_if_listened_on(addr)?;
        }
        let mut shards = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(addr)?;
            let listener = socket.listen(*backlog)?;
            addr = listener.local_addr()?;
            shards.push(listener.into_std()?);
        }
        Ok(shards)
    }

    /// Adopts a listener from [`bind_tcp_shards`](Self::bind_tcp_shards)
    /// into the runtime this is called in.
    ///
    /// # Errors
    /// Registering it with the runtime failed.
    pub fn adopt(listener: std::net::TcpListener) -> io::Result<Self> {
        Ok(Self::Tcp(TcpListener::from_std(listener)?))
    }

    /// What this listener is bound to, as a canonical endpoint string (with
    /// the real port when port 0 was asked for).
    ///
    /// # Errors
    /// The socket's `local_addr` error.
    pub fn describe(&self, asked: &ServerEndpoint) -> io::Result<String> {
        Ok(match (self, asked) {
            (_, ServerEndpoint::Haproxy(inner)) => format!("haproxy:{}", self.describe(inner)?),
            (Self::Tcp(l), ServerEndpoint::Tcp { backlog, .. }) => {
                let addr = l.local_addr()?;
                ServerEndpoint::Tcp {
                    port: addr.port(),
                    interface: addr.ip(),
                    backlog: *backlog,
                }
                .to_string()
            }
            (Self::Tcp(l), ServerEndpoint::Ssl { backlog, tls, .. }) => {
                let addr = l.local_addr()?;
                ServerEndpoint::Ssl {
                    port: addr.port(),
                    interface: addr.ip(),
                    backlog: *backlog,
                    tls: tls.clone(),
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
                    stream: MaybeTls::Plain(Socket::Tcp(stream)),
                    peer: peer.into(),
                    host: host.into(),
                })
            }
            Self::Unix { listener, host, .. } => {
                let (stream, peer) = listener.accept().await?;
                Ok(Accepted {
                    stream: MaybeTls::Plain(Socket::Unix(stream)),
                    peer: unix_address(&peer),
                    host: host.clone(),
                })
            }
        }
    }
}

/// A Unix-domain socket's address as the core shows it: its path, or
/// unnamed (a connecting client's socket usually is).
pub(crate) fn unix_address(addr: &tokio::net::unix::SocketAddr) -> Address {
    match addr.as_pathname() {
        Some(path) => Address::unix(&path.to_string_lossy()),
        None => Address::unnamed_unix(),
    }
}

/// The socket file this listener created, removed on drop only while it is
/// still the same file (another server may have replaced it since).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode of the socket we bound.
    id: (u64, u64),
}

impl SocketFile {
    fn claim(path: PathBuf) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(&path)?;
        Ok(Self {
            id: (meta.dev(), meta.ino()),
            path,
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.file_type().is_socket()
            && (meta.dev(), meta.ino()) == self.id
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Twisted's `FilesystemLock` for `lockfile=1`: `PATH.lock` is a symbolic
/// link whose target is the owner's process id, so two servers can agree on
/// who owns a socket path. A lock whose owner is gone is stale and taken
/// over (Linux: liveness is read from `/proc`).
#[derive(Debug)]
pub struct LockFile {
    path: PathBuf,
    pid: String,
}

impl LockFile {
    fn acquire(socket: &Path) -> io::Result<Self> {
        let mut name = socket.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let pid = std::process::id().to_string();
        for _ in 0..3 {
            match std::os::unix::fs::symlink(&pid, &path) {
                Ok(()) => return Ok(Self { path, pid }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let owner = std::fs::read_link(&path)
                .map_err(|_| in_use(format!("{} exists and is not a lock", path.display())))?;
            let owner = owner.to_string_lossy().into_owned();
            let alive = owner.parse::<u32>().is_ok()
                && (owner == pid || Path::new("/proc").join(&owner).exists());
            if alive {
                return Err(in_use(format!(
                    "{} is locked by running process {owner} ({})",
                    socket.display(),
                    path.display()
                )));
            }
            std::fs::remove_file(&path)?;
        }
        Err(in_use(format!("cannot take the lock {}", path.display())))
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if std::fs::read_link(&self.path).is_ok_and(|owner| owner.as_os_str() == self.pid.as_str())
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Fails with `AddrInUse` when something already listens on `addr`: a
/// probe bound without `SO_REUSEPORT` conflicts with any listener there,
/// ours or another program's (`SO_REUSEADDR` only lets it past sockets in
/// `TIME_WAIT`, as every listener here is bound). The probe is closed
/// before the shards bind; two servers started within that instant could
/// still share the port.
fn refuse_if_listened_on(addr: SocketAddr) -> io::Result<()> {
    let probe = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    probe.set_reuseaddr(true)?;
    probe.bind(addr).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            in_use(format!(
                "{addr} is already in use (another server listens there; --workers shares a port only among its own workers)"
            ))
        } else {
            e
        }
    })
}

fn in_use(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::AddrInUse, message)
}

/// Makes way for a new socket at `path`: nothing there is fine; a socket
/// nobody listens on is removed when `may_replace` (the lock is ours);
/// anything else (a live socket, a file, a link, a FIFO, a directory) is an
/// error and is left as it is.
async fn clear_stale_socket(path: &Path, may_replace: bool) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let kind = meta.file_type();
    if !kind.is_socket() {
        let what = if kind.is_symlink() {
            "a symbolic link"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_file() {
            "a regular file"
        } else {
            "not a socket"
        };
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} already exists and is {what}; refusing to replace it",
                path.display()
            ),
        ));
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(in_use(format!(
            "{} is in use by a running server",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && may_replace => {
            std::fs::remove_file(path)
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(in_use(format!(
            "{} is a stale socket; lockfile=0 leaves it in place (remove it, or use lockfile=1)",
            path.display()
        ))),
        Err(e) => Err(e),
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
