//! `echo-client merge`: adds runs from several hosts into one summary and
//! one verdict. Runs saved whole (`bench --save`) add with
//! [`Run::merge`](crate::model::Run::merge), keeping failures, connects and
//! back ends; `.hlog` files (`bench --hlog`) carry latencies only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::bench::{print, verdict};
use super::usage_error;
use crate::hlog::{TAG_LATENCY, TAG_RAW};
use crate::model::{Percentiles, Run, SCHEMA_VERSION};
use crate::threshold::{Figure, Threshold, Verdict};
use crate::{EXIT_FAILURE, complain, say, switch};

/// `echo-client merge`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct MergeArgs {
    /// The runs: saved with bench --save (whole: failures, connects and back
    /// ends add up too) or .hlog files (latencies only)
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,

    /// Print one JSON object instead of text
    #[arg(value_parser = switch, env = "ECHO_MERGE_JSON", long)]
    pub(crate) json: bool,

    /// Also draw a percentile plot (SVG) with one line per file and one for
    /// the merged total
    #[arg(env = "ECHO_MERGE_PLOT", long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,

    /// Judge the merged run as bench --threshold does (repeatable): one
    /// verdict and one exit code for a many-host run
    #[arg(env = "ECHO_MERGE_THRESHOLD", long = "threshold", value_name = "EXPR", value_parser = crate::threshold::parse, value_delimiter = ',')]
    pub(crate) thresholds: Vec<Threshold>,

    /// Merge even when some shards of the test are missing (each run says
    /// its bench --shard I/N); without it a missing shard is a warning and
    /// exit 1 after the report
    #[arg(value_parser = switch, env = "ECHO_MERGE_ALLOW_MISSING", long)]
    pub(crate) allow_missing: bool,

    /// Merge runs of different tests (different bench --run-id) too
    #[arg(value_parser = switch, env = "ECHO_MERGE_ALLOW_MIXED", long)]
    pub(crate) allow_mixed: bool,
}

/// One test, or exit 2 saying why not; the shards missing from it, each
/// warned about (exit 1 after the report unless `--allow-missing`).
fn check_test(args: &MergeArgs, ids: &[crate::model::Identity]) -> Vec<u32> {
    let refs: Vec<&crate::model::Identity> = ids.iter().collect();
    match crate::model::missing_shards(&refs, args.allow_mixed) {
        Ok(missing) => {
            if !missing.is_empty() {
                let count = ids.iter().find_map(|i| i.shard).map_or(0, |s| s.count);
                let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
                complain(format!(
                    "echo-client: warning: shard{} {} of {count} missing: the merge is not the whole test{}",
                    if missing.len() > 1 { "s" } else { "" },
                    list.join(", "),
                    if args.allow_missing {
                        " (--allow-missing)"
                    } else {
                        ""
                    }
                ));
            }
            missing
        }
        Err(e) => usage_error(
            Some("merge"),
            clap::error::ErrorKind::ValueValidation,
            e.to_string(),
        ),
    }
}

/// The exit code once the report is out: the verdict's, or 1 for a test
/// with shards missing (unless allowed).
fn with_missing(args: &MergeArgs, missing: &[u32], code: ExitCode) -> ExitCode {
    if missing.is_empty() || args.allow_missing || code != ExitCode::SUCCESS {
        code
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// What `merge` failed on (exit 1).
type Failed = String;

/// Runs `echo-client merge`.
pub(super) fn run(args: &MergeArgs) -> ExitCode {
    let saved = args.files.iter().filter(|p| is_saved(p)).count();
    let result = if saved == args.files.len() {
        merge_runs(args)
    } else if saved == 0 {
        merge_hlogs(args)
    } else {
        usage_error(
            Some("merge"),
            clap::error::ErrorKind::ArgumentConflict,
            "give either saved runs (bench --save) or .hlog files, not both",
        )
    };
    result.unwrap_or_else(|e| {
        complain(format!("echo-client: {e}"));
        ExitCode::from(EXIT_FAILURE)
    })
}

/// Whether `path` holds a saved run (JSON) rather than an interval log:
/// by its first byte, so a file is read as what it is whatever its name.
fn is_saved(path: &Path) -> bool {
    use std::io::Read as _;
    let mut first = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut first))
        .unwrap_or(0);
    first[..n].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn read(path: &Path) -> Result<Vec<u8>, Failed> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn label(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Saved runs: [`Run::merge`], then the same report and verdict as bench.
fn merge_runs(args: &MergeArgs) -> Result<ExitCode, Failed> {
    let mut runs = Vec::new();
    for path in &args.files {
        let run = crate::model::file::load_run(&read(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        runs.push((path, run));
    }
    let ids: Vec<_> = runs.iter().map(|(_, r)| r.identity.clone()).collect();
    let missing = check_test(args, &ids);
    let mut total: Option<Run> = None;
    let mut series = Vec::new();
    for (path, run) in runs {
        if args.plot.is_some() {
            series.push(
                crate::plot::from_histogram(&label(path), &run.latency)
                    .map_err(|e| e.to_string())?,
            );
        }
        match &mut total {
            None => total = Some(run),
            Some(sum) => sum
                .merge(&run)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        }
    }
    let total = total.ok_or("no runs to merge")?;
    let mut summary = total.summary();
    let held = crate::threshold::judge_all(&args.thresholds, &mut summary);
    if !args.json && !say(format_args!("{} runs merged:", args.files.len())) {
        return Err("cannot write to standard output".into());
    }
    if !print(&summary, args.json) {
        return Err("cannot write to standard output".into());
    }
    draw(args, series, &total.latency)?;
    let code = verdict(&summary, !args.thresholds.is_empty(), held);
    Ok(with_missing(args, &missing, code))
}

/// What merging `.hlog` files gives: latencies only.
#[derive(Debug, Serialize)]
struct HlogMerge {
    schema_version: u32,
    files: usize,
    requests: u64,
    latency_us: Percentiles,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_raw_us: Option<Percentiles>,
    /// Files with raw latencies: only open-loop (--rate) runs record them.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_files: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    thresholds: Vec<Verdict>,
}

/// Whether an `.hlog` file carries what `figure` needs.
fn in_hlog(figure: Figure) -> bool {
    matches!(
        figure,
        Figure::Latency(_) | Figure::Raw(_) | Figure::Requests
    )
}

/// `.hlog` files: their histograms summed per tag.
fn merge_hlogs(args: &MergeArgs) -> Result<ExitCode, Failed> {
    if let Some(t) = args.thresholds.iter().find(|t| !in_hlog(t.figure)) {
        usage_error(
            Some("merge"),
            clap::error::ErrorKind::ValueValidation,
            format!(
                "--threshold {}: .hlog files carry latencies only (p50..max, raw_p50..raw_max, requests); for {} merge runs saved with bench --save",
                t.text, t.figure
            ),
        );
    }
    let mut files = Vec::new();
    for path in &args.files {
        files.push((path, read(path)?));
    }
    let ids: Vec<_> = files
        .iter()
        .map(|(_, b)| crate::hlog::identity(b))
        .collect();
    let missing = check_test(args, &ids);
    let mut total: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut series = Vec::new();
    let mut raw_files = 0;
    for (path, bytes) in &files {
        let logs = crate::hlog::read(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        raw_files += usize::from(logs.contains_key(TAG_RAW));
        for (tag, h) in logs {
            if tag == TAG_LATENCY && args.plot.is_some() {
                series.push(
                    crate::plot::from_histogram(&label(path), &h).map_err(|e| e.to_string())?,
                );
            }
            match total.get_mut(&tag) {
                Some(sum) => sum.add(&h).map_err(|e| format!("cannot merge: {e:?}"))?,
                None => {
                    total.insert(tag, h);
                }
            }
        }
    }
    let latency = total
        .get(TAG_LATENCY)
        .ok_or("no latency histograms in these files")?;
    let raw = total.get(TAG_RAW);
    // The thresholds read a run made of what the logs hold.
    let run = Run::of_latencies(latency.clone(), raw.cloned());
    let mut judged = run.summary();
    let held = crate::threshold::judge_all(&args.thresholds, &mut judged);
    let merged = HlogMerge {
        schema_version: SCHEMA_VERSION,
        files: args.files.len(),
        requests: latency.len(),
        latency_us: Percentiles::of(latency),
        latency_raw_us: raw.map(Percentiles::of),
        raw_files: raw.map(|_| raw_files),
        thresholds: judged.thresholds.clone(),
    };
    let out = if args.json {
        serde_json::to_string(&merged).map_err(|e| e.to_string())?
    } else {
        let mut text = format!(
            "{} files: {} requests\nlatency us: {}",
            merged.files,
            merged.requests,
            crate::report::text::percentiles(&merged.latency_us)
        );
        if let Some(raw) = &merged.latency_raw_us {
            text.push_str(&format!(
                "\nlatency us (raw, from the actual send; in the {raw_files} of {} files from --rate runs): {}",
                merged.files,
                crate::report::text::percentiles(raw)
            ));
        }
        if !merged.thresholds.is_empty() {
            text.push('\n');
            text.push_str(&crate::report::text::thresholds(&merged.thresholds));
        }
        text
    };
    if !say(out) {
        return Err("cannot write to standard output".into());
    }
    draw(args, series, latency)?;
    let code = verdict(&judged, !args.thresholds.is_empty(), held);
    Ok(with_missing(args, &missing, code))
}

/// `--plot`: one line per file and one for the merged total.
fn draw(
    args: &MergeArgs,
    mut series: Vec<crate::plot::Series>,
    merged: &Histogram<u64>,
) -> Result<(), Failed> {
    let Some(path) = &args.plot else {
        return Ok(());
    };
    series.push(crate::plot::from_histogram("merged", merged).map_err(|e| e.to_string())?);
    let title = format!(
        "{} merged runs ({})",
        args.files.len(),
        crate::plot::today()
    );
    let svg = crate::plot::percentile_plot(&title, &series).map_err(|e| e.to_string())?;
    std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
