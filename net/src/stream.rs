//! The byte streams the driver runs over, and the one the binaries use.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A connected byte stream the driver can run a connection over.
///
/// Anything that is `AsyncRead + AsyncWrite + Unpin` qualifies; the extras
/// are a best-effort way to make closing send a reset, which
/// [`Action::Abort`](echo_core::Action::Abort) asks for, and whether writes
/// need a flush.
pub trait Stream: AsyncRead + AsyncWrite + Unpin {
    /// Makes the coming drop reset the connection (RST) instead of closing it
    /// politely. The default does nothing: the drop then closes normally.
    fn set_reset_on_close(&mut self) {}

    /// Whether a write can leave bytes in a buffer of the stream's own that
    /// only a flush sends (TLS: rustls's records). The driver flushes after
    /// writing only when this says so: a socket's flush does nothing, but
    /// asking costs a call per pass on the per-echo path. The default, yes,
    /// is always correct.
    fn buffers_writes(&self) -> bool {
        true
    }
}

impl Stream for TcpStream {
    fn set_reset_on_close(&mut self) {
        // SO_LINGER 0: close() sends RST and never blocks.
        if let Err(error) = self.set_zero_linger() {
            tracing::debug!(%error, "could not arm reset on close");
        }
    }

    fn buffers_writes(&self) -> bool {
        false
    }
}

impl Stream for UnixStream {
    fn buffers_writes(&self) -> bool {
        false
    }
}

impl Stream for tokio::io::DuplexStream {
    fn buffers_writes(&self) -> bool {
        false
    }
}

/// A TLS server connection resets as its socket does.
impl<S: Stream> Stream for tokio_rustls::server::TlsStream<S> {
    fn set_reset_on_close(&mut self) {
        self.get_mut().0.set_reset_on_close();
    }
}

/// A TLS client connection resets as its socket does.
impl<S: Stream> Stream for tokio_rustls::client::TlsStream<S> {
    fn set_reset_on_close(&mut self) {
        self.get_mut().0.set_reset_on_close();
    }
}

/// A stream with bytes already read from it put back in front: what came
/// after a PROXY header in the same read belongs to the TLS handshake.
#[derive(Debug)]
pub struct Prefixed<S> {
    first: Vec<u8>,
    at: usize,
    stream: S,
}

impl<S> Prefixed<S> {
    /// `stream`, whose next reads give `first` before anything else.
    pub fn new(first: Vec<u8>, stream: S) -> Self {
        Self {
            first,
            at: 0,
            stream,
        }
    }
}

impl<S: Stream> Stream for Prefixed<S> {
    fn buffers_writes(&self) -> bool {
        self.stream.buffers_writes()
    }

    fn set_reset_on_close(&mut self) {
        self.stream.set_reset_on_close();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.first.len() {
            let n = buf.remaining().min(this.first.len() - this.at);
            buf.put_slice(&this.first[this.at..this.at + n]);
            this.at += n;
            if this.at == this.first.len() {
                this.first = Vec::new(); // give the memory back
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    /// Passed on: see `MaybeTls`'s.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A TCP or Unix-domain socket: what endpoint strings connect to or
/// accept, before any TLS.
#[derive(Debug)]
pub enum Socket {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-domain stream connection.
    Unix(UnixStream),
}

/// A client's stream over socket `S`, plain or TLS (`tls:`): one type
/// for both, so that the same code runs either way. Generic, so that a
/// simulated socket gets the very wrapper a real one does.
#[derive(Debug)]
pub enum MaybeTls<S> {
    /// Plain bytes over the socket.
    Plain(S),
    /// A TLS client connection over it.
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

/// What endpoint strings connect (plain or TLS) or accept (plain).
pub type AnyStream = MaybeTls<Socket>;

impl Stream for Socket {
    fn set_reset_on_close(&mut self) {
        match self {
            Self::Tcp(s) => s.set_reset_on_close(),
            Self::Unix(s) => s.set_reset_on_close(),
        }
    }

    fn buffers_writes(&self) -> bool {
        match self {
            Self::Tcp(s) => s.buffers_writes(),
            Self::Unix(s) => s.buffers_writes(),
        }
    }
}

impl<S: Stream> Stream for MaybeTls<S> {
    fn set_reset_on_close(&mut self) {
        match self {
            Self::Plain(s) => s.set_reset_on_close(),
            Self::Tls(s) => s.set_reset_on_close(),
        }
    }

    fn buffers_writes(&self) -> bool {
        match self {
            Self::Plain(s) => s.buffers_writes(),
            Self::Tls(s) => s.buffers_writes(),
        }
    }
}

/// Passes each call on to whichever stream `$self` holds, as `$s`.
macro_rules! either {
    ($self:expr, $s:ident => $call:expr, $($variant:path),+) => {
        match $self {
            $($variant($s) => $call,)+
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf), Self::Tcp, Self::Unix)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
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

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf), Self::Tcp, Self::Unix)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs), Self::Tcp, Self::Unix)
    }

    fn is_write_vectored(&self) -> bool {
        either!(self, s => s.is_write_vectored(), Self::Tcp, Self::Unix)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_flush(cx), Self::Tcp, Self::Unix)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx), Self::Tcp, Self::Unix)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
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

    /// Passed on, not left to the default (which writes the first buffer
    /// only): rustls writes its queued records in one vectored write, and
    /// its last gasp after a failed handshake (the alert that tells the
    /// server why) is one such write, made once.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
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
