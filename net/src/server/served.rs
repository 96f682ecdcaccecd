//! A connection from its admission to its end: the factory admits it (or
//! the access list or the limit turns it away), its task drives the echo,
//! and its drop books the end exactly once, however the task ends.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use echo_core::{Address, Arrival, Connection, Echo};

use super::Inner;
use crate::driver::{NoApp, drive, now};
use crate::stream::Stream;
use crate::traffic::Metered;

/// Admits a connection (or turns it away: access list, limit) and makes
/// its served task: the protocol, its span, and `first` (bytes that came
/// with a PROXY header) already fed.
pub(super) fn start<S: Stream>(
    inner: &Arc<Inner>,
    stream: S,
    peer: Address,
    host: Address,
    arrival: Arrival,
    first: &[u8],
) -> Option<(Served<S>, tracing::Span)> {
    let (conn, span) = admit(inner, peer, host, arrival, first, now())?;
    Some((
        Served {
            stream: Some(stream),
            conn,
            inner: Arc::clone(inner),
            seen: (0, 0),
        },
        span,
    ))
}

/// Admits a connection (or turns it away: access list, limit), whatever
/// drives its socket: the echo, started at `now` with `first` (bytes that
/// came with a PROXY header) already fed, and its span.
pub(super) fn admit(
    inner: &Inner,
    peer: Address,
    host: Address,
    arrival: Arrival,
    first: &[u8],
    now: std::time::Instant,
) -> Option<(Connection<Echo>, tracing::Span)> {
    if let Some(access) = inner.access.get()
        && !access.admits(&peer)
    {
        if !arrival.health_check {
            inner.with_factory(|f| f.deny(&peer));
            return None; // closed at once, before any byte is echoed
        }
        // A balancer's check carries no client address for the list to
        // judge, and whoever may send a PROXY header may declare any
        // client anyway: served, and said once.
        if !inner.exempt_said.swap(true, Ordering::Relaxed) {
            tracing::info!(balancer = %peer, "serving the balancer's health checks (PROXY LOCAL or UNKNOWN) although --allow/--deny would turn its address away: they declare no client to judge (said once)");
        }
    }
    let via = arrival.via.clone();
    let admitted = inner.with_factory(|f| f.build_protocol_for(&peer, &host, arrival));
    let echo = admitted?; // refused: the stream drops, closed at once
    let span = match &via {
        Some(via) => tracing::info_span!("conn", id = %echo.id(), %peer, %via),
        None => tracing::info_span!("conn", id = %echo.id(), %peer),
    };
    let mut conn = Connection::new(echo, host, peer, inner.options.marks, now);
    if !first.is_empty() {
        // A banner or a fault knob may have closed the connection at once;
        // the core then discards them (and says so at debug level).
        let _ = conn.handle_data(first, now);
    }
    Some((conn, span))
}

/// Books a connection's end, exactly once, once its socket is closed: its
/// peaks, its last bytes, and the factory's count.
pub(super) fn book_end(inner: &Inner, conn: &Connection<Echo>, seen: &mut (u64, u64)) {
    // Bytes a fault knob holds back count as buffered ones do.
    let peak = conn
        .transport()
        .peak_buffered()
        .max(conn.protocol().peak_owed());
    inner.peak_buffered.fetch_max(peak, Ordering::Relaxed);
    let idle = conn.transport().peak_idle_capacity();
    inner.peak_idle_capacity.fetch_max(idle, Ordering::Relaxed);
    if inner.options.count_traffic {
        Metered::count(&inner.counters, seen, conn);
    }
    inner.with_factory(|f| f.connection_ended(conn));
}

/// One served connection. Its drop closes the socket and then reports the
/// connection lost, so the count is exact however the task ends: normally,
/// by a panic, or cancelled with its runtime.
pub(super) struct Served<S> {
    stream: Option<S>,
    conn: Connection<Echo>,
    inner: Arc<Inner>,
    /// Bytes (in, out) already added to the server's counters.
    seen: (u64, u64),
}

impl<S: Stream> Served<S> {
    /// Drives the connection to its end.
    ///
    /// Not an `async fn`: an async fn keeps its by-value arguments twice in
    /// its future (the argument, then the local it is moved into; rust-lang
    /// issue 62958), and this future lives as long as the connection. An
    /// `async move` block keeps `self` once: 344 bytes less per connection.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub(super) fn run(mut self) -> impl Future<Output = ()> {
        async move {
            let close = self.inner.close.clone();
            if let Some(stream) = self.stream.as_mut() {
                let config = &self.inner.options.drive;
                if self.inner.options.count_traffic {
                    let mut app = Metered {
                        counters: &self.inner.counters,
                        seen: &mut self.seen,
                    };
                    drive(stream, &mut self.conn, &mut app, config, Some(close)).await;
                } else {
                    drive(stream, &mut self.conn, &mut NoApp, config, Some(close)).await;
                }
            }
        }
    }
}

impl<S> Drop for Served<S> {
    fn drop(&mut self) {
        drop(self.stream.take());
        book_end(&self.inner, &self.conn, &mut self.seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{EchoServer, ServerOptions};

    /// What an idle connection costs is mostly its task's future: keep it
    /// small (it was 1,184 bytes over TCP before the arguments stopped
    /// being stored twice and the settings stopped being copied in; 680
    /// before the close signal's future lost its wrapper: 664 now).
    #[tokio::test]
    async fn a_served_connections_future_stays_small() {
        let server = EchoServer::new(ServerOptions::default());
        let (stream, _peer) = tokio::io::duplex(64);
        let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let (served, _span) = start(
            &server.inner,
            stream,
            addr.into(),
            addr.into(),
            Arrival::default(),
            &[],
        )
        .expect("admitted");
        let future = served.run();
        let size = std::mem::size_of_val(&future);
        assert!(size <= 672, "a served connection's future is {size} bytes");
    }
}
