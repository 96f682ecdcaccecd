//! TLS for `ssl:` servers and `tls:` clients, on rustls with the ring
//! provider (one provider, chosen here, never inferred: rustls panics when
//! it cannot tell which one to use).
//!
//! The echo itself is unchanged: a handshake turns a stream into a
//! `TlsStream`, which is a [`Stream`](crate::Stream) like any other, so the
//! same driver runs plain and TLS connections alike and the plain path does
//! no TLS work at all.

use std::sync::Arc;

use echo_core::TlsMethod;
use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;

mod client;
mod error;
mod pem;
mod reasons;
mod server;
mod throwaway;

pub use client::TlsClient;
pub use error::TlsError;
use pem::{certificates, private_key, read, root_store, trust_roots};
pub(crate) use reasons::describe_on_server;
pub use reasons::{HandshakeFailure, describe, tls_reason};
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) use server::subject_of;
pub use server::{SESSION_CACHE, TlsServer, client_subject, was_resumed};
pub use throwaway::{Issued, KeyKind, ThrowawayCa};

/// How long an `ssl:` connection has to finish its handshake by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
