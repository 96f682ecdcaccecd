//! The progress line on a terminal.

use super::*;

/// The progress line on a terminal (phase, time, requests so far); nothing
/// anywhere else.
pub(super) struct Progress(pub(super) indicatif::ProgressBar);

impl Progress {
    pub(super) fn new(_config: &BenchConfig) -> Self {
        let bar = indicatif::ProgressBar::new_spinner();
        if !std::io::stderr().is_terminal() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        Self(bar)
    }

    pub(super) fn show(&self, line: std::fmt::Arguments<'_>) {
        if !self.0.is_hidden() {
            self.0.set_message(line.to_string());
            self.0.tick();
        }
    }

    pub(super) fn clear(&self) {
        self.0.finish_and_clear();
    }
}
