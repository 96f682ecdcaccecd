//! Why TLS settings could not be loaded, and rustls' refusals of our own
//! certificates and keys in words that say what to do.

use std::io;
use std::path::PathBuf;

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
