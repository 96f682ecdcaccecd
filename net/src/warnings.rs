//! Warnings a peer can cause, throttled so that no peer can flood the log:
//! the first few of a kind in full, then one line per kind per
//! [`SUMMARY_EVERY`] saying how many more there were and naming the last
//! peer. The stats line's counters stay exact; only the log is thinned.
//!
//! The pending count is written by a timer once the interval has passed,
//! not by the next event of its kind (which may never come), and by
//! [`Throttle::flush`] at shutdown.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// What a peer made the server warn about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Warning {
    /// Turned away by `--allow`/`--deny`.
    Denied,
    /// Refused at `--max-connections`.
    LimitReached,
    /// A TLS handshake failed or timed out.
    TlsHandshake,
    /// A missing, malformed or late PROXY header.
    ProxyHeader,
    /// `accept` failed for the listener (out of descriptors, say).
    AcceptFailed,
}

impl Warning {
    const ALL: [Self; 5] = [
        Self::Denied,
        Self::LimitReached,
        Self::TlsHandshake,
        Self::ProxyHeader,
        Self::AcceptFailed,
    ];

    fn index(self) -> usize {
        Self::ALL.iter().position(|w| *w == self).unwrap_or(0)
    }

    /// The summary line's message.
    fn what(self) -> &'static str {
        match self {
            Self::Denied => "more connections denied by --allow/--deny",
            Self::LimitReached => "more connections refused at --max-connections",
            Self::TlsHandshake => "more TLS handshakes failed",
            Self::ProxyHeader => "more connections closed without a valid PROXY header",
            Self::AcceptFailed => "more accept failures",
        }
    }
}

/// Warnings of one kind logged in full before the rest are only counted.
pub(crate) const IN_FULL: u32 = 5;

/// How often a kind's count of warnings not logged is written, at most.
/// A kind quiet for this long is logged in full again.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// One kind's books.
#[derive(Debug, Default)]
struct Books {
    /// Lines in full since the kind was last quiet.
    in_full: u32,
    /// Warnings not logged since the last summary.
    held: u64,
    /// The last of them: its peer and reason.
    last: Option<(String, String)>,
    /// A summary is due (its timer runs).
    due: bool,
    /// When the last warning of this kind came.
    latest: Option<Instant>,
}

/// The throttle; cheap to clone, clones share their books.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    books: Arc<Mutex<[Books; 5]>>,
    /// The runtime it was made on: the summaries' timers run there when
    /// a warning comes from a thread with none (an io_uring loop's).
    runtime: Option<tokio::runtime::Handle>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            books: Arc::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

impl Throttle {
    /// Books a warning of `kind` about `peer` for `reason`: `true` when it
    /// is to be logged in full by the caller; otherwise it is counted into
    /// the next summary, whose timer this arms on the current tokio
    /// runtime.
    pub(crate) fn allow(&self, kind: Warning, peer: &dyn fmt::Display, reason: &str) -> bool {
        // tokio's clock: a paused or simulated one governs the rate too.
        let at = Instant::now();
        let mut books = self.books.lock().unwrap_or_else(PoisonError::into_inner);
        let b = &mut books[kind.index()];
        let quiet = b
            .latest
            .is_some_and(|t| at.saturating_duration_since(t) >= SUMMARY_EVERY);
        if quiet && b.held == 0 {
            b.in_full = 0;
        }
        b.latest = Some(at);
        if b.in_full < IN_FULL {
            b.in_full += 1;
            return true;
        }
        b.held += 1;
        b.last = Some((peer.to_string(), reason.to_owned()));
        // Outside any runtime the summary waits for the next flush
        // instead of panicking.
        if !b.due
            && let Some(runtime) = tokio::runtime::Handle::try_current()
                .ok()
                .or_else(|| self.runtime.clone())
        {
            b.due = true;
            let this = self.clone();
            runtime.spawn(async move {
                tokio::time::sleep(SUMMARY_EVERY).await;
                this.summarise(kind);
            });
        }
        false
    }

    /// Writes `kind`'s summary, if anything was held back.
    fn summarise(&self, kind: Warning) {
        let mut books = self.books.lock().unwrap_or_else(PoisonError::into_inner);
        let b = &mut books[kind.index()];
        b.due = false;
        if b.held == 0 {
            return;
        }
        let (peer, reason) = b.last.take().unwrap_or_default();
        let held = std::mem::take(&mut b.held);
        drop(books);
        tracing::warn!(
            last_peer = %peer,
            last_reason = %reason,
            "{} {} (logged in full: the first {IN_FULL}; at most one such line per {SUMMARY_EVERY:?})",
            held,
            kind.what()
        );
    }

    /// Writes every summary still held back (at shutdown).
    pub(crate) fn flush(&self) {
        for kind in Warning::ALL {
            self.summarise(kind);
        }
    }
}
