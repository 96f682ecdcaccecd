//! `bench --hlog` and `echo-client merge`: the interval log is read back by
//! HdrHistogram's own Python implementation (`hdrh`, PyPI `hdrhistogram`,
//! installed into `.peers-venv/` by `.ci/run`), and merging two runs gives
//! their sum.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("echo-merge-{}-{name}", std::process::id()))
}

/// A Python that can import `hdrh`, if there is one (required in CI).
fn hdrh_python() -> Option<String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.peers-venv/bin/python");
    let found = [venv.display().to_string(), "python3".to_owned()]
        .into_iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import hdrh"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("ECHO_REQUIRE_PEERS").is_none(),
            "Python's hdrh is required here (.ci/run installs it)"
        );
        eprintln!("SKIPPED: Python's hdrh is not installed");
    }
    found
}

/// A top-level JSON number, the document parsed as JSON.
fn number(json: &str, key: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(json.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {json}"));
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {json}"))
}

#[test]
fn hlog_files_are_read_by_hdrhistogram_and_merge_into_their_sum() {
    let server = Server::start(&[]);
    let connect = server.connect_arg();
    let (a, b) = (temp("a.hlog"), temp("b.hlog"));
    let (mut requests, mut histogram_values) = (0, 0);
    for (path, extra) in [(&a, None), (&b, Some("800"))] {
        let mut args = vec![
            "bench",
            "--connect",
            &connect,
            "-c",
            "2",
            "-d",
            "0.5",
            "-w",
            "0",
            "--json",
        ];
        args.extend(["--hlog", path.to_str().unwrap()]);
        if let Some(rate) = extra {
            args.extend(["--rate", rate]);
        }
        let out = client(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let n = number(&text(&out.stdout), "requests");
        requests += n;
        // An open-loop run logs two histograms: corrected and raw.
        histogram_values += if extra.is_some() { 2 * n } else { n };
    }
    let svg = temp("merged.svg");
    let out = Command::new(CLIENT)
        .arg("merge")
        .args([&a, &b])
        .arg("--json")
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let merged = text(&out.stdout);
    assert_eq!(number(&merged, "requests"), requests, "{merged}");
    assert_eq!(number(&merged, "files"), 2);
    assert!(
        merged.contains("\"latency_raw_us\""),
        "the open-loop run's raw tag: {merged}"
    );
    if let Some(python) = hdrh_python() {
        let script = r#"
import sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
total = HdrHistogram(1, 60_000_000_000, 3)
reader = HistogramLogReader(sys.argv[1], total)
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    total.add(h)
print(total.get_total_count())
"#;
        let mut counted = 0;
        for path in [&a, &b] {
            let out = Command::new(&python)
                .args(["-c", script])
                .arg(path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            counted += text(&out.stdout).trim().parse::<u64>().unwrap();
        }
        assert_eq!(
            counted, histogram_values,
            "HdrHistogram's reader counts what we measured (it sums every tag)"
        );
    }
    let bad = temp("bad.hlog");
    std::fs::write(&bad, "#only a comment\n").unwrap();
    let out = Command::new(CLIENT)
        .arg("merge")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no histograms in it"),
        "{}",
        text(&out.stderr)
    );
    for f in [a, b, bad, svg] {
        let _ = std::fs::remove_file(f);
    }
}
