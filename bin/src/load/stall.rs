//! The longest stall: per connection, the longest time in which no echo
//! completed while one was owed (what a failover or a rolling restart
//! costs a client), kept as plain bookkeeping over instants given to it
//! (no clock here), so it can be fed known gaps in a test.

use std::time::{Duration, Instant};

/// One connection's books.
#[derive(Debug, Clone, Default)]
pub(crate) struct StallBook {
    /// Echoes owed now.
    outstanding: usize,
    /// Since when the current run of owed echoes has gone unanswered: the
    /// send that made something owed, or the last completion since.
    quiet_since: Option<Instant>,
    /// The longest so far: its start and length.
    longest: Option<(Instant, Duration)>,
}

impl StallBook {
    /// A request went out at `at`.
    pub(crate) fn sent(&mut self, at: Instant) {
        if self.outstanding == 0 {
            self.quiet_since = Some(at);
        }
        self.outstanding += 1;
    }

    /// An echo completed at `at`; only the part of the gap after `from`
    /// counts (the warm-up's is not measured). Returns the gap it ended.
    pub(crate) fn completed(&mut self, at: Instant, from: Option<Instant>) -> Option<Duration> {
        let gap = self.close_gap(at, from);
        self.outstanding = self.outstanding.saturating_sub(1);
        self.quiet_since = (self.outstanding > 0).then_some(at);
        gap
    }

    /// The run (or the connection) ended at `at`: an echo still owed then
    /// has been owed since the last sign of life.
    pub(crate) fn finish(&mut self, at: Instant, from: Option<Instant>) {
        if self.outstanding > 0 {
            self.close_gap(at, from);
        }
        self.outstanding = 0;
        self.quiet_since = None;
    }

    fn close_gap(&mut self, at: Instant, from: Option<Instant>) -> Option<Duration> {
        let (Some(since), Some(from)) = (self.quiet_since, from) else {
            return None;
        };
        let since = since.max(from);
        let gap = at.saturating_duration_since(since);
        if self.longest.is_none_or(|(_, longest)| gap > longest) {
            self.longest = Some((since, gap));
        }
        Some(gap)
    }

    /// How long echoes have been owed with none completing, at `now` (none
    /// when nothing is owed): a stall still going on.
    pub(crate) fn ongoing(&self, now: Instant, from: Option<Instant>) -> Option<Duration> {
        if self.outstanding == 0 {
            return None;
        }
        let since = self.quiet_since?.max(from?);
        Some(now.saturating_duration_since(since))
    }

    /// The longest stall seen: when it began, and how long it lasted.
    pub(crate) fn longest(&self) -> Option<(Instant, Duration)> {
        self.longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_closed_loop_stall_is_its_slowest_round_trip() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut book = StallBook::default();
        for (send, back) in [(0, 1), (1, 2), (2, 302), (302, 303)] {
            book.sent(ms(send));
            book.completed(ms(back), Some(t0));
        }
        assert_eq!(book.longest(), Some((ms(2), Duration::from_millis(300))));
    }

    #[test]
    fn a_pipelined_stall_runs_from_the_last_completion_not_from_each_send() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut book = StallBook::default();
        for send in 0..10 {
            book.sent(ms(send * 10));
        }
        book.completed(ms(5), Some(t0));
        book.completed(ms(400), Some(t0));
        assert_eq!(book.longest(), Some((ms(5), Duration::from_millis(395))));
        // An echo still owed at the end counts up to the end.
        book.finish(ms(1_000), Some(t0));
        assert_eq!(book.longest(), Some((ms(400), Duration::from_millis(600))));
        // Nothing owed between two requests is no stall.
        let mut idle = StallBook::default();
        idle.sent(ms(0));
        idle.completed(ms(1), Some(t0));
        idle.sent(ms(900));
        idle.completed(ms(901), Some(t0));
        assert_eq!(idle.longest().map(|l| l.1), Some(Duration::from_millis(1)));
        // A stall still going on shows before it ends.
        let mut stuck = StallBook::default();
        stuck.sent(ms(100));
        assert_eq!(
            stuck.ongoing(ms(350), Some(t0)),
            Some(Duration::from_millis(250))
        );
        stuck.completed(ms(400), Some(t0));
        assert_eq!(stuck.ongoing(ms(500), Some(t0)), None);
        // Before measuring began does not count.
        let mut warm = StallBook::default();
        warm.sent(ms(0));
        warm.completed(ms(500), Some(ms(450)));
        assert_eq!(warm.longest(), Some((ms(450), Duration::from_millis(50))));
    }

    proptest! {
        /// Each connection sends its requests back to back (closed loop)
        /// with known round trips, the connections' events interleaved in
        /// any order: the worst connection's longest gap is the largest
        /// round trip anywhere, and so is the largest of the per-interval
        /// figures (the gaps each completion ends, kept per interval as the
        /// coordinator does), wherever the interval boundaries fall.
        #[test]
        fn the_longest_gap_comes_back_whatever_the_order(
            trips in proptest::collection::vec(proptest::collection::vec(1u64..1_000, 1..20), 1..6),
            order_seed in any::<u64>(),
            boundaries in proptest::collection::vec(0u64..20_000, 0..8),
        ) {
            let t0 = Instant::now();
            // Every connection's events, in its own order.
            let mut events: Vec<Vec<(Instant, bool)>> = trips
                .iter()
                .map(|rtts| {
                    let mut t = 0;
                    let mut evs = Vec::new();
                    for rtt in rtts {
                        evs.push((t0 + Duration::from_micros(t), true));
                        t += rtt;
                        evs.push((t0 + Duration::from_micros(t), false));
                    }
                    evs
                })
                .collect();
            let mut books = vec![StallBook::default(); trips.len()];
            // The per-interval maxima: an interval's is the longest gap
            // that ended in it.
            let mut boundaries = boundaries;
            boundaries.sort_unstable();
            let mut per_interval = vec![Duration::ZERO; boundaries.len() + 1];
            let mut seed = order_seed;
            // Interleave: each step takes the next event of a pseudo-random
            // connection that still has one.
            while events.iter().any(|e| !e.is_empty()) {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let live: Vec<usize> = (0..events.len()).filter(|i| !events[*i].is_empty()).collect();
                let c = live[(seed >> 33) as usize % live.len()];
                let (at, send) = events[c].remove(0);
                if send {
                    books[c].sent(at);
                } else {
                    let gap = books[c].completed(at, Some(t0)).unwrap();
                    let us = at.duration_since(t0).as_micros() as u64;
                    let slot = boundaries.partition_point(|b| *b <= us);
                    per_interval[slot] = per_interval[slot].max(gap);
                }
            }
            let worst = books.iter().filter_map(StallBook::longest).map(|l| l.1).max();
            let truth = trips.iter().flatten().max().map(|us| Duration::from_micros(*us));
            prop_assert_eq!(worst, truth);
            prop_assert_eq!(per_interval.iter().max().copied(), truth);
        }
    }
}
