//! The echo client over real sockets: connect from an endpoint string, run
//! the core's verifying client, and report a typed outcome.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use echo_core::{
    Address, ClientConfig, ClientEndpoint, ClientEvent, Connection, EchoClient, EchoError,
    ProxyHeader, Tlvs, WaterMarks,
};
use tokio::io::AsyncWriteExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, UnixStream};

use crate::contract::Piped;
use crate::driver::{App, DriveConfig, drive, now};
use crate::listener::unix_address;
use crate::stream::{AnyStream, MaybeTls, Socket, Stream};
use crate::tls::{TlsClient, TlsError, describe as describe_tls_error};

/// Most bytes read from the input source at once.
const INPUT_CHUNK: usize = 64 * 1024;

/// Why a client run failed. Each message is one line a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Nothing listens there.
    #[error("connection refused by {target}")]
    Refused {
        /// Where we tried.
        target: String,
    },
    /// The connect did not complete in time.
    #[error("connecting to {target} timed out after {timeout:?}")]
    ConnectTimeout {
        /// Where we tried.
        target: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Connecting failed otherwise.
    #[error("connecting to {target} failed: {source}")]
    Connect {
        /// Where we tried.
        target: String,
        /// The socket error.
        source: io::Error,
    },
    /// Sending or receiving a datagram failed.
    #[error("UDP to {target} failed: {source}")]
    Udp {
        /// The server.
        target: String,
        /// The socket error.
        source: io::Error,
    },
    /// The endpoint type cannot carry a stream echo.
    #[error("{0} is not supported by this client yet")]
    Unsupported(String),
    /// Sending the PROXY header failed.
    #[error("sending the PROXY header to {target} failed: {source}")]
    SendProxy {
        /// Where.
        target: String,
        /// The socket error.
        source: io::Error,
    },
    /// The TLS settings (trust roots, client certificate) did not load.
    #[error("TLS setup: {0}")]
    TlsSetup(#[from] TlsError),
    /// The TLS handshake failed: an untrusted or wrong certificate, a
    /// server that wants a client certificate, no TLS at all.
    #[error("TLS handshake with {target} failed: {reason}")]
    Tls {
        /// Where.
        target: String,
        /// Why, in words ([`describe_tls_error`](crate::describe_tls_error)).
        reason: String,
    },
    /// The echo itself failed (mismatch, truncation, timeout, reset).
    #[error(transparent)]
    Echo(#[from] EchoError),
    /// Reading the input or writing the echo locally failed.
    #[error("local I/O failed: {0}")]
    Local(io::Error),
}

/// A connected stream with its addresses.
#[derive(Debug)]
pub struct Connected<S> {
    /// The stream.
    pub stream: S,
    /// Our address.
    pub host: Address,
    /// The server's address.
    pub peer: Address,
    /// How long the TLS handshake took (`tls:` only): what TLS balancers
    /// are measured by.
    pub handshake: Option<Duration>,
    /// Whether that handshake resumed an earlier session (the server sent
    /// tickets: `sessionTickets=`) rather than doing a full one.
    pub resumed: bool,
}

/// Client settings beyond the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// Progress timeout and delivery bound.
    pub config: ClientConfig,
    /// The high mark is also the most unverified bytes in flight.
    pub marks: WaterMarks,
    /// Read size and linger.
    pub drive: DriveConfig,
}

impl Default for ClientOptions {
    /// No lingering close: a client closes once its echo is complete (so
    /// nothing is left to read) or once it has failed (and then the verdict
    /// must be reported at once, not after a linger; the server can take a
    /// reset).
    fn default() -> Self {
        Self {
            config: ClientConfig::default(),
            marks: WaterMarks::default(),
            drive: DriveConfig {
                linger: Duration::ZERO,
                ..DriveConfig::default()
            },
        }
    }
}

/// A successful echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Bytes sent.
    pub sent: u64,
    /// Bytes received back, all verified.
    pub received: u64,
}

/// Connects to `endpoint` within its timeout. TCP sockets get `TCP_NODELAY`;
/// every resolved address is tried in turn; `tls:` verifies the server
/// against the endpoint's trust roots.
///
/// # Errors
/// [`ClientError`] naming what failed: resolution, refusal, timeout, TLS.
pub async fn connect(endpoint: &ClientEndpoint) -> Result<Connected<AnyStream>, ClientError> {
    Connector::new(endpoint, false)?.connect().await
}

/// Connects to one endpoint as often as asked: TLS settings are loaded
/// once, and a PROXY header, when set, goes first (before a TLS handshake,
/// as HAProxy sends it).
#[derive(Debug, Clone)]
pub struct Connector {
    endpoint: ClientEndpoint,
    tls: Option<TlsClient>,
    proxy: Option<SendProxy>,
}

impl Connector {
    /// For `endpoint`; `insecure` accepts any server certificate
    /// (`--insecure`, for throw-away certificates).
    ///
    /// # Errors
    /// [`ClientError::TlsSetup`] when a `tls:` endpoint's files do not load.
    pub fn new(endpoint: &ClientEndpoint, insecure: bool) -> Result<Self, ClientError> {
        let tls = match endpoint {
            ClientEndpoint::Tls { tls, .. } => Some(TlsClient::from_endpoint(tls, insecure)?),
            _ => None,
        };
        Ok(Self {
            endpoint: endpoint.clone(),
            tls,
            proxy: None,
        })
    }

    /// Resumes no TLS session: every handshake a full one (`bench
    /// --no-resume`). By default a `tls:` connector keeps the session
    /// tickets servers send and resumes with them on its next connects.
    #[must_use]
    pub fn without_resumption(mut self) -> Self {
        self.tls = self.tls.map(|tls| tls.without_resumption());
        self
    }

    /// Sends `proxy` first on every connection.
    #[must_use]
    pub fn send_proxy(mut self, proxy: Option<SendProxy>) -> Self {
        self.proxy = proxy;
        self
    }

    /// The endpoint.
    #[must_use]
    pub fn endpoint(&self) -> &ClientEndpoint {
        &self.endpoint
    }

    /// One connection, within the endpoint's timeout (the TLS handshake
    /// included).
    ///
    /// # Errors
    /// [`ClientError`] naming what failed: resolution, refusal, timeout, TLS.
    pub async fn connect(&self) -> Result<Connected<AnyStream>, ClientError> {
        let (target, timeout) = match &self.endpoint {
            ClientEndpoint::Tcp {
                host,
                port,
                timeout,
                ..
            }
            | ClientEndpoint::Tls {
                host,
                port,
                timeout,
                ..
            } => (format!("{host}:{port}"), *timeout),
            ClientEndpoint::Unix { path, timeout, .. } => (path.clone(), *timeout),
            other => return Err(ClientError::Unsupported(other.to_string())),
        };
        match tokio::time::timeout(timeout, self.attempt(&target)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::ConnectTimeout { target, timeout }),
        }
    }

    async fn attempt(&self, target: &str) -> Result<Connected<AnyStream>, ClientError> {
        let mut connected = match &self.endpoint {
            ClientEndpoint::Tcp {
                host,
                port,
                bind_address,
                ..
            }
            | ClientEndpoint::Tls {
                host,
                port,
                bind_address,
                ..
            } => connect_tcp(host, *port, *bind_address).await?,
            ClientEndpoint::Unix { path, .. } => {
                match UnixStream::connect(PathBuf::from(path)).await {
                    Ok(stream) => Connected {
                        host: stream
                            .local_addr()
                            .map_or_else(|_| Address::unnamed_unix(), |a| unix_address(&a)),
                        peer: Address::unix(path),
                        stream: Socket::Unix(stream),
                        handshake: None,
                        resumed: false,
                    },
                    Err(source) => return Err(connect_error(target.to_owned(), source)),
                }
            }
            other => return Err(ClientError::Unsupported(other.to_string())),
        };
        if let Some(proxy) = self.proxy {
            proxy
                .send(&mut connected)
                .await
                .map_err(|source| ClientError::SendProxy {
                    target: target.to_owned(),
                    source,
                })?;
        }
        let (Some(tls), ClientEndpoint::Tls { host, .. }) = (&self.tls, &self.endpoint) else {
            return Ok(Connected {
                stream: MaybeTls::Plain(connected.stream),
                host: connected.host,
                peer: connected.peer,
                handshake: None,
                resumed: false,
            });
        };
        let started = std::time::Instant::now();
        let stream = tls
            .connect(host, connected.stream)
            .await
            .map_err(|e| ClientError::Tls {
                target: target.to_owned(),
                reason: describe_tls_error(&e),
            })?;
        let handshake = Some(started.elapsed());
        Ok(Connected {
            resumed: crate::tls::was_resumed(stream.get_ref().1),
            stream: MaybeTls::Tls(Box::new(stream)),
            handshake,
            host: connected.host,
            peer: connected.peer,
        })
    }
}

async fn connect_tcp(
    host: &str,
    port: u16,
    bind: Option<std::net::IpAddr>,
) -> Result<Connected<Socket>, ClientError> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ClientError::Resolve {
            host: host.to_owned(),
            source,
        })?;
    let mut last = None;
    for addr in addrs {
        match connect_addr(addr, bind).await {
            Ok(connected) => return Ok(connected),
            Err(source) => last = Some(connect_error(addr.to_string(), source)),
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Resolve {
        host: host.to_owned(),
        source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
    }))
}

async fn connect_addr(
    addr: SocketAddr,
    bind: Option<std::net::IpAddr>,
) -> io::Result<Connected<Socket>> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = bind {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(Connected {
        host: stream.local_addr()?.into(),
        peer: stream.peer_addr()?.into(),
        stream: Socket::Tcp(stream),
        handshake: None,
        resumed: false,
    })
}

fn connect_error(target: String, source: io::Error) -> ClientError {
    if source.kind() == io::ErrorKind::ConnectionRefused {
        ClientError::Refused { target }
    } else {
        ClientError::Connect { target, source }
    }
}

/// A PROXY header to send before anything else, for back ends (and
/// balancers with `accept-proxy`) that expect one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendProxy {
    /// 1 (text) or 2 (binary).
    pub version: u8,
    /// The client to declare; the connection's own address when `None`.
    pub source: Option<SocketAddr>,
}

impl SendProxy {
    /// Writes the header: the declared client and the server's address
    /// (`UNKNOWN` when either has no IP address, a Unix socket).
    ///
    /// # Errors
    /// The write's error.
    pub async fn send<S: AsyncWrite + Unpin>(
        &self,
        connected: &mut Connected<S>,
    ) -> io::Result<()> {
        let header = match (self.source.or(connected.host.ip()), connected.peer.ip()) {
            (Some(source), Some(destination)) => ProxyHeader::Proxied {
                version: self.version,
                source,
                destination,
                tlvs: Tlvs::default(),
            },
            _ => ProxyHeader::Unknown {
                version: self.version,
            },
        };
        connected
            .stream
            .write_all(&header.encode(self.version))
            .await
    }
}

/// The client's application side: feeds `input` (if any) into the
/// connection as room allows, finishing at its end-of-file, and writes every
/// verified echoed byte to `output`, with backpressure both ways.
#[derive(Debug)]
pub struct Pipe<I, O> {
    /// Where input comes from; `None` for a whole-message client.
    input: Option<I>,
    /// Where echoes go.
    output: O,
    /// Echoed bytes not yet written to `output`.
    unwritten: Bytes,
    /// Input read buffer.
    buf: Vec<u8>,
    /// How the echo ended, once it has.
    outcome: Option<Result<Summary, ClientError>>,
    /// The server's banner line, with `ClientConfig::banner`.
    banner: Option<Bytes>,
    /// The core's answers, checked in debug builds.
    contract: Piped,
}

impl<I: AsyncRead + Unpin, O: AsyncWrite + Unpin> Pipe<I, O> {
    /// A pipe from `input` (or none) to `output`.
    pub fn new(input: Option<I>, output: O) -> Self {
        Self {
            input,
            output,
            unwritten: Bytes::new(),
            buf: Vec::new(),
            outcome: None,
            banner: None,
            contract: Piped::default(),
        }
    }

    /// The back end's name from the server's banner line, if it sent one
    /// (with `ClientConfig::banner`).
    #[must_use]
    pub fn banner(&self) -> Option<&[u8]> {
        self.banner.as_deref()
    }

    /// The output sink (the collected echo, for a `Vec<u8>`).
    pub fn into_output(self) -> O {
        self.output
    }

    fn local_failure(&mut self, conn: &mut Connection<EchoClient>, error: io::Error) {
        if self.outcome.is_none() {
            self.outcome = Some(Err(ClientError::Local(error)));
        }
        self.unwritten = Bytes::new();
        conn.abort(now());
    }

    /// Writes pending echoes and takes events until neither is possible.
    /// Returns whether it did anything; when echoes remain unwritten, the
    /// output pushed back and its waker is registered.
    fn pump_output(&mut self, cx: &mut Context<'_>, conn: &mut Connection<EchoClient>) -> bool {
        let mut progressed = false;
        loop {
            while !self.unwritten.is_empty() {
                match Pin::new(&mut self.output).poll_write(cx, &self.unwritten) {
                    Poll::Ready(Ok(0)) => {
                        self.local_failure(conn, io::ErrorKind::WriteZero.into());
                        return true;
                    }
                    Poll::Ready(Ok(n)) => {
                        self.unwritten.advance(n);
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => {
                        self.local_failure(conn, e);
                        return true;
                    }
                    Poll::Pending => return progressed,
                }
            }
            match conn.poll_event() {
                Some(ClientEvent::Echoed(bytes)) => {
                    self.contract.echoed(&bytes);
                    self.unwritten = bytes;
                }
                Some(ClientEvent::Done { sent, received }) => {
                    self.contract.done(conn, sent, received);
                    self.outcome.get_or_insert(Ok(Summary { sent, received }));
                }
                Some(ClientEvent::Banner(name)) => self.banner = Some(name),
                Some(ClientEvent::Failed(error)) => {
                    self.contract.ended();
                    self.outcome.get_or_insert(Err(error.into()));
                }
                Some(_) => {}
                None => {
                    self.contract.drained(conn);
                    return progressed;
                }
            }
            progressed = true;
        }
    }

    fn poll_input(&mut self, cx: &mut Context<'_>, conn: &mut Connection<EchoClient>) -> Poll<()> {
        let room = conn.input_room().min(INPUT_CHUNK);
        let Some(input) = self.input.as_mut() else {
            return Poll::Pending;
        };
        if room == 0 {
            return Poll::Pending;
        }
        if self.buf.len() < room {
            self.buf.resize(room, 0);
        }
        let mut buf = ReadBuf::new(&mut self.buf[..room]);
        match Pin::new(input).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                conn.finish(now());
                self.input = None;
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => {
                // `room` came from `input_room`, so all of it is taken.
                let taken = conn.send(buf.filled(), now());
                Piped::took(buf.filled().len(), &taken);
                Poll::Ready(())
            }
            Poll::Ready(Err(e)) => {
                self.local_failure(conn, e);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// After the connection closed: write the last echoes, take the last
    /// events, flush.
    async fn finish(&mut self, conn: &mut Connection<EchoClient>) {
        poll_fn(|cx| {
            // Pumped until it stalls: with echoes still unwritten the
            // output pushes back (its waker is registered); else all is out.
            while self.pump_output(cx, conn) {}
            if self.unwritten.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        if let Err(e) = tokio::io::AsyncWriteExt::flush(&mut self.output).await {
            self.outcome.get_or_insert(Err(ClientError::Local(e)));
        }
    }
}

impl<I: AsyncRead + Unpin, O: AsyncWrite + Unpin> App<EchoClient> for Pipe<I, O> {
    fn poll_app(&mut self, cx: &mut Context<'_>, conn: &mut Connection<EchoClient>) -> Poll<()> {
        let output = self.pump_output(cx, conn);
        let input = self.poll_input(cx, conn);
        if output || input.is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Runs `client` over a connected stream with `pipe` as its application,
/// until the echo ends. Returns the outcome.
///
/// # Errors
/// [`ClientError::Echo`] for a failed echo, [`ClientError::Local`] when the
/// input or output failed.
pub async fn run<S, I, O>(
    connected: Connected<S>,
    client: EchoClient,
    pipe: &mut Pipe<I, O>,
    options: ClientOptions,
) -> Result<Summary, ClientError>
where
    S: Stream,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let Connected {
        mut stream,
        host,
        peer,
        ..
    } = connected;
    let mut conn = Connection::new(client, host, peer, options.marks, now());
    drive(&mut stream, &mut conn, pipe, &options.drive, None).await;
    drop(stream);
    pipe.finish(&mut conn).await;
    pipe.outcome.take().unwrap_or_else(|| {
        // The core always reports an outcome; if this ever breaks, say so.
        Err(ClientError::Local(io::Error::other(
            "the echo ended without an outcome",
        )))
    })
}

/// Sends `message` over a connected stream, verifies the echo and returns
/// it, with the back end's banner when `ClientConfig::banner` is set.
///
/// # Errors
/// As [`run`].
pub async fn echo_message_from<S: Stream>(
    connected: Connected<S>,
    message: Bytes,
    options: ClientOptions,
) -> Result<(Vec<u8>, Option<Bytes>), ClientError> {
    let client = EchoClient::message(message, options.config);
    let mut pipe = Pipe::new(None::<tokio::io::Empty>, Vec::new());
    run(connected, client, &mut pipe, options).await?;
    let banner = pipe.banner.take();
    Ok((pipe.into_output(), banner))
}

/// Sends `message` over a connected stream, verifies the echo and returns it.
///
/// # Errors
/// As [`run`].
pub async fn echo_message<S: Stream>(
    connected: Connected<S>,
    message: Bytes,
    options: ClientOptions,
) -> Result<Vec<u8>, ClientError> {
    let client = EchoClient::message(message, options.config);
    let mut pipe = Pipe::new(None::<tokio::io::Empty>, Vec::new());
    run(connected, client, &mut pipe, options).await?;
    Ok(pipe.into_output())
}
