//! What every connection loop shares with the coordinator: counters,
//! histograms and books, each connection writing its own part.

use super::*;

/// One back end's books while running.
#[derive(Debug, Clone)]
pub(super) struct BackendBook {
    /// Connections it accepted.
    pub(super) connections: u64,
    /// Measured requests it answered.
    pub(super) requests: u64,
    /// Their latencies, nanoseconds.
    pub(super) latency: Histogram<u64>,
}

impl BackendBook {
    pub(super) fn new() -> Self {
        Self {
            connections: 0,
            requests: 0,
            latency: new_histogram(),
        }
    }
}

/// One connection's stall books, shared with the coordinator so that a
/// connection stuck at the end still counts.
pub(super) type SharedStall = Arc<std::sync::Mutex<StallBook>>;

/// What every connection loop shares with the coordinator.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) measuring: AtomicBool,
    /// When measuring began: stalls count from then.
    pub(super) measuring_since: std::sync::OnceLock<Instant>,
    /// Every connection's stall books, by connection.
    pub(super) stalls: std::sync::Mutex<Vec<(usize, SharedStall)>>,
    /// The longest stall that ended since the last interval, nanoseconds.
    pub(super) interval_stall: AtomicU64,
    pub(super) stop: AtomicBool,
    /// Measured requests started (with `--requests`: at most that many).
    pub(super) claimed: AtomicU64,
    /// Measured requests completed and verified.
    pub(super) measured: AtomicU64,
    /// Failures by kind, in [`Failure::ALL`] order.
    pub(super) failures: [AtomicU64; 9],
    /// Connections established, or the first connect error.
    pub(super) connected: AtomicU64,
    pub(super) connect_error: std::sync::Mutex<Option<String>>,
    /// Connection loops that have returned.
    pub(super) ended: AtomicU64,
    /// Open loop: sends later than one interval, and sends skipped.
    pub(super) late: AtomicU64,
    pub(super) skipped: AtomicU64,
    /// Woken when `stop` is set: an open-loop connection waiting for its
    /// next send (seconds away at a low rate) ends at once.
    pub(super) halted: tokio::sync::Notify,
    /// Reconnects (`--reconnect-every`) made while measuring.
    pub(super) reconnects: AtomicU64,
    /// How long connects took, nanoseconds: the first connects and the
    /// reconnects made while measuring (not those of the warm-up).
    pub(super) connect_times: std::sync::Mutex<Option<Histogram<u64>>>,
    /// How long TLS handshakes took, nanoseconds.
    pub(super) handshake_times: std::sync::Mutex<Option<Histogram<u64>>>,
    /// Of those, the handshakes that resumed a session.
    pub(super) resumed: AtomicU64,
    /// Connects (TLS settings loaded once for every connection).
    pub(super) connector: Option<Connector>,
    /// Per back end (with banners): connections, requests, latencies.
    pub(super) backends: std::sync::Mutex<std::collections::BTreeMap<String, BackendBook>>,
    /// The first TLS failure's reason, in words.
    pub(super) tls_reason: std::sync::Mutex<Option<String>>,
}

impl Shared {
    /// A connection reached back end `name`.
    pub(super) fn backend_connected(&self, name: &str) {
        if let Ok(mut map) = self.backends.lock() {
            map.entry(name.to_owned())
                .or_insert_with(BackendBook::new)
                .connections += 1;
        }
    }

    /// Back end `name` answered a measured request in `took`.
    pub(super) fn backend_answered(&self, name: &str, took: Duration) {
        if let Ok(mut map) = self.backends.lock()
            && let Some(entry) = map.get_mut(name)
        {
            entry.requests += 1;
            let _ = entry.latency.record(took.as_nanos().max(1) as u64);
        }
    }

    /// Ends the run: every connection loop stops at its next step.
    pub(super) fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.halted.notify_waiters();
    }

    /// A connect took `took` (its handshake `handshake`, which `resumed` a
    /// session or not); a reconnect counts only while measuring, so
    /// connects per second can be derived.
    pub(super) fn connect_took(
        &self,
        took: Duration,
        handshake: Option<Duration>,
        resumed: bool,
        reconnect: bool,
    ) {
        if reconnect {
            if !self.measuring.load(Ordering::Relaxed) {
                return;
            }
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let record = |h: &std::sync::Mutex<Option<Histogram<u64>>>, took: Duration| {
            if let Ok(mut h) = h.lock() {
                let _ = h
                    .get_or_insert_with(new_histogram)
                    .record(took.as_nanos().max(1) as u64);
            }
        };
        record(&self.connect_times, took);
        if let Some(handshake) = handshake {
            record(&self.handshake_times, handshake);
            if resumed {
                self.resumed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The kind of a socket error, its reason kept when it is TLS's.
    pub(super) fn io_failure(&self, error: &std::io::Error) -> Failure {
        if let Some(reason) = echo_net::tls_reason(error)
            && let Ok(mut first) = self.tls_reason.lock()
        {
            first.get_or_insert(reason);
        }
        Failure::of_io(error)
    }

    /// The kind of a failed reconnect, its reason kept when it is TLS's.
    pub(super) fn connect_failure(&self, error: &echo_net::ClientError) -> Failure {
        if let echo_net::ClientError::Tls { reason, .. } = error
            && let Ok(mut first) = self.tls_reason.lock()
        {
            first.get_or_insert(reason.clone());
        }
        Failure::of_connect(error)
    }

    pub(super) fn fail(&self, failure: Failure) {
        self.failures[failure.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Connection `conn`'s stall books, new.
    pub(super) fn stall_book(&self, conn: usize) -> SharedStall {
        let book = SharedStall::default();
        if let Ok(mut all) = self.stalls.lock() {
            all.push((conn, Arc::clone(&book)));
        }
        book
    }

    /// A request went out on a connection at `at`.
    pub(super) fn stall_sent(book: &SharedStall, at: Instant) {
        if let Ok(mut book) = book.lock() {
            book.sent(at);
        }
    }

    /// An echo came back on a connection at `at`.
    pub(super) fn stall_completed(&self, book: &SharedStall, at: Instant) {
        let from = self.measuring_since.get().copied();
        let gap = book.lock().ok().and_then(|mut b| b.completed(at, from));
        if let Some(gap) = gap {
            self.interval_stall
                .fetch_max(gap.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    /// A connection ended (failed) at `at` with echoes owed.
    pub(super) fn stall_finished(&self, book: &SharedStall, at: Instant) {
        let from = self.measuring_since.get().copied();
        if let Ok(mut book) = book.lock() {
            book.finish(at, from);
        }
    }

    /// The longest stall still going on at `now`, over all connections.
    pub(super) fn ongoing_stall(&self, now: Instant) -> Duration {
        let from = self.measuring_since.get().copied();
        self.stalls.lock().map_or(Duration::ZERO, |all| {
            all.iter()
                .filter_map(|(_, book)| book.lock().ok()?.ongoing(now, from))
                .max()
                .unwrap_or_default()
        })
    }

    /// The longest stall of all, each connection's books closed at `end`.
    pub(super) fn longest_stall(&self, end: Instant) -> Option<Stall> {
        let started = *self.measuring_since.get()?;
        let all = self.stalls.lock().ok()?;
        all.iter()
            .filter_map(|(conn, book)| {
                let mut book = book.lock().ok()?.clone();
                book.finish(end, Some(started));
                let (began, length) = book.longest()?;
                Some(Stall {
                    connection: *conn,
                    began: began.saturating_duration_since(started),
                    length,
                })
            })
            .max_by_key(|s| (s.length, std::cmp::Reverse(s.connection)))
    }

    /// The failures so far, by kind.
    pub(super) fn failures(&self) -> Failures {
        Failures(self.failures.each_ref().map(|f| f.load(Ordering::Relaxed)))
    }

    pub(super) fn errors(&self) -> u64 {
        self.failures
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .sum()
    }
}

/// Latencies recorded by one thread's connections; the coordinator reads
/// them at the end even if that thread is still stuck in a request.
pub(super) type SharedHistogram = Arc<std::sync::Mutex<Histogram<u64>>>;
