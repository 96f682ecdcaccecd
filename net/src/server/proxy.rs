//! `haproxy:` endpoints: the PROXY header (v1 or v2) read before
//! anything else, within [`PROXY_HEADER_TIMEOUT`]; the client it declares
//! is the connection's peer. A missing, malformed or late header is
//! logged (thinned), counted by reason, and closes the connection.

use std::io;
use std::sync::Arc;

use echo_core::{Address, Arrival, ProxyDecoder, ProxyError, ProxyHeader};
use tokio::io::AsyncReadExt;
use tracing::Instrument;

use super::served::start;
use super::{Inner, PROXY_HEADER_TIMEOUT};
use crate::listener::Accepted;
use crate::stream::Stream;
use crate::traffic::ProxyRefusal;
use crate::warnings::Warning;

/// A `haproxy:` connection: its PROXY header first, then the echo.
pub(super) async fn proxied_connection<S: Stream>(inner: Arc<Inner>, accepted: Accepted<S>) {
    let Some(arrived) = proxy_header(&inner, accepted).await else {
        return;
    };
    if !*inner.accepting.borrow() {
        return; // shut down while the header was on its way
    }
    let Arrived {
        stream,
        peer,
        host,
        arrival,
        first,
    } = arrived;
    if let Some((served, span)) = start(&inner, stream, peer, host, arrival, &first) {
        served.run().instrument(span).await;
    }
}

/// A connection whose PROXY header has been read.
pub(super) struct Arrived<S> {
    pub(super) stream: S,
    /// The declared client, or the socket's peer (a health check).
    pub(super) peer: Address,
    pub(super) host: Address,
    pub(super) arrival: Arrival,
    /// Bytes that followed the header in its last read.
    pub(super) first: Vec<u8>,
}

/// Reads the PROXY header of `accepted`; `None` (logged and counted) when
/// it is missing, malformed or late.
pub(super) async fn proxy_header<S: Stream>(
    inner: &Inner,
    accepted: Accepted<S>,
) -> Option<Arrived<S>> {
    let Accepted {
        mut stream,
        peer: socket_peer,
        host: socket_host,
    } = accepted;
    let header = tokio::time::timeout(PROXY_HEADER_TIMEOUT, read_proxy_header(&mut stream)).await;
    let refusal = match header {
        Ok(Ok(None)) => {
            tracing::debug!(peer = %socket_peer, "closed before sending a PROXY header");
            return None;
        }
        Ok(Ok(Some(Ok((header, first))))) => {
            let (peer, host, arrival) = declared(header, socket_peer, socket_host);
            return Some(Arrived {
                stream,
                peer,
                host,
                arrival,
                first,
            });
        }
        Ok(Ok(Some(Err(error)))) => Refusal::Header(error),
        Ok(Err(error)) => Refusal::Io(error),
        Err(_) => Refusal::TimedOut,
    };
    refuse(inner, &socket_peer, refusal);
    None
}

/// Who a valid header says the connection is from and to: the declared
/// client (the balancer is its `via`), or for a health check (LOCAL,
/// UNKNOWN) the socket's own ends.
pub(super) fn declared(
    header: ProxyHeader,
    socket_peer: Address,
    socket_host: Address,
) -> (Address, Address, Arrival) {
    let (peer, host, via, health_check) = match header {
        ProxyHeader::Proxied {
            source,
            destination,
            tlvs,
            ..
        } => {
            tracing::debug!(?tlvs, %source, via = %socket_peer, "PROXY header");
            // A PROXY command is a connection, whatever client it
            // declares (HAProxy's v1 checks declare their own
            // socket, but so may a real client on the same host).
            (source.into(), destination.into(), Some(socket_peer), false)
        }
        // LOCAL (v2) and UNKNOWN (v1) declare no client: the
        // balancer's own health checks.
        _ => (socket_peer, socket_host, None, true),
    };
    let arrival = Arrival {
        via,
        health_check,
        client_subject: None,
    };
    (peer, host, arrival)
}

/// Why a connection is closed without its PROXY header.
pub(super) enum Refusal {
    /// Malformed, overlong, or missing (data that is no header).
    Header(ProxyError),
    /// The socket failed first.
    Io(io::Error),
    /// Nothing complete within [`PROXY_HEADER_TIMEOUT`].
    TimedOut,
}

/// Counts the refusal by reason and logs it (thinned per peer).
pub(super) fn refuse(inner: &Inner, socket_peer: &Address, refusal: Refusal) {
    let reason = match refusal {
        Refusal::Header(error) => {
            inner.counters.bad_header(&ProxyRefusal::Header(&error));
            error.to_string()
        }
        Refusal::Io(error) => {
            inner.counters.bad_header(&ProxyRefusal::Io);
            format!("socket error before the PROXY header: {error}")
        }
        Refusal::TimedOut => {
            inner.counters.bad_header(&ProxyRefusal::TimedOut);
            format!("no PROXY header within {PROXY_HEADER_TIMEOUT:?}")
        }
    };
    if inner
        .warnings
        .allow(Warning::ProxyHeader, socket_peer, &reason)
    {
        tracing::warn!(peer = %socket_peer, %reason, "closing a connection without a valid PROXY header");
    }
}

/// Reads until the PROXY header is complete; returns it and the bytes that
/// followed it in the last read, or `None` when the peer closed before
/// sending a byte (a TCP health check).
async fn read_proxy_header<S: Stream>(
    stream: &mut S,
) -> io::Result<Option<Result<(ProxyHeader, Vec<u8>), ProxyError>>> {
    let mut decoder = ProxyDecoder::new();
    let mut buf = vec![0u8; 1024];
    let mut any = false;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(any.then_some(Err(ProxyError::Missing)));
        }
        any = true;
        match decoder.feed(&buf[..n]) {
            Ok(None) => {}
            Ok(Some((header, used))) => return Ok(Some(Ok((header, buf[used..n].to_vec())))),
            Err(error) => return Ok(Some(Err(error))),
        }
    }
}
