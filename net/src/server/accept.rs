//! The accept loop: one per listening endpoint, handing each accepted
//! connection to what its endpoint wraps it in (nothing, a PROXY header, a
//! TLS handshake), and riding out accept errors: those about one
//! connection silently, the others (out of file descriptors) with a
//! thinned warning and a back-off.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use echo_core::{Arrival, Factory};
use tracing::Instrument;

use super::handshake::tls_connection;
use super::proxy::proxied_connection;
use super::served::start;
use super::{EchoServer, Wrap};
use crate::listener::{Accepted, Listener};
use crate::spawn::Spawner;
use crate::stream::Stream;
use crate::warnings::Warning;

/// First pause after an accept error that is not about one connection
/// (out of file descriptors, say); doubles up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between accept retries.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

impl EchoServer {
    pub(super) async fn serve_inner<L: Listener, Sp: Spawner>(
        &self,
        listener: L,
        spawner: Sp,
        wrap: Wrap,
    ) {
        let mut accepting = self.inner.accepting.subscribe();
        if !*accepting.borrow_and_update() {
            return;
        }
        self.inner.with_factory(Factory::do_start);
        let mut backoff = MIN_ACCEPT_BACKOFF;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = accepting.wait_for(|on| !*on) => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok(accepted) => {
                    backoff = MIN_ACCEPT_BACKOFF;
                    let inner = Arc::clone(&self.inner);
                    match &wrap {
                        Wrap::Plain => self.admit(accepted, &spawner),
                        Wrap::Proxied => spawner.spawn(proxied_connection(inner, accepted)),
                        Wrap::Tls { tls, proxied } => {
                            let tls = Arc::clone(tls);
                            spawner.spawn(tls_connection(inner, accepted, tls, *proxied));
                        }
                    }
                }
                Err(error) if is_per_connection(&error) => {
                    tracing::debug!(%error, "accept failed for one connection");
                }
                Err(error) => {
                    let reason = error.to_string();
                    if self
                        .inner
                        .warnings
                        .allow(Warning::AcceptFailed, &"-", &reason)
                    {
                        tracing::warn!(%error, retry_in = ?backoff, "accept failed; backing off");
                    }
                    let stopped = tokio::select! {
                        biased;
                        _ = accepting.wait_for(|on| !*on) => true,
                        () = tokio::time::sleep(backoff) => false,
                    };
                    if stopped {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
            }
        }
        self.inner.with_factory(Factory::do_stop);
    }

    fn admit<S: Stream + Send + 'static, Sp: Spawner>(&self, accepted: Accepted<S>, spawner: &Sp) {
        let Accepted { stream, peer, host } = accepted;
        if let Some((served, span)) =
            start(&self.inner, stream, peer, host, Arrival::default(), &[])
        {
            // A disabled span (the log level is above info) would still
            // take its room in every connection's future.
            if span.is_disabled() {
                spawner.spawn(served.run());
            } else {
                spawner.spawn(served.run().instrument(span));
            }
        }
    }
}

/// Errors that concern one connection attempt, not the listener.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
