//! A "close now" signal shared by every connection of a server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Set once, seen by every connection that waits on it, woken in the order
/// they began waiting.
///
/// Not tokio's `watch`: its waiters are spread over shards picked by tokio's
/// thread-local RNG, which is seeded only under `tokio_unstable`, so the
/// order in which connections learn of a shutdown (and so everything that
/// follows on the simulated network) changed from run to run. `Notify` keeps
/// its waiters in one list.
#[derive(Debug, Clone, Default)]
pub struct CloseSignal(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    set: AtomicBool,
    notify: Notify,
}

impl CloseSignal {
    /// A signal not yet set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the signal and wakes everyone waiting. Idempotent.
    pub fn trigger(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether the signal was set.
    #[must_use]
    pub fn is_triggered(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Completes once the signal is set (at once if it already is).
    pub async fn triggered(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check: a trigger in between still wakes us.
            notified.as_mut().enable();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}
