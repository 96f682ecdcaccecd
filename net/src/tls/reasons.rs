//! Why a handshake failed: in words a user can act on (the log, the
//! client's verdict) and as a reason the metrics count.

use std::io;

/// A handshake error in words a user can act on: what rustls or the peer
/// said, with the usual cause when it is a common one.
#[must_use]
pub fn describe(error: &io::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<E>()) else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof => {
                "the peer closed the connection during the handshake".into()
            }
            _ => error.to_string(),
        };
    };
    let hint = match tls {
        E::InvalidCertificate(Cert::UnknownIssuer) => {
            " (the certificate is not signed by a trusted CA: name its CA with trustRoots=, or pass --insecure for a throw-away certificate)"
        }
        E::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            " (the certificate does not carry the host name that was asked for)"
        }
        E::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            " (the certificate has expired)"
        }
        E::NoCertificatesPresented => " (the client sent no certificate, and one is required)",
        E::AlertReceived(Alert::CertificateRequired) => {
            " (the server requires a client certificate: certificate=...:privateKey=...)"
        }
        E::AlertReceived(Alert::UnknownCA | Alert::BadCertificate) => {
            " (the peer did not accept our certificate: it is not signed by a CA it trusts)"
        }
        E::AlertReceived(Alert::ProtocolVersion) => " (no TLS version or cipher suite in common)",
        E::PeerIncompatible(why) => {
            // rustls' names (`Tls12NotOfferedOrEnabled`) read backwards
            // to a user: say what they mean first.
            return format!("no TLS version or cipher suite in common (rustls: {why:?})");
        }
        E::InvalidMessage(_) => " (that is not TLS: a plain-text client, or garbage bytes)",
        E::InappropriateHandshakeMessage {
            got_type: rustls::HandshakeType::ClientHello,
            ..
        } => " (the server echoed our TLS ClientHello: it does not speak TLS; connect with tcp:)",
        _ => "",
    };
    format!("{tls}{hint}")
}

/// [`describe`]'s words when `error` is TLS's (rustls' own, or an alert
/// the peer sent), `None` for any other socket error.
#[must_use]
pub fn tls_reason(error: &io::Error) -> Option<String> {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .map(|_| describe(error))
}

/// Why a server's TLS handshake failed, as the metrics count it (the log
/// line says it in words: [`describe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// Not finished within the handshake timeout.
    TimedOut,
    /// The peer closed the connection part way.
    Closed,
    /// The peer's bytes are not TLS (a plain-text client, a scanner).
    NotTls,
    /// A client certificate missing or refused (`caCerts=`).
    Certificate,
    /// No protocol version or cipher suite in common.
    Incompatible,
    /// The peer ended the handshake with an alert.
    Alert,
    /// Any other breach of the protocol.
    Protocol,
    /// A socket error (a reset).
    Io,
}

impl HandshakeFailure {
    /// Each reason's label, in the order of their indices.
    pub const LABELS: [&'static str; 8] = [
        "timed_out",
        "closed",
        "not_tls",
        "certificate",
        "incompatible",
        "alert",
        "protocol",
        "io_error",
    ];

    /// The reason a handshake ended with `error`.
    #[must_use]
    pub fn of(error: &io::Error) -> Self {
        use rustls::{AlertDescription as Alert, Error as E};
        match error.get_ref().and_then(|e| e.downcast_ref::<E>()) {
            Some(E::InvalidMessage(_)) => Self::NotTls,
            Some(E::InvalidCertificate(_) | E::NoCertificatesPresented) => Self::Certificate,
            Some(
                E::PeerIncompatible(_)
                | E::AlertReceived(Alert::ProtocolVersion | Alert::HandshakeFailure),
            ) => Self::Incompatible,
            Some(E::AlertReceived(_)) => Self::Alert,
            Some(_) => Self::Protocol,
            None if error.kind() == io::ErrorKind::UnexpectedEof => Self::Closed,
            None => Self::Io,
        }
    }

    /// This reason's index in [`LABELS`](Self::LABELS).
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }

    /// This reason's label, e.g. `not_tls`.
    #[must_use]
    pub fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }
}

/// [`describe`] for the server's log: where the cause is the client's
/// certificate, the hint names the server's knob (`caCerts=`), not the
/// client's.
#[must_use]
pub(crate) fn describe_on_server(error: &io::Error) -> String {
    use rustls::{CertificateError as Cert, Error as E};
    let hint = match error.get_ref().and_then(|e| e.downcast_ref::<E>()) {
        Some(E::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature)) => {
            "the client's certificate is not signed by a CA in this endpoint's caCerts="
        }
        Some(E::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. })) => {
            "the client's certificate has expired"
        }
        Some(E::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. })) => {
            "the client's certificate is not valid yet (or this machine's clock is behind)"
        }
        Some(tls @ E::InvalidCertificate(_)) => return format!("{tls} (the client's certificate)"),
        _ => return describe(error),
    };
    let tls = error.get_ref().map(ToString::to_string).unwrap_or_default();
    format!("{tls} ({hint})")
}
