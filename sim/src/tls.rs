//! TLS in the simulation: one throw-away CA and server certificate per test
//! process (Ed25519, so every handshake has the same byte counts and a seed
//! replays exactly), and fresh configurations per case (so no session
//! ticket carries over from one case, or one replay, to the next). The
//! client's stream is echo-net's own `MaybeTls`, as over real sockets.

use std::sync::OnceLock;

use echo_core::TlsMethod;
use echo_net::{KeyKind, ThrowawayCa, TlsClient, TlsServer};

/// The name the server's certificate carries (the server host's name).
pub(crate) const SERVER_NAME: &str = crate::vocab::SERVER;

/// The CA (PEM), the server certificate and its key, made once.
fn pems() -> &'static (String, String, String) {
    static PEMS: OnceLock<(String, String, String)> = OnceLock::new();
    PEMS.get_or_init(|| {
        let ca = ThrowawayCa::new("sim CA", KeyKind::Ed25519).expect("a CA");
        let server = ca.server(&[SERVER_NAME]).expect("a server certificate");
        (ca.pem().to_owned(), server.cert_pem, server.key_pem)
    })
}

/// A server and a client configuration for one case, sharing nothing with
/// any other case.
pub(crate) fn pair() -> (TlsServer, TlsClient) {
    let (ca, cert, key) = pems();
    let server = TlsServer::from_pem(cert.as_bytes(), key.as_bytes(), None, TlsMethod::Any)
        .expect("the sim's certificate loads");
    let client = TlsClient::from_pem(ca.as_bytes(), None).expect("the sim's CA loads");
    (server, client)
}
