//! TLS for `ssl:` servers and `tls:` clients, on rustls with the ring
//! provider (one provider, chosen here, never inferred: rustls panics when
//! it cannot tell which one to use).
//!
//! The echo itself is unchanged: a handshake turns a stream into a
//! `TlsStream`, which is a [`Stream`](crate::Stream) like any other, so the
//! same driver runs plain and TLS connections alike and the plain path does
//! no TLS work at all.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use echo_core::{ClientTls, ServerTls, TlsMethod};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};

/// How long an `ssl:` connection has to finish its handshake by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why TLS settings could not be loaded. Each message names the file and
/// what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, so not also a `source`).
        cause: io::Error,
    },
    /// A file that should hold certificates holds none.
    #[error("{path} holds no PEM certificate (a \"-----BEGIN CERTIFICATE-----\" block)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A file that should hold a private key holds none.
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A file is not valid PEM.
    #[error("{path} is not valid PEM: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        detail: String,
    },
    /// A certificate, key or trust store was refused by rustls. (Its
    /// reason is in the message, not a `source` too: it would be printed
    /// twice.)
    #[error("{what}: {}", refusal(cause))]
    Rustls {
        /// What was being set up.
        what: String,
        /// rustls' reason.
        cause: rustls::Error,
    },
    /// The client-certificate CA file gave no usable trust anchor.
    #[error("{path}: no usable CA certificate for checking client certificates ({detail})")]
    ClientCa {
        /// The `caCerts` file.
        path: PathBuf,
        /// rustls' reason.
        detail: String,
    },
    /// A throw-away certificate could not be made.
    #[error("cannot make a certificate: {0}")]
    Generate(String),
}

/// The one crypto provider (ring).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const ONLY_TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const ONLY_TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn versions(method: TlsMethod) -> &'static [&'static SupportedProtocolVersion] {
    match method {
        TlsMethod::Any => rustls::ALL_VERSIONS,
        TlsMethod::Tls12 => ONLY_TLS12,
        TlsMethod::Tls13 => ONLY_TLS13,
    }
}

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
    /// The handshake's failure (see [`describe`] for a readable reason).
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> io::Result<tokio_rustls::server::TlsStream<S>> {
        self.acceptor.accept(stream).await
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
    let (_, conn) = stream.get_ref();
    let der = conn.peer_certificates()?.first()?;
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => Some(cert.subject().to_string()),
        Err(_) => Some("(unparsable certificate)".into()),
    }
}

/// The TLS side of a `tls:` client: trust roots and an optional client
/// certificate, loaded once for any number of connections.
#[derive(Clone)]
pub struct TlsClient {
    connector: tokio_rustls::TlsConnector,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient").finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Loads what a `tls:` endpoint names: `trustRoots` (a directory of
    /// `*.pem` files, or one PEM file), else Mozilla's roots compiled in
    /// (`webpki-roots`: the same answer on every machine, no CA bundle
    /// needed in a container); `certificate`/`privateKey` for a client
    /// certificate. `insecure` accepts any server certificate (signatures
    /// are still checked, names and issuers are not).
    ///
    /// # Errors
    /// A file that cannot be read or holds nothing usable.
    pub fn from_endpoint(tls: &ClientTls, insecure: bool) -> Result<Self, TlsError> {
        let roots = match (&tls.trust_roots, insecure) {
            (_, true) => None,
            (Some(path), false) => Some(trust_roots(Path::new(path))?),
            (None, false) => Some(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
        };
        let identity = match &tls.certificate {
            None => None,
            Some(cert) => {
                let key_path = tls.private_key.as_deref().unwrap_or(cert);
                Some((
                    certificates(&read(cert)?, Path::new(cert))?,
                    private_key(&read(key_path)?, Path::new(key_path))?,
                ))
            }
        };
        Self::new(roots, identity)
    }

    /// From PEM text in memory: the CAs to trust and, optionally, a client
    /// certificate chain and its key.
    ///
    /// # Errors
    /// Text that holds no certificate or key, or that rustls refuses.
    pub fn from_pem(roots: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<Self, TlsError> {
        let here = Path::new("(in memory)");
        let roots = root_store(&certificates(roots, here)?, here)?;
        let identity = match identity {
            None => None,
            Some((chain, key)) => Some((certificates(chain, here)?, private_key(key, here)?)),
        };
        Self::new(Some(roots), identity)
    }

    fn new(
        roots: Option<RootCertStore>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|cause| TlsError::Rustls {
                what: "protocol versions".into(),
                cause,
            })?;
        let builder = match roots {
            Some(roots) => builder.with_root_certificates(roots),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
        };
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|cause| TlsError::Rustls {
                        what: "client certificate".into(),
                        cause,
                    })?
            }
        };
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// The same client, resuming no session: every handshake a full one
    /// (`bench --no-resume`). By default a client keeps the tickets a
    /// server sends (up to 256 servers' worth) and resumes with them.
    #[must_use]
    pub fn without_resumption(&self) -> Self {
        let mut config = (**self.connector.config()).clone();
        config.resumption = rustls::client::Resumption::disabled();
        Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// Runs the client side of a handshake with `host` over `stream`:
    /// `host` is sent as SNI (when it is a name) and must be in the
    /// server's certificate.
    ///
    /// # Errors
    /// A host that is neither a DNS name nor an address (`InvalidInput`),
    /// or the handshake's failure (see [`describe`]).
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        host: &str,
        stream: S,
    ) -> io::Result<tokio_rustls::client::TlsStream<S>> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a host name a certificate can be checked against"),
            )
        })?;
        self.connector.connect(name, stream).await
    }
}

/// Why rustls refused one of our own certificates or keys, in words that
/// say what to do: its own text calls our certificate the peer's, and an
/// X.509 v1 certificate (what `openssl x509 -req` makes without
/// `-extfile`) only shows as `Other(UnsupportedCertVersion)`.
fn refusal(error: &rustls::Error) -> String {
    use rustls::{CertificateError as Cert, Error as E, InconsistentKeys};
    match error {
        E::InvalidCertificate(Cert::Other(other))
            if format!("{other:?}").contains("UnsupportedCertVersion") =>
        {
            "the certificate is X.509 version 1, and rustls needs version 3: make it with `openssl req -x509 ...`, or give `openssl x509 -req` an `-extfile` (with a subjectAltName)".into()
        }
        E::InvalidCertificate(cert) => format!("the certificate is not usable: {cert:?}"),
        E::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            "the private key is not the certificate's (they are from different pairs)".into()
        }
        other => other.to_string(),
    }
}

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

/// `--insecure`: any certificate is accepted, its signatures are still
/// checked (so the handshake is a real one).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn read(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read {
        path: path.into(),
        cause,
    })
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            path: path.to_owned(),
        }),
        Err(e) => Err(TlsError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        }),
    }
}

fn root_store(certs: &[CertificateDer<'static>], path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert.clone()).map_err(|cause| TlsError::Rustls {
            what: format!("CA certificate in {}", path.display()),
            cause,
        })?;
    }
    Ok(roots)
}

/// Twisted's `trustRoots`: a directory of `*.pem` CA files; one PEM file
/// is our extension.
fn trust_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let unreadable = |cause| TlsError::Read {
        path: path.to_owned(),
        cause,
    };
    if !path.is_dir() {
        let pem = std::fs::read(path).map_err(unreadable)?;
        return root_store(&certificates(&pem, path)?, path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(unreadable)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    files.sort();
    let mut certs = Vec::new();
    for file in &files {
        let pem = std::fs::read(file).map_err(|cause| TlsError::Read {
            path: file.clone(),
            cause,
        })?;
        certs.extend(certificates(&pem, file)?);
    }
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.join("*.pem"),
        });
    }
    root_store(&certs, path)
}

/// The key type of a throw-away certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256: what every TLS peer accepts.
    EcdsaP256,
    /// Ed25519: signatures of one fixed size, so a handshake has the same
    /// byte counts every time (what a replayable simulation needs).
    Ed25519,
}

/// A throw-away certificate authority: for `--self-signed`, tests and the
/// simulation (rcgen's default validity: 1975 to 4096, so a simulated
/// clock never makes one expire).
pub struct ThrowawayCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
    kind: KeyKind,
}

impl fmt::Debug for ThrowawayCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrowawayCa")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A certificate issued by a [`ThrowawayCa`], with its key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The certificate (DER).
    pub der: Vec<u8>,
}

impl Issued {
    /// SHA-256 of the certificate, as `openssl x509 -fingerprint -sha256`
    /// prints it (`AB:CD:...`).
    #[must_use]
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.der);
        let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }
}

fn key_pair(kind: KeyKind) -> Result<rcgen::KeyPair, TlsError> {
    let alg = match kind {
        KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
    };
    rcgen::KeyPair::generate_for(alg).map_err(|e| TlsError::Generate(e.to_string()))
}

impl ThrowawayCa {
    /// A new CA named `name` (its common name).
    ///
    /// # Errors
    /// Key generation failed (no system randomness).
    pub fn new(name: &str, kind: KeyKind) -> Result<Self, TlsError> {
        let fail = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let key = key_pair(kind)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(fail)?;
        Ok(Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
            kind,
        })
    }

    /// The CA certificate (PEM): what a peer trusts.
    #[must_use]
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    ///
    /// # Errors
    /// A name rcgen refuses, or key generation failed.
    pub fn server(&self, names: &[&str]) -> Result<Issued, TlsError> {
        self.issue(names, names.first().copied().unwrap_or("server"), false)
    }

    /// A client certificate whose subject is `CN=common_name`.
    ///
    /// # Errors
    /// Key generation failed.
    pub fn client(&self, common_name: &str) -> Result<Issued, TlsError> {
        self.issue(&[], common_name, true)
    }

    fn issue(&self, names: &[&str], common_name: &str, client: bool) -> Result<Issued, TlsError> {
        let fail = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let key = key_pair(self.kind)?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }
}
