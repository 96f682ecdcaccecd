//! "Sometimes" assertions: what the cases of a property reached, counted
//! over its whole default run. A property that never takes an arc of the
//! connection's state table, never sees an action, an end, a verdict, a
//! fault or a refusal it is meant to exercise proves nothing about it, so
//! its run fails naming what it missed; `SIM_COVERAGE=1` prints the table.
//!
//! The counts come from three places: the core's own trace events (target
//! [`echo_core::TABLE`]: every arc taken, every action handed out, every
//! end), the simulation's hosts (verdicts, faults applied, refusals), and
//! the simulated sockets' fault points ([`crate::io`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// How often each label was reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage(BTreeMap<String, u64>);

impl Coverage {
    /// Counts one more `label`.
    pub fn hit(&mut self, label: impl Into<String>) {
        *self.0.entry(label.into()).or_default() += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Self) {
        for (label, n) in &other.0 {
            *self.0.entry(label.clone()).or_default() += n;
        }
    }

    /// Every label reached counted once.
    #[must_use]
    pub fn once_each(mut self) -> Self {
        for n in self.0.values_mut() {
            *n = 1;
        }
        self
    }

    /// How often `label` was reached.
    #[must_use]
    pub fn count(&self, label: &str) -> u64 {
        self.0.get(label).copied().unwrap_or(0)
    }

    /// The labels in `required` reached 0 times.
    #[must_use]
    pub fn missing<'a>(&self, required: &[&'a str]) -> Vec<&'a str> {
        required
            .iter()
            .copied()
            .filter(|label| self.count(label) == 0)
            .collect()
    }

    /// One line per label: its count, and whether the property requires it.
    #[must_use]
    pub fn table(&self, required: &[&str]) -> String {
        let mut labels: Vec<&str> = self.0.keys().map(String::as_str).collect();
        labels.extend(required.iter().filter(|r| !self.0.contains_key(**r)));
        labels.sort_unstable();
        let mut out = String::new();
        for label in labels {
            let mark = if required.contains(&label) { "*" } else { " " };
            let _ = writeln!(out, "  {mark} {:>9}  {label}", self.count(label));
        }
        out
    }
}

/// Every arc of the connection's state table and every action a TCP run
/// of our server and client can reach (the ends: `end` and each of
/// [`echo_core::CloseReason::LABELS`]).
pub const TABLE: &[&str] = &[
    "arc Open -> Closing",
    "arc Open -> Closed",
    "arc Closing -> Closed",
    "action ShutdownWrite",
    "action Close",
    "action Abort",
];

/// The kind of a client's verdict, as a label: `verdict done`, `verdict
/// Mismatch`, `verdict gave up` (the harness stopped waiting for it)...
pub(crate) fn verdict(result: Option<&Result<echo_net::Summary, echo_net::ClientError>>) -> String {
    use echo_net::ClientError;
    let kind = match result {
        None => "gave up".to_owned(),
        Some(Ok(_)) => "done".to_owned(),
        Some(Err(ClientError::Echo(e))) => variant(e),
        Some(Err(e)) => variant(e),
    };
    format!("verdict {kind}")
}

/// The variant's name, from its `Debug` form.
pub(crate) fn variant(value: &dyn std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    let end = text.find([' ', '(', '{']).unwrap_or(text.len());
    text[..end].to_owned()
}

/// Counts the core's [`echo_core::TABLE`] trace events into a coverage.
pub(crate) struct TableLayer(pub(crate) Arc<Mutex<Coverage>>);

impl<S: tracing::Subscriber> Layer<S> for TableLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != echo_core::TABLE {
            return;
        }
        let mut labels = Labels(Vec::new());
        event.record(&mut labels);
        let mut coverage = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for label in labels.0 {
            coverage.hit(label);
        }
    }
}

/// `arc`, `reason` and `action` fields as labels.
struct Labels(Vec<String>);

impl Visit for Labels {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "arc" => self.0.push(format!("arc {value}")),
            "reason" => self.0.push(format!("end {value}")),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "action" {
            self.0.push(format!("action {value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Coverage;

    #[test]
    fn a_label_never_reached_is_missing_and_marked_in_the_table() {
        let mut coverage = Coverage::default();
        coverage.hit("a");
        coverage.hit("a");
        assert_eq!(coverage.missing(&["a", "b"]), vec!["b"]);
        let table = coverage.table(&["a", "b"]);
        assert!(table.contains("*         2  a"), "{table}");
        assert!(table.contains("*         0  b"), "{table}");
    }
}
