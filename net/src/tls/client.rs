//! The client side of `tls:` endpoints: trust roots, an optional client
//! certificate, session resumption; and `--insecure`'s verifier.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use echo_core::ClientTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{TlsError, certificates, private_key, provider, read, root_store, trust_roots};

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
    /// The rustls configuration (for tests that run a session by hand).
    #[cfg(all(test, feature = "uring", target_os = "linux"))]
    pub(crate) fn config(&self) -> std::sync::Arc<rustls::ClientConfig> {
        std::sync::Arc::clone(self.connector.config())
    }

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
    /// or the handshake's failure (see [`describe`](super::describe)).
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
