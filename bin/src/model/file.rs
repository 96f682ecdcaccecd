//! Runs on disk: `bench --save` writes a whole [`Run`] (its summary for
//! people and tools, its histograms for `merge`); `compare` and `merge`
//! read them back, and `compare` also reads a `--json` summary. A file
//! from a newer build (a larger `schema_version`) is refused, not guessed
//! at.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::run::Run;
use super::summary::{SCHEMA_VERSION, Summary};

/// A saved run.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    schema_version: u32,
    /// Its figures, as `--json` prints them.
    summary: Summary,
    /// Everything, histograms included.
    run: Run,
}

/// Why a file is not a run this build can read.
#[derive(Debug)]
pub enum FileError {
    /// Not JSON at all.
    NotJson(String),
    /// Written by a newer build.
    Newer {
        /// Its `schema_version`.
        version: u64,
    },
    /// JSON, but not a bench summary or saved run.
    Foreign(String),
    /// A `--json` summary where a whole run (with histograms) is needed.
    SummaryOnly,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson(e) => write!(f, "not JSON ({e})"),
            Self::Newer { version } => write!(
                f,
                "schema_version {version} is newer than this echo-client reads ({SCHEMA_VERSION}); use a newer echo-client"
            ),
            Self::Foreign(e) => write!(
                f,
                "not an echo-client bench result (bench --json or --save): {e}"
            ),
            Self::SummaryOnly => f.write_str(
                "a --json summary has no histograms to add; save runs with bench --save FILE",
            ),
        }
    }
}

impl std::error::Error for FileError {}

/// Writes `run` whole, as one JSON document.
///
/// # Errors
/// The writer's.
pub fn save(out: &mut impl std::io::Write, run: &Run) -> serde_json::Result<()> {
    let saved = Saved {
        schema_version: SCHEMA_VERSION,
        summary: run.summary(),
        run: run.clone(),
    };
    serde_json::to_writer(&mut *out, &saved)?;
    out.write_all(b"\n").map_err(serde_json::Error::io)
}

/// The JSON value of `bytes`, its version checked.
fn versioned(bytes: &[u8]) -> Result<serde_json::Value, FileError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| FileError::NotJson(e.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(FileError::Foreign("not a JSON object".into()));
    };
    match object.get("schema_version").map(serde_json::Value::as_u64) {
        None => {}
        Some(Some(version)) if version <= u64::from(SCHEMA_VERSION) => {}
        Some(Some(version)) => return Err(FileError::Newer { version }),
        Some(None) => return Err(FileError::Foreign("schema_version is not a number".into())),
    }
    Ok(value)
}

/// A whole run saved by `bench --save`.
///
/// # Errors
/// [`FileError`] saying what the file is instead.
pub fn load_run(bytes: &[u8]) -> Result<Run, FileError> {
    let mut value = versioned(bytes)?;
    match value.get_mut("run").map(serde_json::Value::take) {
        Some(run) => serde_json::from_value(run).map_err(|e| FileError::Foreign(e.to_string())),
        None if serde_json::from_value::<Summary>(value).is_ok() => Err(FileError::SummaryOnly),
        None => Err(FileError::Foreign("no \"run\" in it".into())),
    }
}

/// The figures of a `--json` summary or a saved run.
///
/// # Errors
/// [`FileError`] saying what the file is instead.
pub fn load_summary(bytes: &[u8]) -> Result<Summary, FileError> {
    let mut value = versioned(bytes)?;
    if let Some(summary) = value.get_mut("summary").map(serde_json::Value::take) {
        value = summary;
    }
    serde_json::from_value(value).map_err(|e| FileError::Foreign(e.to_string()))
}
