//! Live observers: what watches a run while it measures (the interval
//! lines, the series plot's points, `--abort-on-fail`), fed once per
//! interval (vegeta's `Observe`). The load generator knows only this trait.

use crate::model::Interval;

/// Whether the run goes on after an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep measuring.
    Continue,
    /// End the run now (it is then drained and reported as usual).
    Stop,
}

/// Watches a run, one interval at a time.
pub trait Observer {
    /// One interval ended.
    fn interval(&mut self, interval: &Interval) -> Flow;
}

impl<F: FnMut(&Interval) -> Flow> Observer for F {
    fn interval(&mut self, interval: &Interval) -> Flow {
        self(interval)
    }
}

/// Several observers as one; the run stops when any asks to.
pub struct All<'a>(pub Vec<&'a mut dyn Observer>);

impl std::fmt::Debug for All<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "All({} observers)", self.0.len())
    }
}

impl Observer for All<'_> {
    fn interval(&mut self, interval: &Interval) -> Flow {
        let mut flow = Flow::Continue;
        for observer in &mut self.0 {
            if observer.interval(interval) == Flow::Stop {
                flow = Flow::Stop;
            }
        }
        flow
    }
}

/// The interval lines (`--interval`): text, or one JSON object each.
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    /// JSON lines instead of text.
    pub json: bool,
}

impl Observer for Lines {
    fn interval(&mut self, interval: &Interval) -> Flow {
        let line = if self.json {
            crate::report::json::interval(interval).unwrap_or_default()
        } else {
            crate::report::text::interval(interval)
        };
        let _ = crate::say(line);
        Flow::Continue
    }
}

/// The series plot's points (`--plot-series`).
#[derive(Debug, Clone, Default)]
pub struct Series(pub Vec<crate::plot::SeriesPoint>);

impl Observer for Series {
    fn interval(&mut self, i: &Interval) -> Flow {
        self.0.push(crate::plot::SeriesPoint {
            seconds: i.elapsed.as_secs_f64(),
            requests_per_sec: i.requests_per_sec(),
            p99_us: i.p99_us,
            stall_us: i.stall_us,
        });
        Flow::Continue
    }
}
