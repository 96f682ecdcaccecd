//! A "close now" signal shared by every connection of a server.

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

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
    ///
    /// Cheap to poll again and again: every connection's driver polls it on
    /// every pass, and polling tokio's `Notified` while it waits takes the
    /// `Notify`'s one lock, shared by every connection of the server. Once
    /// registered with a waker, a poll with the same waker only reads the
    /// flag.
    pub async fn triggered(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check: a trigger in between still wakes us.
            notified.as_mut().enable();
            if self.is_triggered() {
                return;
            }
            let mut registered: Option<Waker> = None;
            poll_fn(|cx| {
                if self.is_triggered() {
                    return Poll::Ready(());
                }
                if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    return Poll::Pending;
                }
                let polled = notified.as_mut().poll(cx);
                if polled.is_pending() {
                    registered = Some(cx.waker().clone());
                }
                polled
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::counting_waker as waker;
    use std::pin::pin;
    use std::task::Context;

    #[test]
    fn a_waiter_polled_again_with_the_same_waker_is_still_woken_and_completes() {
        let signal = CloseSignal::new();
        let mut waiting = pin!(signal.triggered());
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(count.wakes(), 0);
        signal.trigger();
        assert_eq!(count.wakes(), 1);
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn a_waiter_polled_with_a_new_waker_wakes_the_new_one() {
        let signal = CloseSignal::new();
        let mut waiting = pin!(signal.triggered());
        let (first, w1) = waker();
        let (second, w2) = waker();
        assert!(
            waiting
                .as_mut()
                .poll(&mut Context::from_waker(&w1))
                .is_pending()
        );
        assert!(
            waiting
                .as_mut()
                .poll(&mut Context::from_waker(&w2))
                .is_pending()
        );
        signal.trigger();
        assert_eq!(second.wakes(), 1, "the task's current waker is woken");
        assert_eq!(first.wakes(), 0);
        assert!(
            waiting
                .as_mut()
                .poll(&mut Context::from_waker(&w2))
                .is_ready()
        );
    }

    #[test]
    fn a_signal_set_before_the_wait_completes_at_once() {
        let signal = CloseSignal::new();
        signal.trigger();
        let (count, w) = waker();
        let mut waiting = pin!(signal.triggered());
        assert!(
            waiting
                .as_mut()
                .poll(&mut Context::from_waker(&w))
                .is_ready()
        );
        assert_eq!(count.wakes(), 0);
    }
}
