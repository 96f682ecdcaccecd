//! Many load hosts, one test: `bench --start-at --shard I/N` on several
//! processes at once, each taking its share of the connections and the
//! rate, all beginning at the same wall-clock instant; `merge` adds their
//! saved runs (or `.hlog` files) into the whole test, refuses runs of other
//! tests and says which shards are missing.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("echo-shards-{}-{name}", std::process::id()))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Unix seconds `ahead` from now, as `--start-at` takes them.
fn start_in(ahead: Duration) -> String {
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + ahead;
    format!("{:.3}", at.as_secs_f64())
}

/// Runs `shards` bench processes at once against `connect`, each saving
/// its run (and .hlog) under `name`; returns each one's JSON summary.
fn sharded(
    connect: &str,
    name: &str,
    shards: u32,
    extra: &[&str],
) -> Vec<(Value, PathBuf, PathBuf)> {
    let start = start_in(Duration::from_secs(2));
    let children: Vec<_> = (0..shards)
        .map(|i| {
            let (save, hlog) = (
                temp(&format!("{name}{i}.json")),
                temp(&format!("{name}{i}.hlog")),
            );
            let shard = format!("{i}/{shards}");
            let child = Command::new(CLIENT)
                .args([
                    "bench",
                    "--connect",
                    connect,
                    "--shard",
                    &shard,
                    "--start-at",
                    &start,
                ])
                .args([
                    "--json",
                    "--save",
                    save.to_str().unwrap(),
                    "--hlog",
                    hlog.to_str().unwrap(),
                ])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, save, hlog)
        })
        .collect();
    children
        .into_iter()
        .map(|(child, save, hlog)| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            (json(&out.stdout), save, hlog)
        })
        .collect()
}

#[test]
fn three_shards_at_a_third_of_the_rate_make_the_whole_rate_as_one_test() {
    let server = Server::start(&[]);
    let rate = 900.0;
    let runs = sharded(
        &server.connect_arg(),
        "rate",
        3,
        &["-c", "6", "--rate", "900", "-d", "3", "-w", "0.5s"],
    );
    let run_ids: Vec<&str> = runs
        .iter()
        .map(|(j, _, _)| j["run_id"].as_str().unwrap())
        .collect();
    assert!(
        run_ids
            .iter()
            .all(|id| *id == run_ids[0] && id.starts_with("start-")),
        "{run_ids:?}"
    );
    for (i, (summary, _, _)) in runs.iter().enumerate() {
        assert_eq!(summary["shard"], format!("{i}/3"), "{summary}");
        // A third of the connections and of the rate each.
        assert_eq!(summary["connections"], 2, "{summary}");
        assert_eq!(summary["rate"], 300.0, "{summary}");
        // Every host began at the instant asked for (the figure is
        // reported; the bound here is loose for a loaded CI machine).
        let skew = summary["start_skew_us"].as_f64().unwrap();
        assert!(
            skew.abs() < 100_000.0,
            "began {skew} us off --start-at: {summary}"
        );
    }
    let saved: Vec<&str> = runs.iter().map(|(_, s, _)| s.to_str().unwrap()).collect();
    let out = client(&[&["merge", "--json"][..], &saved].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let merged = json(&out.stdout);
    let requests: u64 = runs
        .iter()
        .map(|(j, _, _)| j["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(merged["requests"], requests, "{merged}");
    assert_eq!(merged["connections"], 6);
    assert_eq!(merged["run_id"], run_ids[0]);
    let rps = merged["requests_per_sec"].as_f64().unwrap();
    assert!(
        (rps - rate).abs() <= rate * 0.01,
        "the three shards' merged rate {rps} is not within 1 % of {rate}: {merged}"
    );
    // The .hlog files merge into the same percentiles: HDR addition is exact.
    let hlogs: Vec<&str> = runs.iter().map(|(_, _, h)| h.to_str().unwrap()).collect();
    let out = client(&[&["merge", "--json"][..], &hlogs].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let from_logs = json(&out.stdout);
    assert_eq!(from_logs["requests"], requests);
    assert_eq!(
        from_logs["latency_us"], merged["latency_us"],
        "{from_logs}\n{merged}"
    );
    for (_, s, h) in runs {
        let _ = std::fs::remove_file(s);
        let _ = std::fs::remove_file(h);
    }
}

#[test]
fn merge_refuses_runs_of_other_tests_and_says_which_shards_are_missing() {
    let server = Server::start(&[]);
    let connect = server.connect_arg();
    let short = ["-c", "3", "-d", "0.3", "-w", "0"];
    let ours = sharded(
        &connect,
        "ours",
        3,
        &[&short[..], &["--run-id", "ours"]].concat(),
    );
    let theirs = sharded(
        &connect,
        "theirs",
        2,
        &[&short[..], &["--run-id", "theirs"]].concat(),
    );
    let path = |runs: &[(Value, PathBuf, PathBuf)], i: usize, hlog: bool| {
        let (_, s, h) = &runs[i];
        if hlog {
            h.to_str().unwrap().to_owned()
        } else {
            s.to_str().unwrap().to_owned()
        }
    };
    for hlog in [false, true] {
        // Another test's run: refused, naming both.
        let out = client(&["merge", &path(&ours, 0, hlog), &path(&theirs, 1, hlog)]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("ours, theirs"),
            "{}",
            text(&out.stderr)
        );
        // A shard missing: the report, a warning naming it, exit 1...
        let out = client(&["merge", &path(&ours, 0, hlog), &path(&ours, 2, hlog)]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("requests"),
            "{}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains("shard 1 of 3 missing"),
            "{}",
            text(&out.stderr)
        );
        // ... unless it is allowed.
        let out = client(&[
            "merge",
            "--allow-missing",
            &path(&ours, 0, hlog),
            &path(&ours, 2, hlog),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // The same shard twice: refused.
        let out = client(&["merge", &path(&ours, 1, hlog), &path(&ours, 1, hlog)]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("both shard 1/3"),
            "{}",
            text(&out.stderr)
        );
    }
    // Told to, it merges different tests.
    let out = client(&[
        "merge",
        "--allow-mixed",
        "--allow-missing",
        &path(&ours, 0, false),
        &path(&theirs, 1, false),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for (_, s, h) in ours.into_iter().chain(theirs) {
        let _ = std::fs::remove_file(s);
        let _ = std::fs::remove_file(h);
    }
}

#[test]
fn an_indexed_job_gives_the_shard_through_job_completion_index() {
    let server = Server::start(&[]);
    let out = output_within(
        Command::new(CLIENT)
            .args([
                "bench",
                "--connect",
                &server.connect_arg(),
                "--shards",
                "4",
                "-c",
                "8",
            ])
            .args(["-d", "0.3", "-w", "0", "--json"])
            .env("JOB_COMPLETION_INDEX", "3"),
        EXIT_LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = json(&out.stdout);
    assert_eq!(summary["shard"], "3/4");
    assert_eq!(summary["connections"], 2);
}

#[test]
fn bad_shards_and_start_times_are_usage_errors() {
    let past = start_in(Duration::ZERO);
    let past = format!("{:.3}", past.parse::<f64>().unwrap() - 10.0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Unix milliseconds given for seconds: 55 years ahead.
    let millis = format!("{}", (now + 60) * 1000);
    assert_usage_errors(
        CLIENT,
        &[
            &["bench", "--shard", "3/2"],
            &["bench", "--shard", "0/0"],
            &["bench", "--shard", "1"],
            &["bench", "--shard", "0/2", "--shards", "2"],
            &["bench", "--shards", "3"],
            &["bench", "--start-at", "yesterday"],
            &["bench", "--start-at", &past],
            // More than a day ahead: milliseconds for seconds, and 2106.
            &["bench", "--start-at", &millis],
            &["bench", "--start-at", "4294967296"],
            // Beyond what a time can hold, or negative: no panic either.
            &["bench", "--start-at", "18446744073709551616"],
            &["bench", "--start-at", "1e300"],
            &["bench", "--start-at", "-5"],
            &["bench", "--start-at", "NaN"],
            &["bench", "-c", "2", "--shard", "2/3"],
        ],
    );
    let out = output_within(
        Command::new(CLIENT)
            .args(["bench", "--shards", "3"])
            .env("JOB_COMPLETION_INDEX", "3"),
        EXIT_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no shard 3 of 3"),
        "{}",
        text(&out.stderr)
    );
}
