//! How many completions a turn of the loop waits for (`--batch-wait`):
//! interrupt moderation, as a network card does it, for the one system
//! call a turn makes.
//!
//! A loop that returns at its first completion makes one system call per
//! one or two completions whenever it is faster than its peers (a
//! benchmark's client, most of the time): 0.4 to 1.3 per echo at 64 B,
//! moving from run to run with the two sides' timing. Asking the kernel
//! for several, but for no longer than the window (its `min_wait`, 6.12),
//! made it 0.16 to 0.33 in every run at a 60 us window, with the CPU per
//! echo and the p99 of a closed loop no worse (BENCHMARKS.md). The cost is
//! latency: an echo may wait up to the window for the completions that
//! would share its turn (an open loop's p50 rose by 20 to 35 us at 60 us),
//! so it is off unless asked for, and even then the loop asks for more
//! than one only while completions come fast enough to fill the window
//! ([`EXPECTED`] in it at the rate just seen). A lone connection, or a
//! slow trickle, is never held back.
//!
//! It needs the kernel to hold completions back until the loop asks
//! (`DEFER_TASKRUN`): otherwise each one wakes the waiting thread to count
//! them, and waiting costs more than the calls it saves.

use std::time::{Duration, Instant};

/// The completions the window must be expected to bring before the loop
/// waits for them: below this the wait would mostly end by timing out.
const EXPECTED: usize = 4;
/// The most completions one wait asks for.
const MOST: usize = 256;
/// How often the rate is measured.
const PERIOD: Duration = Duration::from_millis(10);

/// What to ask of `io_uring_enter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wait {
    /// Completions to wait for ...
    pub(super) want: usize,
    /// ... for at most this long (then one is enough); 0: no batching.
    pub(super) min_wait_us: u32,
}

/// The rate of completions, and the wait it calls for.
#[derive(Debug)]
pub(super) struct Batch {
    /// The longest an echo is held back for company; zero: never (also
    /// where the ring cannot defer its completions or the kernel has no
    /// `min_wait`).
    window: Duration,
    counted: usize,
    since: Option<Instant>,
    /// Completions per second over the last whole period.
    rate: f64,
}

impl Batch {
    /// Waits of up to `window` (zero: none).
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window,
            counted: 0,
            since: None,
            rate: 0.0,
        }
    }

    /// A turn took `completions` at `now`.
    pub(super) fn handle_turn(&mut self, completions: usize, now: Instant) {
        self.counted += completions;
        let since = *self.since.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= PERIOD {
            self.rate = self.counted as f64 / elapsed.as_secs_f64();
            self.counted = 0;
            self.since = Some(now);
        }
    }

    /// What the next turn should wait for.
    pub(super) fn poll_wait(&self) -> Wait {
        let alone = Wait {
            want: 1,
            min_wait_us: 0,
        };
        if self.window.is_zero() {
            return alone;
        }
        // Truncation is the intent: whole completions expected.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let expected = (self.rate * self.window.as_secs_f64()) as usize;
        if expected < EXPECTED {
            return alone;
        }
        Wait {
            want: expected.min(MOST),
            min_wait_us: u32::try_from(self.window.as_micros()).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_micros(60);

    const ALONE: Wait = Wait {
        want: 1,
        min_wait_us: 0,
    };

    /// A loop with `window` after 50 ms of turns of `each` completions,
    /// `gap_us` apart; and the instant after the last.
    fn fed(window: Duration, each: usize, gap_us: u64) -> (Batch, Instant) {
        let mut batch = Batch::new(window);
        let start = Instant::now();
        let mut now = start;
        while now < start + Duration::from_millis(50) {
            batch.handle_turn(each, now);
            now += Duration::from_micros(gap_us);
        }
        (batch, now)
    }

    #[test]
    fn a_fresh_loop_returns_at_its_first_completion() {
        assert_eq!(Batch::new(WINDOW).poll_wait(), ALONE);
    }

    #[test]
    fn a_slow_trickle_is_never_held_back() {
        // 20,000 completions a second: 1.2 per window.
        let (batch, _) = fed(WINDOW, 2, 100);
        assert_eq!(batch.poll_wait(), ALONE);
    }

    #[test]
    fn a_fast_stream_waits_for_what_the_window_brings() {
        // 200,000 a second: 12 per window.
        let (batch, _) = fed(WINDOW, 2, 10);
        let wait = batch.poll_wait();
        assert!((11..=12).contains(&wait.want), "{wait:?}");
        assert_eq!(wait.min_wait_us, 60);
    }

    #[test]
    fn the_ask_is_bounded() {
        let (batch, _) = fed(WINDOW, 1000, 10);
        assert_eq!(batch.poll_wait().want, MOST);
    }

    #[test]
    fn a_load_that_stops_stops_the_batching_within_a_period() {
        let (mut batch, now) = fed(WINDOW, 2, 10);
        assert!(batch.poll_wait().want > 1);
        // One lone completion after a quiet spell: the period it closes
        // had almost nothing in it.
        batch.handle_turn(1, now + Duration::from_millis(200));
        assert_eq!(batch.poll_wait(), ALONE);
    }

    #[test]
    fn with_no_window_every_turn_returns_at_its_first() {
        let (batch, _) = fed(Duration::ZERO, 1000, 10);
        assert_eq!(batch.poll_wait(), ALONE);
    }
}
