//! Reading certificates, keys and trust roots from PEM files, each error
//! naming the file and what is wrong with it.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

pub(super) fn read(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read {
        path: path.into(),
        cause,
    })
}

pub(super) fn certificates(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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

pub(super) fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
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

pub(super) fn root_store(
    certs: &[CertificateDer<'static>],
    path: &Path,
) -> Result<RootCertStore, TlsError> {
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
pub(super) fn trust_roots(path: &Path) -> Result<RootCertStore, TlsError> {
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
