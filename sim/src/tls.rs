//! TLS in the simulation: one throw-away CA and server certificate per test
//! process (Ed25519, so every handshake has the same byte counts and a seed
//! replays exactly), fresh configurations per case (so no session ticket
//! carries over from one case, or one replay, to the next), and a stream
//! that is either plain or TLS for the client.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use echo_core::TlsMethod;
use echo_net::{KeyKind, Stream, ThrowawayCa, TlsClient, TlsServer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::io::SimStream;

/// The name the server's certificate carries (the server host's name).
pub(crate) const SERVER_NAME: &str = crate::vocab::SERVER;

/// The CA (PEM), the server certificate and its key, made once.
fn pems() -> &'static (String, String, String) {
    static PEMS: OnceLock<(String, String, String)> = OnceLock::new();
    PEMS.get_or_init(|| {
        let ca = ThrowawayCa::new("sim CA", KeyKind::Ed25519).expect("a CA");
        let server = ca.server(&[SERVER_NAME]).expect("a server certificate");
        (ca.pem().to_owned(), server.cert_pem, server.key_pem)
    })
}

/// A server and a client configuration for one case, sharing nothing with
/// any other case.
pub(crate) fn pair() -> (TlsServer, TlsClient) {
    let (ca, cert, key) = pems();
    let server = TlsServer::from_pem(cert.as_bytes(), key.as_bytes(), None, TlsMethod::Any)
        .expect("the sim's certificate loads");
    let client = TlsClient::from_pem(ca.as_bytes(), None).expect("the sim's CA loads");
    (server, client)
}

/// A client connection, plain or TLS.
pub(crate) enum MaybeTls {
    Plain(SimStream),
    Tls(Box<tokio_rustls::client::TlsStream<SimStream>>),
}

impl Stream for MaybeTls {
    fn buffers_writes(&self) -> bool {
        match self {
            Self::Plain(s) => s.buffers_writes(),
            Self::Tls(s) => s.buffers_writes(),
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
