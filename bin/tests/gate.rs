//! `bench` as a CI gate: `--json` is JSON (parsed here, never split as a
//! string), `--threshold` judges a run (exit 99 when breached), `compare`
//! judges a run against a baseline, and saved runs merge whole.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use echo_bin::model::Summary;
use serde_json::Value;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("echo-gate-{}-{name}", std::process::id()))
}

/// Runs `echo-client bench --connect CONNECT ARGS...`.
fn bench(connect: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["bench", "--connect", connect];
    all.extend_from_slice(args);
    client(&all)
}

/// The one JSON object of `out`'s standard output.
fn json(out: &std::process::Output) -> Value {
    let stdout = text(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

#[test]
fn bench_json_is_one_object_with_a_schema_version_that_reads_back_as_a_summary() {
    let server = Server::start(&[]);
    let out = bench(
        &server.connect_arg(),
        &["-c", "2", "-r", "300", "-w", "0", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value = json(&out);
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["requests"], 300);
    assert_eq!(value["errors"], 0);
    assert_eq!(value["failures"]["mismatch"], 0);
    let latency = &value["latency_us"];
    assert!(latency["p50"].as_f64() <= latency["p99"].as_f64());
    assert!(value.get("thresholds").is_none(), "none asked for");
    let summary: Summary = serde_json::from_value(value).unwrap();
    assert_eq!(summary.connections, 2);
    assert!(summary.open_loop.is_none());
}

#[test]
fn thresholds_that_hold_print_a_checked_block_and_exit_0() {
    let server = Server::start(&[]);
    let out = bench(
        &server.connect_arg(),
        &[
            "-c",
            "2",
            "-r",
            "300",
            "-w",
            "0",
            "--threshold",
            "p99<5s",
            "--threshold",
            "errors==0",
            "--threshold",
            "error_rate<1%",
            "--threshold",
            "rps>=1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let block = stdout
        .split("THRESHOLDS\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    let lines: Vec<&str> = block.lines().collect();
    assert_eq!(lines.len(), 4, "{block}");
    assert!(
        lines.iter().all(|l| l.trim_start().starts_with('✓')),
        "{block}"
    );
    assert!(
        lines[0].contains("p99<5s") && lines[0].contains("p99 = "),
        "{block}"
    );
    assert!(lines[1].contains("errors = 0"), "{block}");
    assert!(lines[2].contains("error_rate = 0.00%"), "{block}");
}

#[test]
fn a_threshold_breached_by_a_slow_server_exits_99_and_says_which() {
    let server = Server::start(&["--delay", "50ms"]);
    let out = bench(
        &server.connect_arg(),
        &[
            "-c",
            "1",
            "-d",
            "0.5",
            "-w",
            "0",
            "--json",
            "--threshold",
            "p50<10ms",
            "--threshold",
            "errors==0",
        ],
    );
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    let value = json(&out);
    let verdicts = value["thresholds"].as_array().unwrap();
    assert_eq!(verdicts[0]["threshold"], "p50<10ms");
    assert_eq!(verdicts[0]["held"], false);
    assert!(
        verdicts[0]["measured"].as_f64().unwrap() >= 50_000.0,
        "{value}"
    );
    assert_eq!(verdicts[1]["held"], true);
    assert!(
        text(&out.stderr).contains("thresholds breached: p50<10ms"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_bad_threshold_is_a_usage_error_naming_the_bad_part_and_the_figures() {
    for (expr, named) in [
        ("p98<5ms", "\"p98\""),
        ("p99<5", "\"5\""),
        ("errors", "FIGURE OP VALUE"),
        ("error_rate<200%", "\"200%\""),
    ] {
        let out = client(&["bench", "--connect", "tcp:127.0.0.1:9", "--threshold", expr]);
        assert_eq!(out.status.code(), Some(2), "{expr}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(named), "{expr}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
    let out = client(&[
        "bench",
        "--connect",
        "tcp:127.0.0.1:9",
        "--threshold",
        "p98<5ms",
    ]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("p99.9") && stderr.contains("connect_p99"),
        "{stderr}"
    );
}

/// Saves `bench --json`'s output against `connect` into `path`.
fn save_json(connect: &str, path: &PathBuf, extra: &[&str]) {
    let mut args = vec!["-c", "1", "-d", "0.5", "-w", "0", "--json"];
    args.extend_from_slice(extra);
    let out = bench(connect, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(path, &out.stdout).unwrap();
}

#[test]
fn compare_says_a_run_against_a_slowed_server_is_worse_and_exits_99() {
    let fast = Server::start(&[]);
    let slow = Server::start(&["--delay", "20ms"]);
    let (base, new) = (temp("base.json"), temp("new.json"));
    save_json(&fast.connect_arg(), &base, &[]);
    save_json(&slow.connect_arg(), &new, &[]);
    let out = client(&["compare", base.to_str().unwrap(), new.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let row = |figure: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(figure))
            .unwrap_or_else(|| panic!("no {figure} row: {table}"))
            .to_owned()
    };
    assert!(row("p50").contains("✗ worse"), "{table}");
    assert!(row("rps").contains("✗ worse"), "{table}");
    assert!(row("errors").contains("= same"), "{table}");
    assert!(
        text(&out.stderr).contains("worse than BASE"),
        "{}",
        text(&out.stderr)
    );
    // The other way round NEW is better (a single connect's time and the
    // tail of a short run on a busy machine are noise: forgiven), and a run
    // is the same as itself.
    let out = client(&[
        "compare",
        new.to_str().unwrap(),
        base.to_str().unwrap(),
        "--tolerance",
        "connect_p99=100000%,max=100000%,p99.9=100000%,stall=100000%",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("✓ better"));
    let out = client(&[
        "compare",
        base.to_str().unwrap(),
        base.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let value = json(&out);
    assert_eq!(value["worse"], false);
    assert!(
        value["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["verdict"] == "same")
    );
    // A wide enough margin forgives the slowed server its latency, not its rps.
    let out = client(&[
        "compare",
        base.to_str().unwrap(),
        new.to_str().unwrap(),
        "--tolerance",
        "100000%",
        "--tolerance",
        "rps=5%",
    ]);
    assert_eq!(out.status.code(), Some(99));
    assert!(
        text(&out.stderr).ends_with("beyond the tolerance: rps\n"),
        "{}",
        text(&out.stderr)
    );
    for f in [base, new] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn compare_refuses_runs_it_cannot_compare_and_files_it_cannot_read() {
    let server = Server::start(&[]);
    let (closed, open) = (temp("closed.json"), temp("open.json"));
    save_json(&server.connect_arg(), &closed, &[]);
    save_json(&server.connect_arg(), &open, &["--rate", "200"]);
    let out = client(&["compare", closed.to_str().unwrap(), open.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("NEW is an open-loop run") && stderr.contains("p99.9"),
        "{stderr}"
    );
    let newer = temp("newer.json");
    let mut value: Value = serde_json::from_slice(&std::fs::read(&closed).unwrap()).unwrap();
    value["schema_version"] = Value::from(2);
    std::fs::write(&newer, serde_json::to_vec(&value).unwrap()).unwrap();
    let foreign = temp("foreign.json");
    std::fs::write(&foreign, r#"{"name":"not a bench result"}"#).unwrap();
    let garbage = temp("garbage.json");
    std::fs::write(&garbage, "p99 was fine").unwrap();
    for (file, said) in [
        (&newer, "schema_version 2 is newer"),
        (&foreign, "not an echo-client bench result"),
        (&garbage, "not JSON"),
        (&temp("missing.json"), "cannot read"),
    ] {
        let out = client(&["compare", closed.to_str().unwrap(), file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(text(&out.stderr).contains(said), "{}", text(&out.stderr));
    }
    let out = client(&[
        "compare",
        closed.to_str().unwrap(),
        closed.to_str().unwrap(),
        "--tolerance",
        "p98=5%",
    ]);
    assert_eq!(out.status.code(), Some(2));
    for f in [closed, open, newer, foreign, garbage] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn saved_runs_merge_whole_and_merge_judges_thresholds() {
    let server = Server::start(&[]);
    let connect = server.connect_arg();
    let (a, b) = (temp("a.run.json"), temp("b.run.json"));
    let mut requests = 0;
    for path in [&a, &b] {
        let out = bench(
            &connect,
            &[
                "-c",
                "2",
                "-r",
                "200",
                "-w",
                "0",
                "--json",
                "--save",
                path.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        requests += json(&out)["requests"].as_u64().unwrap();
    }
    let out = client(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
        "--threshold",
        "errors==0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let merged = json(&out);
    assert_eq!(merged["requests"].as_u64(), Some(requests));
    assert_eq!(merged["connections"], 4, "connections add up");
    assert_eq!(merged["connects"], 4, "connects are kept");
    assert_eq!(merged["failures"]["timed_out"], 0, "failures are kept");
    assert_eq!(merged["thresholds"][0]["held"], true);
    let out = client(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--threshold",
        "p50<1ns",
    ]);
    assert_eq!(out.status.code(), Some(99));
    assert!(
        text(&out.stdout).starts_with("2 runs merged:\n"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("✗ p50<1ns"),
        "{}",
        text(&out.stdout)
    );
    // A .hlog file carries no failures: a threshold on them is refused.
    let hlog = temp("c.hlog");
    let out = bench(
        &connect,
        &["-r", "100", "-w", "0", "--hlog", hlog.to_str().unwrap()],
    );
    assert!(out.status.success());
    let out = client(&["merge", hlog.to_str().unwrap(), "--threshold", "errors==0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("latencies only"),
        "{}",
        text(&out.stderr)
    );
    let out = client(&["merge", hlog.to_str().unwrap(), "--threshold", "p99<10s"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("✓ p99<10s"));
    // Saved runs and .hlog files do not add up in one merge.
    let out = client(&["merge", a.to_str().unwrap(), hlog.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not both"),
        "{}",
        text(&out.stderr)
    );
    for f in [a, b, hlog] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn abort_on_fail_stops_the_run_at_the_first_breach() {
    let server = Server::start(&["--delay", "50ms"]);
    let started = std::time::Instant::now();
    let out = bench(
        &server.connect_arg(),
        &[
            "-c",
            "1",
            "-d",
            "10",
            "-w",
            "0",
            "--interval",
            "0.2",
            "--threshold",
            "p50<10ms",
            "--abort-on-fail",
        ],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    assert!(
        took < std::time::Duration::from_secs(4),
        "stopped early: {took:?}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--abort-on-fail: p50<10ms breached"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains("✗ p50<10ms"),
        "{}",
        text(&out.stdout)
    );
    // Without thresholds it means nothing: a usage error.
    let out = client(&["bench", "--connect", "tcp:127.0.0.1:9", "--abort-on-fail"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn interval_lines_count_the_connections_cut_in_each() {
    let server = Server::start(&["--reset-after", "6400"]);
    let out = bench(
        &server.connect_arg(),
        &[
            "-c",
            "3",
            "-d",
            "1",
            "-w",
            "0",
            "--interval",
            "0.25",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let objects: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (intervals, summary) = objects.split_at(objects.len() - 1);
    let cut: u64 = intervals.iter().map(|i| i["cut"].as_u64().unwrap()).sum();
    let failures = &summary[0]["failures"];
    let ended = failures["reset"].as_u64().unwrap() + failures["closed"].as_u64().unwrap();
    assert_eq!(ended, 3, "{stdout}");
    assert_eq!(cut, 3, "each reset counted in its interval: {stdout}");
    assert!(intervals.iter().all(|i| i["refused"] == 0));
}

#[test]
fn thresholds_come_from_the_environment_as_a_comma_separated_list() {
    let server = Server::start(&[]);
    let out = Command::new(CLIENT)
        .args([
            "bench",
            "--connect",
            &server.connect_arg(),
            "-r",
            "100",
            "-w",
            "0",
        ])
        .env("ECHO_BENCH_THRESHOLD", "p99<5s,errors==0,p50<1ns")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("✓ p99<5s")
            && stdout.contains("✓ errors==0")
            && stdout.contains("✗ p50<1ns"),
        "{stdout}"
    );
}
