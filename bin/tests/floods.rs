//! No peer can flood the log: 2,000 hostile connections of any kind a peer
//! can make the server warn about (a stalled or failed TLS handshake, a
//! stalled or bad PROXY header, a refusal at the limit, a denial) write at
//! most 30 lines, the first few in full and then one summary per kind,
//! while the stats line counts every one of them exactly.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(30);
const HOSTILE: usize = 2_000;
/// The most lines 2,000 hostile connections may write.
const MOST_LINES: usize = 30;

/// Opens `HOSTILE` connections that each send `first`; kept open while the
/// returned streams live.
fn hostile(server: &Server, first: &[u8]) -> Vec<TcpStream> {
    (0..HOSTILE)
        .filter_map(|_| {
            let mut s = TcpStream::connect(server.addr()).ok()?;
            let _ = s.write_all(first);
            Some(s)
        })
        .collect()
}

/// Waits until the stats lines count all `HOSTILE` under `field` and the
/// throttle's summary (`N more ...`) is written; then no more than
/// [`MOST_LINES`] lines were.
fn thinned(server: &Server, field: &str, summary: &str) {
    server.wait_counted(field, HOSTILE, LONG);
    server.wait_log(summary, 1, LONG);
    let log = server.log();
    let lines = log.lines().count();
    assert!(
        lines <= MOST_LINES,
        "{lines} lines for {HOSTILE} connections:\n{log}"
    );
}

fn ssl(extra: &[&str]) -> Server {
    let mut args = vec!["--stats-interval", "2s"];
    args.extend_from_slice(extra);
    Server::start_listening(
        &["--listen", "ssl:0:interface=127.0.0.1", "--self-signed"],
        &args,
    )
}

fn proxied() -> Server {
    Server::start_listening(
        &["--listen", "haproxy:tcp:0:interface=127.0.0.1"],
        &["--stats-interval", "2s"],
    )
}

#[test]
fn stalled_tls_handshakes_are_thinned() {
    each_io(|_io| {
        let server = ssl(&["--handshake-timeout", "1s"]);
        let _held = hostile(&server, &[0x16, 0x03, 0x01]);
        thinned(
            &server,
            "tls_handshake_failures",
            "more TLS handshakes failed",
        );
    });
}

#[test]
fn plain_text_to_an_ssl_endpoint_is_thinned() {
    each_io(|_io| {
        let server = ssl(&[]);
        drop(hostile(&server, b"hello server\r\n"));
        thinned(
            &server,
            "tls_handshake_failures",
            "more TLS handshakes failed",
        );
    });
}

#[test]
fn stalled_proxy_headers_are_thinned() {
    each_io(|_io| {
        let server = proxied();
        let _held = hostile(&server, b"PROXY");
        thinned(
            &server,
            "bad_proxy_headers",
            "more connections closed without a valid PROXY header",
        );
    });
}

#[test]
fn bad_proxy_headers_are_thinned() {
    each_io(|_io| {
        let server = proxied();
        drop(hostile(&server, b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"));
        thinned(
            &server,
            "bad_proxy_headers",
            "more connections closed without a valid PROXY header",
        );
    });
}

#[test]
fn refusals_at_the_limit_are_thinned() {
    each_io(|_io| {
        let server = Server::start(&["--max-connections", "1", "--stats-interval", "2s", "-q"]);
        let mut first = TcpStream::connect(server.addr()).unwrap();
        first.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut first, &mut b).unwrap();
        drop(hostile(&server, b""));
        thinned(
            &server,
            "refused",
            "more connections refused at --max-connections",
        );
    });
}

#[test]
fn denials_are_thinned() {
    let server = Server::start(&["--deny", "127.0.0.1", "--stats-interval", "2s"]);
    drop(hostile(&server, b""));
    thinned(
        &server,
        "denied",
        "more connections denied by --allow/--deny",
    );
}
