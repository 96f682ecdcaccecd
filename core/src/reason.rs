//! Why connections end (Twisted keeps these in `twisted.internet.error`):
//! the reasons every module reports, kept apart from the connection's state
//! machine so that modules depend one way.

use core::fmt;

/// Why a connection ended. Twisted: `ConnectionDone` versus `ConnectionLost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// An orderly close: everything owed was flushed before closing.
    Done,
    /// The connection ended uncleanly.
    Lost(LostReason),
}

impl CloseReason {
    /// Whether this is an orderly close.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Done)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Done => f.write_str("closed cleanly"),
            Self::Lost(reason) => write!(f, "lost: {reason}"),
        }
    }
}

/// The cause of an unclean end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// The peer reset the connection.
    Reset,
    /// We aborted it ([`Transport::abort_connection`](crate::Transport::abort_connection)), discarding unsent bytes.
    Aborted,
    /// We closed it because nothing moved for too long.
    TimedOut,
    /// The adapter stopped serving it (shutdown grace expired, say).
    ShutDown,
    /// The socket failed with this error.
    Io(IoErrorKind),
}

/// What kind of socket error ended a connection: `std::io::ErrorKind` with
/// the `std` feature.
#[cfg(feature = "std")]
pub type IoErrorKind = std::io::ErrorKind;

/// What kind of socket error ended a connection: without `std`, an error
/// code from the caller's network stack.
#[cfg(not(feature = "std"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoErrorKind(pub i32);

#[cfg(not(feature = "std"))]
impl fmt::Display for IoErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error code {}", self.0)
    }
}

#[cfg(feature = "std")]
impl LostReason {
    /// Classifies a socket error: resets and broken pipes are the peer's
    /// doing, everything else is reported by kind.
    #[must_use]
    pub fn from_io(kind: std::io::ErrorKind) -> Self {
        use std::io::ErrorKind;
        match kind {
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                Self::Reset
            }
            ErrorKind::TimedOut => Self::TimedOut,
            other => Self::Io(other),
        }
    }
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reset => f.write_str("reset by peer"),
            Self::Aborted => f.write_str("aborted"),
            Self::TimedOut => f.write_str("timed out"),
            Self::ShutDown => f.write_str("server shut down"),
            Self::Io(kind) => write!(f, "I/O error: {kind}"),
        }
    }
}
