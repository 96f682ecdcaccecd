//! `echo-client bench` end to end.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use common::*;

fn field(json: &str, name: &str) -> f64 {
    json.split(&format!("\"{name}\":"))
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {json}"))
}

#[test]
fn bench_counts_verified_requests_and_reports_json_and_hgrm() {
    let server = Server::start(&[]);
    let hgrm = std::env::temp_dir().join(format!("echo-bench-{}.hgrm", std::process::id()));
    let out = client(&[
        "bench",
        "--connect",
        &server.connect_arg(),
        "-c",
        "4",
        "-l",
        "100",
        "-r",
        "2000",
        "-w",
        "0",
        "--json",
        "--hgrm",
        hgrm.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let json = text(&out.stdout);
    assert_eq!(json.lines().count(), 1, "one JSON object: {json}");
    assert!(field(&json, "requests") >= 2000.0, "{json}");
    assert_eq!(field(&json, "errors"), 0.0);
    assert_eq!(field(&json, "connections"), 4.0);
    assert_eq!(field(&json, "len"), 100.0);
    assert!(field(&json, "requests_per_sec") > 0.0);
    assert!(
        field(&json, "p50") <= field(&json, "p99") && field(&json, "p99") <= field(&json, "max")
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
    let out = client(&[
        "bench",
        "--connect",
        &server.connect_arg(),
        "-c",
        "2",
        "-l",
        "64",
        "-d",
        "0.3",
        "-w",
        "0.1",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("2 connections x 64 B: "), "{stdout}");
    assert!(
        stdout.contains("errors 0") && stdout.contains("latency us: p50"),
        "{stdout}"
    );
    let out = client(&[
        "bench",
        "--connect",
        &server.connect_arg(),
        "--idle",
        "50",
        "--hold",
        "0.2",
    ]);
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
    let out = client(&[
        "bench",
        "--connect",
        &format!("tcp:127.0.0.1:{port}"),
        "-c",
        "1",
        "-l",
        "16",
        "-d",
        "1",
        "-w",
        "0",
        "--json",
    ]);
    handle.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(field(&text(&out.stdout), "errors"), 1.0);
    assert!(
        text(&out.stderr).contains("1 echoes failed verification or broke"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_threads_share_the_connections_and_count_every_request() {
    let server = Server::start(&[]);
    let out = client(&[
        "bench",
        "--connect",
        &server.connect_arg(),
        "-c",
        "5",
        "--threads",
        "3",
        "-r",
        "3000",
        "-w",
        "0",
        "--json",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let json = text(&out.stdout);
    assert!(field(&json, "requests") >= 3000.0, "{json}");
    assert_eq!(field(&json, "errors"), 0.0);
    // All 5 connections were opened (and ran) across the threads.
    server.wait_log("connection made", 5, std::time::Duration::from_secs(5));
    assert_eq!(server.log().matches("connection made").count(), 5);
}

#[test]
fn bench_reports_a_refused_connect_and_exits_1() {
    let port = free_port();
    let out = client(&[
        "bench",
        "--connect",
        &format!("tcp:127.0.0.1:{port}"),
        "-c",
        "3",
        "--threads",
        "2",
        "-d",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("connection refused"),
        "{}",
        text(&out.stderr)
    );
}
