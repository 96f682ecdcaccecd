//! `--json`: one object per line, by serde (never written by hand).

use crate::model::{Interval, Summary};

/// The summary as one line of JSON.
///
/// # Errors
/// serde_json's, which a summary of plain numbers and strings cannot
/// cause; kept so no output path panics.
pub fn summary(summary: &Summary) -> Result<String, serde_json::Error> {
    serde_json::to_string(summary)
}

/// An interval as one line of JSON.
///
/// # Errors
/// As [`summary`].
pub fn interval(interval: &Interval) -> Result<String, serde_json::Error> {
    serde_json::to_string(&interval.summary())
}
