//! The byte streams the driver runs over, and the one the binaries use.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A connected byte stream the driver can run a connection over.
///
/// Anything that is `AsyncRead + AsyncWrite + Unpin` qualifies; the one extra
/// is a best-effort way to make closing send a reset, which
/// [`Action::Abort`](echo_core::Action::Abort) asks for.
pub trait Stream: AsyncRead + AsyncWrite + Unpin {
    /// Makes the coming drop reset the connection (RST) instead of closing it
    /// politely. The default does nothing: the drop then closes normally.
    fn set_reset_on_close(&mut self) {}
}

impl Stream for TcpStream {
    fn set_reset_on_close(&mut self) {
        // SO_LINGER 0: close() sends RST and never blocks.
        if let Err(error) = self.set_zero_linger() {
            tracing::debug!(%error, "could not arm reset on close");
        }
    }
}

impl Stream for UnixStream {}

impl Stream for tokio::io::DuplexStream {}

/// A TCP or Unix-domain stream: what endpoint strings connect or accept.
#[derive(Debug)]
pub enum AnyStream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-domain stream connection.
    Unix(UnixStream),
}

impl Stream for AnyStream {
    fn set_reset_on_close(&mut self) {
        match self {
            Self::Tcp(s) => s.set_reset_on_close(),
            Self::Unix(s) => s.set_reset_on_close(),
        }
    }
}

impl AsyncRead for AnyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for AnyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
