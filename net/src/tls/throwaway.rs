//! Throw-away certificates (`--self-signed`, tests, the simulation): a CA
//! made at start and the certificates it issues.

use std::fmt;

use super::TlsError;

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
