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

impl CloseReason {
    /// Every [`label`](Self::label), once: what a simulation must reach
    /// (or say why it cannot).
    pub const LABELS: &'static [&'static str] = &[
        "done",
        "reset",
        "aborted",
        "timed out",
        "shut down",
        "io error",
        "tls alert",
        "tls",
    ];

    /// A short fixed name for the kind of end (`done`, `reset`, `timed
    /// out`...), without the details: for counting ends by kind.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Lost(LostReason::Reset) => "reset",
            Self::Lost(LostReason::Aborted) => "aborted",
            Self::Lost(LostReason::TimedOut) => "timed out",
            Self::Lost(LostReason::ShutDown) => "shut down",
            Self::Lost(LostReason::Io(_)) => "io error",
            Self::Lost(LostReason::TlsAlert(_)) => "tls alert",
            Self::Lost(LostReason::Tls) => "tls",
        }
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
    /// The peer's TLS layer ended the connection with this alert (RFC 8446
    /// section 6): with TLS 1.3 a refused client certificate shows only
    /// here, after the client's handshake has finished.
    TlsAlert(u8),
    /// TLS failed on our side: a corrupt, forged or unexpected record.
    Tls,
}

/// The name of a TLS alert (RFC 8446 section 6, RFC 5246 section 7.2).
#[must_use]
pub fn tls_alert_name(code: u8) -> &'static str {
    match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        90 => "user_canceled",
        109 => "missing_extension",
        112 => "unrecognized_name",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => "unknown alert",
    }
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
            Self::TlsAlert(code) => {
                write!(
                    f,
                    "the peer sent TLS alert {} ({code})",
                    tls_alert_name(*code)
                )?;
                match code {
                    116 | 40 => f.write_str(": it wants a client certificate"),
                    42 | 43 | 46 | 48 => {
                        f.write_str(": it refused our certificate (not signed by a CA it trusts?)")
                    }
                    45 => f.write_str(": our certificate has expired"),
                    _ => Ok(()),
                }
            }
            Self::Tls => f.write_str("TLS error: a corrupt or unexpected record"),
        }
    }
}
