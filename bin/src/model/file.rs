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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Failure, Failures, OpenLoop, new_histogram};
    use std::time::Duration;

    fn run(seed: u64) -> Run {
        let mut latency = new_histogram();
        let mut raw = new_histogram();
        for v in 1..=1_000 {
            latency.record(v * 1_000 + seed).unwrap();
            raw.record(v * 500 + seed).unwrap();
        }
        let mut failures = Failures::default();
        failures.0[Failure::Reset.index()] = seed;
        let mut connects = new_histogram();
        connects.record(80_000).unwrap();
        Run {
            requests: 1_000,
            elapsed: Duration::from_millis(1_500),
            failures,
            latency: latency.clone(),
            len: 64,
            connections: 2,
            open_loop: Some(OpenLoop {
                rate: 700.5,
                raw,
                late: 3,
                skipped: 1,
            }),
            connects,
            handshakes: new_histogram(),
            reconnects: 0,
            resumed: 0,
            backends: vec![Backend {
                name: "pod-a".into(),
                connections: 2,
                requests: 1_000,
                latency,
            }],
            tls_reason: Some("a \"quoted\"\nreason".into()),
            stall: Some(crate::model::Stall {
                connection: 1,
                began: Duration::from_millis(810),
                length: Duration::from_millis(300) + Duration::from_micros(seed),
            }),
            identity: crate::model::Identity {
                run_id: Some("nightly-42".into()),
                shard: Some(crate::model::Shard::new(1, 3).unwrap()),
                start_skew_us: Some(212.5),
            },
        }
    }

    #[test]
    fn a_saved_run_reads_back_with_the_same_figures_and_histograms() {
        let original = run(1);
        let mut bytes = Vec::new();
        save(&mut bytes, &original).unwrap();
        let back = load_run(&bytes).unwrap();
        assert_eq!(back.summary(), original.summary());
        assert_eq!(back.latency, original.latency);
        // And its summary reads back as compare reads it.
        assert_eq!(load_summary(&bytes).unwrap(), original.summary());
        assert_eq!(back.open_loop.unwrap().raw, original.open_loop.unwrap().raw);
    }

    #[test]
    fn a_summary_round_trips_through_json_and_keeps_its_field_names() {
        let summary = run(2).summary();
        let json = serde_json::to_string(&summary).unwrap();
        assert!(
            json.starts_with(r#"{"schema_version":1,"connections":2,"len":64,"requests":1000,"#),
            "{json}"
        );
        for key in [
            "\"rate\":700.5",
            "\"late\":3",
            "\"latency_raw_us\":{\"p50\":",
            "\"tls_reason\":\"a \\\"quoted\\\"\\nreason\"",
            "\"backends\":{\"pod-a\":{\"connections\":2",
            "\"stall\":{\"longest_us\":300002.0,\"connection\":1,\"at\":0.81}",
        ] {
            assert!(json.contains(key), "{key} in {json}");
        }
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), summary);
        // Output from before schema_version (version 0) still reads.
        let old = json.replacen("\"schema_version\":1,", "", 1);
        assert_eq!(load_summary(old.as_bytes()).unwrap().schema_version, 0);
        assert!(matches!(
            load_run(json.as_bytes()),
            Err(FileError::SummaryOnly)
        ));
    }

    #[test]
    fn merged_runs_keep_failures_connects_and_back_ends() {
        let mut total = run(1);
        total.merge(&run(2)).unwrap();
        assert_eq!(total.requests, 2_000);
        assert_eq!(total.failures.get(Failure::Reset), 3);
        assert_eq!(total.connects.len(), 2);
        assert_eq!(total.connections, 4);
        assert_eq!(total.backends.len(), 1);
        assert_eq!(total.backends[0].requests, 2_000);
        assert_eq!(total.latency.len(), 2_000);
        assert_eq!(
            total.stall.map(|s| s.length),
            Some(Duration::from_millis(300) + Duration::from_micros(2)),
            "the longer stall"
        );
        let mut closed = run(1);
        closed.open_loop = None;
        assert_eq!(
            total.merge(&closed).unwrap_err(),
            crate::model::MergeError::Loops
        );
    }
}
