//! `ssl:` endpoints: the ClientHello's first record read apart (a peer
//! that leaves before a byte is no failed handshake), the handshake within
//! the handshake timeout (after the PROXY header with `haproxy:ssl:`),
//! counted as full or resumed, or as failed by reason; then the echo.

use std::io;
use std::sync::Arc;

use echo_core::Arrival;
use tokio::io::AsyncReadExt;
use tracing::Instrument;

use super::Inner;
use super::proxy::{Arrived, proxy_header};
use super::served::start;
use crate::listener::Accepted;
use crate::stream::{Prefixed, Stream};
use crate::tls::{HandshakeFailure, TlsServer, client_subject, describe_on_server, was_resumed};
use crate::warnings::Warning;

/// An `ssl:` connection: its PROXY header (`haproxy:ssl:`), its handshake,
/// then the echo.
pub(super) async fn tls_connection<S: Stream>(
    inner: Arc<Inner>,
    accepted: Accepted<S>,
    tls: Arc<TlsServer>,
    proxied: bool,
) {
    let timeout = inner.options.drive.handshake_timeout;
    let mut deadline = tokio::time::Instant::now() + timeout;
    let arrived = if proxied {
        let Some(arrived) = proxy_header(&inner, accepted).await else {
            return;
        };
        deadline = tokio::time::Instant::now() + timeout; // the handshake's time starts after the header
        arrived
    } else {
        // The first record read here, before any TLS state exists: a peer
        // that connects and closes without a byte (a TCP health check, a
        // port scan) is no failed handshake, and one that stalls inside
        // its ClientHello holds a few bytes, not rustls' buffers.
        let Accepted {
            mut stream,
            peer,
            host,
        } = accepted;
        let first = match first_record(&mut stream, deadline).await {
            Ok(None) => {
                tracing::debug!(%peer, "closed before sending a TLS ClientHello");
                return;
            }
            Ok(Some(first)) => first,
            Err(error) => {
                tracing::debug!(%peer, %error, "socket error before a TLS ClientHello");
                return;
            }
        };
        Arrived {
            stream,
            peer,
            host,
            arrival: Arrival::default(),
            first,
        }
    };
    let Arrived {
        stream,
        peer,
        host,
        mut arrival,
        first,
    } = arrived;
    // Boxed, the handshake's state (rustls' connection and buffers) and
    // then the echo's are allocated as each begins: a task's future holds
    // room for its largest stage from the start, and a peer stalled before
    // its first record must cost a few bytes, not that.
    let started = tokio::time::Instant::now();
    let handshake = Box::pin(tls.accept(Prefixed::new(first, stream)));
    let (why, reason) = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(stream)) => {
            let resumed = was_resumed(stream.get_ref().1);
            inner.counters.tls_handshake(started.elapsed(), resumed);
            if resumed {
                tracing::debug!(%peer, "TLS session resumed");
            }
            if !*inner.accepting.borrow() {
                return; // shut down during the handshake
            }
            arrival.client_subject = client_subject(&stream);
            if let Some((served, span)) = start(&inner, stream, peer, host, arrival, &[]) {
                Box::pin(served.run().instrument(span)).await;
            }
            return;
        }
        Ok(Err(error)) => (HandshakeFailure::of(&error), describe_on_server(&error)),
        Err(_) => (
            HandshakeFailure::TimedOut,
            format!("no TLS handshake within {timeout:?}"),
        ),
    };
    handshake_failed(&inner, &peer, &arrival, why, &reason);
}

/// A failed handshake is counted by its reason and logged (the warnings
/// thinned per peer and reason): on both paths.
pub(super) fn handshake_failed(
    inner: &Inner,
    peer: &echo_core::Address,
    arrival: &Arrival,
    why: HandshakeFailure,
    reason: &str,
) {
    inner.counters.tls_failure(why);
    if inner.warnings.allow(Warning::TlsHandshake, peer, reason) {
        let via = arrival.via.as_ref().map(tracing::field::display);
        tracing::warn!(%peer, via, %reason, "TLS handshake failed");
    }
}

/// The largest TLS record a ClientHello may come in (2^14 bytes of
/// payload and the 5-byte header).
const MAX_RECORD: usize = (1 << 14) + 5;

/// Reads a TLS connection's first record (its ClientHello, or what a peer
/// that does not speak TLS sent first), as far as it comes by `deadline`
/// (then the handshake times out at once); `None` when the peer closed
/// before a byte. Bytes that do not start a
/// handshake record are handed over as they came, for the handshake to
/// refuse.
async fn first_record<S: Stream>(
    stream: &mut S,
    deadline: tokio::time::Instant,
) -> io::Result<Option<Vec<u8>>> {
    let mut first = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let want = match first.as_slice() {
            [] => 5,
            [0x16, _, _, hi, lo, ..] => {
                (5 + usize::from(u16::from_be_bytes([*hi, *lo]))).min(MAX_RECORD)
            }
            [0x16, ..] => 5,
            _ => return Ok(Some(first)), // not a handshake record
        };
        if first.len() >= want {
            return Ok(Some(first));
        }
        let room = (want - first.len()).min(buf.len());
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[..room])).await {
            Ok(Ok(0)) if first.is_empty() => return Ok(None),
            Ok(Err(error)) if first.is_empty() => return Err(error),
            Ok(Ok(n)) if n > 0 => first.extend_from_slice(&buf[..n]),
            // The handshake says why: a late, cut or broken ClientHello.
            _ => return Ok(Some(first)),
        }
    }
}
