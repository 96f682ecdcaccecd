//! The server side of `ssl:` endpoints: certificate, key, client
//! certificate policy and session resumption, loaded once and shared by
//! every connection.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use echo_core::{ServerTls, TlsMethod};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{TlsError, certificates, private_key, provider, read, root_store, versions};

/// The TLS side of an `ssl:` server: certificate, key and client
/// certificate policy, loaded once and shared by every connection.
#[derive(Clone)]
pub struct TlsServer {
    acceptor: tokio_rustls::TlsAcceptor,
    mutual: bool,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Loads the files an `ssl:` endpoint names (Twisted's defaults
    /// applied: `server.pem` for a missing key, the key file for a missing
    /// certificate).
    ///
    /// # Errors
    /// A file that cannot be read or holds nothing usable.
    pub fn from_files(tls: &ServerTls) -> Result<Self, TlsError> {
        let mut chain = read(tls.cert_file())?;
        if let Some(extra) = &tls.extra_cert_chain {
            chain.push(b'\n');
            chain.extend(read(extra)?);
        }
        let key = read(tls.key_file())?;
        let ca = match &tls.ca_certs {
            Some(path) => Some((read(path)?, PathBuf::from(path))),
            None => None,
        };
        Self::from_pem_named(
            (&chain, Path::new(tls.cert_file())),
            (&key, Path::new(tls.key_file())),
            ca.as_ref()
                .map(|(pem, path)| (pem.as_slice(), path.as_path())),
            tls.method,
        )?
        .with_session_tickets(tls.session_tickets)
    }

    /// From PEM text in memory: the certificate chain (ours first), its
    /// key and, for mutual TLS, the CAs whose client certificates are
    /// required.
    ///
    /// # Errors
    /// Text that holds no certificate or key, or that rustls refuses.
    pub fn from_pem(
        chain: &[u8],
        key: &[u8],
        client_ca: Option<&[u8]>,
        method: TlsMethod,
    ) -> Result<Self, TlsError> {
        let here = Path::new("(in memory)");
        Self::from_pem_named(
            (chain, here),
            (key, here),
            client_ca.map(|c| (c, here)),
            method,
        )
    }

    fn from_pem_named(
        (chain, chain_path): (&[u8], &Path),
        (key, key_path): (&[u8], &Path),
        client_ca: Option<(&[u8], &Path)>,
        method: TlsMethod,
    ) -> Result<Self, TlsError> {
        let chain = certificates(chain, chain_path)?;
        let key = private_key(key, key_path)?;
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions(method))
            .map_err(|cause| TlsError::Rustls {
                what: "protocol versions".into(),
                cause,
            })?;
        let mutual = client_ca.is_some();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some((pem, path)) => {
                let roots = root_store(&certificates(pem, path)?, path)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::ClientCa {
                            path: path.to_owned(),
                            detail: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder
                .with_single_cert(chain, key)
                .map_err(|cause| TlsError::Rustls {
                    what: format!(
                        "certificate {} with key {}",
                        chain_path.display(),
                        key_path.display()
                    ),
                    cause,
                })?;
        // By default no resumption at all: no TLS 1.3 session tickets
        // (they are the only bytes a TLS 1.3 server sends unasked, and a
        // client that closes without reading them, one with nothing to
        // echo, makes its kernel answer with a reset, which the server
        // would log as a lost connection: the simulation found it), and no
        // TLS 1.2 session IDs kept. Every handshake is then a full one,
        // which is also what a handshake benchmark wants to measure;
        // `sessionTickets=N` turns resumption on.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            mutual,
        })
    }

    /// Lets clients resume their sessions (`sessionTickets=N`): `tickets`
    /// TLS 1.3 tickets after each full handshake, and TLS 1.2 tickets or
    /// session IDs. Tickets are stateless (sealed with a key that rotates
    /// every 6 hours), so any number of clients costs the server no
    /// memory; TLS 1.2 session IDs, for clients without tickets, are kept
    /// in a cache of [`SESSION_CACHE`] entries. 0 keeps every handshake
    /// a full one.
    ///
    /// # Errors
    /// The ticket key could not be made (no system randomness).
    pub fn with_session_tickets(self, tickets: u8) -> Result<Self, TlsError> {
        if tickets == 0 {
            return Ok(self);
        }
        let mut config = (**self.acceptor.config()).clone();
        config.send_tls13_tickets = usize::from(tickets);
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|cause| TlsError::Rustls {
                what: "session tickets".into(),
                cause,
            })?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            mutual: self.mutual,
        })
    }

    /// Whether clients can resume sessions (`sessionTickets=` above 0).
    #[must_use]
    pub fn resumes(&self) -> bool {
        self.acceptor.config().send_tls13_tickets > 0
    }

    /// Whether clients must present a certificate (mutual TLS).
    #[must_use]
    pub fn is_mutual(&self) -> bool {
        self.mutual
    }

    /// Runs the server side of a handshake over `stream`.
    ///
    /// # Errors
    /// The handshake's failure (see [`describe`](super::describe) for a readable reason).
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> io::Result<tokio_rustls::server::TlsStream<S>> {
        self.acceptor.accept(stream).await
    }

    /// The rustls configuration, for a loop that runs the session itself
    /// (the io_uring path).
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(self.acceptor.config())
    }
}

/// How many TLS 1.2 session IDs a resuming server keeps (rustls' own
/// default): a bound on its memory, the oldest forgotten first.
pub const SESSION_CACHE: usize = 256;

/// Whether a finished handshake resumed an earlier session rather than
/// doing a full one (what a balancer that reuses sessions to its back
/// ends is judged by).
#[must_use]
pub fn was_resumed(conn: &rustls::CommonState) -> bool {
    conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

/// The subject of the certificate a client presented, as text
/// (`CN=client, O=...`), for the log and the server's events.
#[must_use]
pub fn client_subject<S>(stream: &tokio_rustls::server::TlsStream<S>) -> Option<String> {
    subject_of(stream.get_ref().1)
}

/// [`client_subject`] of a server session.
pub(crate) fn subject_of(conn: &rustls::ServerConnection) -> Option<String> {
    let der = conn.peer_certificates()?.first()?;
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => Some(cert.subject().to_string()),
        Err(_) => Some("(unparsable certificate)".into()),
    }
}
