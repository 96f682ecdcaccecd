//! Where a connection's ends are. Twisted: `IPv4Address`/`IPv6Address` and
//! `UNIXAddress`.

use alloc::sync::Arc;
use core::fmt;
use core::net::SocketAddr;

/// One end of a connection: an IP address and port, or a Unix-domain
/// socket, which has a path or none at all (a connecting client's socket is
/// usually unnamed). Logs and events show which: `127.0.0.1:8888`,
/// `unix:/run/echo.sock`, `unix:(unnamed)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Address {
    /// TCP or UDP over IPv4 or IPv6.
    Ip(SocketAddr),
    /// A Unix-domain socket: its path, or `None` when unnamed. Shared, so
    /// that every connection to one listening path costs a reference count,
    /// not a copy of the path.
    Unix(Option<Arc<str>>),
}

impl Address {
    /// A Unix-domain socket bound to `path`.
    #[must_use]
    pub fn unix(path: &str) -> Self {
        Self::Unix(Some(Arc::from(path)))
    }

    /// An unnamed Unix-domain socket.
    #[must_use]
    pub const fn unnamed_unix() -> Self {
        Self::Unix(None)
    }

    /// The IP socket address, if this is one.
    #[must_use]
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Self::Ip(addr) => Some(*addr),
            Self::Unix(_) => None,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Self::Ip(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(addr) => write!(f, "{addr}"),
            Self::Unix(Some(path)) => write!(f, "unix:{path}"),
            Self::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}
