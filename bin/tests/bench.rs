//! `echo-client bench` end to end.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use common::*;

/// Runs `echo-client bench --connect CONNECT ARGS...`.
fn bench(connect: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["bench", "--connect", connect];
    all.extend_from_slice(args);
    client(&all)
}

/// A number in a JSON document, by its dotted path (`latency_us.p99`):
/// the document parsed as JSON, not split as a string.
fn field(json: &str, path: &str) -> f64 {
    let value: serde_json::Value = serde_json::from_str(json.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {json}"));
    path.split('.')
        .fold(&value, |v, key| &v[key])
        .as_f64()
        .unwrap_or_else(|| panic!("no number at {path} in {json}"))
}

#[test]
fn bench_counts_verified_requests_and_reports_json_and_hgrm() {
    let server = Server::start(&[]);
    let hgrm = std::env::temp_dir().join(format!("echo-bench-{}.hgrm", std::process::id()));
    let out = bench(
        &server.connect_arg(),
        &[
            "-c",
            "4",
            "-s",
            "100",
            "-r",
            "2000",
            "-w",
            "0",
            "--json",
            "--hgrm",
            hgrm.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let json = text(&out.stdout);
    assert_eq!(json.lines().count(), 1, "one JSON object: {json}");
    assert_eq!(field(&json, "requests"), 2000.0, "exactly -r: {json}");
    assert_eq!(field(&json, "errors"), 0.0);
    assert_eq!(field(&json, "connections"), 4.0);
    assert_eq!(field(&json, "len"), 100.0);
    assert!(field(&json, "requests_per_sec") > 0.0);
    assert!(
        field(&json, "latency_us.p50") <= field(&json, "latency_us.p99")
            && field(&json, "latency_us.p99") <= field(&json, "latency_us.max")
    );
    let h = std::fs::read_to_string(&hgrm).unwrap();
    let _ = std::fs::remove_file(&hgrm);
    assert!(
        h.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"),
        "{h}"
    );
    assert!(h.contains("#[Max     ="), "{h}");
    assert!(h.lines().count() > 10, "{h}");
}

#[test]
fn bench_text_output_and_idle_mode() {
    let server = Server::start(&[]);
    let out = bench(
        &server.connect_arg(),
        &["-c", "2", "-s", "64", "-d", "0.3", "-w", "0.1"],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("2 connections x 64 B: "), "{stdout}");
    assert!(
        stdout.contains("errors 0") && stdout.contains("latency us: p50"),
        "{stdout}"
    );
    let out = bench(&server.connect_arg(), &["--idle", "50", "--hold", "0.2"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "held 50 idle connections for 200ms"
    );
    server.wait_log("connection made", 52, std::time::Duration::from_secs(20));
}

#[test]
fn bench_counts_a_wrong_echo_as_an_error_and_exits_1() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 16];
        if s.read_exact(&mut buf).is_ok() {
            buf[9] ^= 0xff; // corrupt one byte
            let _ = s.write_all(&buf);
        }
        let _ = s.read(&mut buf);
    });
    let out = bench(
        &format!("tcp:127.0.0.1:{port}"),
        &["-c", "1", "-s", "16", "-d", "1", "-w", "0", "--json"],
    );
    handle.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(field(&text(&out.stdout), "errors"), 1.0);
    assert_eq!(field(&text(&out.stdout), "failures.mismatch"), 1.0);
    assert!(
        text(&out.stderr).contains("1 requests failed: 1 echo mismatch"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_threads_share_the_connections_and_count_every_request() {
    let server = Server::start(&[]);
    let out = bench(
        &server.connect_arg(),
        &[
            "-c",
            "5",
            "--threads",
            "3",
            "-r",
            "3000",
            "-w",
            "0",
            "--json",
        ],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let json = text(&out.stdout);
    assert_eq!(field(&json, "requests"), 3000.0, "exactly -r: {json}");
    assert_eq!(field(&json, "errors"), 0.0);
    // All 5 connections were opened (and ran) across the threads.
    server.wait_log("connection made", 5, std::time::Duration::from_secs(5));
    assert_eq!(server.log().matches("connection made").count(), 5);
}

#[test]
fn bench_reports_a_refused_connect_and_exits_1() {
    let port = free_port();
    let out = bench(
        &format!("tcp:127.0.0.1:{port}"),
        &["-c", "3", "--threads", "2", "-d", "1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("connection refused"),
        "{}",
        text(&out.stderr)
    );
}

/// A server that accepts and reads but never echoes.
fn silent_server() -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(8);
        while std::time::Instant::now() < until {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    (port, handle)
}

#[test]
fn bench_ends_at_its_duration_against_a_server_that_never_echoes() {
    let (port, _server) = silent_server();
    let started = std::time::Instant::now();
    let out = bench(
        &format!("tcp:127.0.0.1:{port}"),
        &["-c", "2", "-d", "1", "-w", "0", "--json"],
    );
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "ends at -d plus a bounded drain, took {took:?}"
    );
    assert_eq!(out.status.code(), Some(1));
    let json = text(&out.stdout);
    assert_eq!(field(&json, "requests"), 0.0);
    assert_eq!(field(&json, "failures.unfinished"), 2.0, "{json}");
    assert!(
        text(&out.stderr).contains("2 requests failed: 2 no echo by the end of the run"),
        "{}",
        text(&out.stderr)
    );
    // With a timeout shorter than the run, the stall is a timeout.
    let out = bench(
        &format!("tcp:127.0.0.1:{port}"),
        &[
            "-c",
            "1",
            "-d",
            "1",
            "-w",
            "0",
            "--timeout",
            "0.2",
            "--json",
        ],
    );
    assert_eq!(field(&text(&out.stdout), "failures.timed_out"), 1.0);
}

#[test]
fn bench_reads_while_it_writes_so_a_16_mib_message_cannot_deadlock() {
    let server = Server::start(&[]);
    let out = bench(
        &server.connect_arg(),
        &["-c", "2", "-s", "16777216", "-r", "4", "-w", "0", "--json"],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(field(&text(&out.stdout), "requests"), 4.0);
}

#[test]
fn bench_sizes_and_counts_out_of_range_are_usage_errors() {
    for args in [
        ["-s", "18446744073709551615"],
        ["-s", "4000000000000"],
        ["-s", "16777217"],
        ["-s", "0"],
        ["-r", "0"],
        ["-d", "0"],
        ["-c", "0"],
        ["--timeout", "0"],
    ] {
        let out = client(&["bench", "--connect", "tcp:127.0.0.1:9", args[0], args[1]]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains("panicked"));
    }
    // Each size alone is fine, together they ask for too much memory.
    let out = bench("tcp:127.0.0.1:9", &["-c", "100", "-s", "16777216"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("MiB of buffers"),
        "{}",
        text(&out.stderr)
    );
    // Options that --idle would ignore are refused.
    for flag in [
        ["-c", "3"],
        ["-d", "1"],
        ["-s", "10"],
        ["--threads", "2"],
        ["--json", ""],
    ] {
        let mut args = vec!["bench", "--idle", "1", flag[0]];
        if !flag[1].is_empty() {
            args.push(flag[1]);
        }
        let out = client(&args);
        assert_eq!(out.status.code(), Some(2), "{flag:?}");
    }
}

#[test]
fn bench_checks_its_output_path_before_the_run() {
    let server = Server::start(&[]);
    let started = std::time::Instant::now();
    let out = bench(
        &server.connect_arg(),
        &["-d", "3", "--hgrm", "/nonexistent-dir/lat.hgrm"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "no run first"
    );
    assert!(
        text(&out.stderr).contains("cannot write /nonexistent-dir/lat.hgrm"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn hgrm_total_count_is_cumulative_and_ends_at_the_total() {
    let server = Server::start(&[]);
    let hgrm = std::env::temp_dir().join(format!("echo-cumulative-{}.hgrm", std::process::id()));
    let out = bench(
        &server.connect_arg(),
        &["-r", "500", "-w", "0", "--hgrm", hgrm.to_str().unwrap()],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let h = std::fs::read_to_string(&hgrm).unwrap();
    let _ = std::fs::remove_file(&hgrm);
    let counts: Vec<u64> = h
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.contains("Value"))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{h}");
    assert_eq!(counts.last(), Some(&500), "{h}");
    assert!(h.contains("Total count    =          500"), "{h}");
}

#[test]
fn on_a_terminal_bench_shows_its_phase_time_and_counts() {
    if !have("script") {
        return;
    }
    let server = Server::start(&[]);
    let command = format!(
        "{CLIENT} bench --connect {} -c 2 -d 1 -w 0.3",
        server.connect_arg()
    );
    // `script` runs it on a pseudo-terminal, as a user's shell would.
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}");
    for phase in ["connecting", "warm-up", "measuring"] {
        assert!(
            screen.contains(phase),
            "no {phase:?} on the terminal: {screen:?}"
        );
    }
    assert!(screen.contains("/1s: "), "elapsed of total: {screen:?}");
    assert!(screen.contains(" requests, 0 errors"), "{screen:?}");
    // Without a terminal, nothing but the report.
    let plain = bench(&server.connect_arg(), &["-c", "2", "-d", "0.3", "-w", "0"]);
    assert!(!text(&plain.stderr).contains("measuring"));
}
