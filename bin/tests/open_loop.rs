//! `bench --rate`: open-loop load on a fixed schedule. Against a server
//! that stalls 200 ms once (a small asyncio server, so the stall is the
//! server's, not ours), the corrected p99 shows the stall while closed-loop
//! ping-pong hides it: the point of correcting for coordinated omission.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;

const STALLING_SERVER: &str = r#"
import asyncio, time
stalled, start = False, None
async def handle(r, w):
    global stalled, start
    while True:
        data = await r.read(65536)
        if not data:
            break
        if start is None:
            start = time.monotonic()
        if not stalled and time.monotonic() - start > 0.8:
            stalled = True
            time.sleep(0.2)  # the whole server stalls once, for 200 ms
        w.write(data)
        await w.drain()
    w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"#;

struct Python(Child, u16);

impl Python {
    fn start(script: &str) -> Self {
        let mut child = Starting::new(
            Command::new("python3")
                .args(["-c", script])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        BufReader::new(child.child().stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap();
        Self(child.take(), port)
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
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

fn bench(port: u16, extra: &[&str]) -> String {
    let connect = format!("tcp:127.0.0.1:{port}");
    let mut args = vec![
        "bench",
        "--connect",
        &connect,
        "-c",
        "10",
        "-d",
        "2",
        "-w",
        "0",
        "--json",
    ];
    args.extend(extra);
    let out = client(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn the_corrected_p99_shows_a_stall_that_closed_loop_hides() {
    if !have("python3") {
        return;
    }
    let open = bench(Python::start(STALLING_SERVER).1, &["--rate", "1000"]);
    let closed = bench(Python::start(STALLING_SERVER).1, &[]);
    let corrected_p99 = field(&open, "latency_us.p99");
    assert!(
        corrected_p99 >= 100_000.0,
        "open loop, corrected p99 {corrected_p99} us: {open}"
    );
    assert!(
        (1_800.0..=2_100.0).contains(&field(&open, "requests")),
        "{open}"
    );
    assert_eq!(field(&open, "rate"), 1000.0);
    assert!(field(&open, "latency_raw_us.p99") > 0.0);
    let closed_p99 = field(&closed, "latency_us.p99");
    assert!(
        closed_p99 < 100_000.0,
        "closed loop p99 {closed_p99} us hides the stall: {closed}"
    );
    assert!(!closed.contains("\"rate\""), "closed loop has no rate");
}

#[test]
fn a_server_that_falls_behind_gets_sends_skipped_and_said_so() {
    // A server that reads and never answers: every connection reaches
    // --max-in-flight and skips the rest of its schedule.
    let silent = r#"
import socket, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(100)
print(s.getsockname()[1], flush=True)
def drain(c):
    while c.recv(65536):
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
"#;
    if !have("python3") {
        return;
    }
    let server = Python::start(silent);
    let connect = format!("tcp:127.0.0.1:{}", server.1);
    let out = client(&[
        "bench",
        "--connect",
        &connect,
        "-c",
        "2",
        "-d",
        "1",
        "-w",
        "0",
        "--rate",
        "200",
        "--max-in-flight",
        "5",
        "--timeout",
        "0.5",
    ]);
    assert_eq!(out.status.code(), Some(1), "no echo: the run fails");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("sends skipped at --max-in-flight: the server cannot keep up"),
        "{stdout}"
    );
}

#[test]
fn bad_rate_flags_are_usage_errors() {
    assert_usage_errors(
        CLIENT,
        &[
            &["bench", "--rate", "0"][..],
            &["bench", "--rate", "fast"],
            &["bench", "--rate", "inf"],
            &["bench", "--max-in-flight", "5"],
            &["bench", "--rate", "10", "--max-in-flight", "0"],
            &["bench", "--rate", "10", "-r", "100"],
        ],
    );
}

#[test]
fn interval_lines_follow_the_run() {
    let server = Server::start(&[]);
    let connect = server.connect_arg();
    let out = client(&[
        "bench",
        "--connect",
        &connect,
        "-c",
        "2",
        "-d",
        "2",
        "-w",
        "0",
        "--interval",
        "0.5",
        "--json",
        "--rate",
        "400",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let intervals: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("\"interval\":true"))
        .collect();
    assert!((3..=4).contains(&intervals.len()), "{stdout}");
    for line in &intervals {
        let rate = field(line, "requests_per_sec");
        assert!(
            (350.0..=450.0).contains(&rate),
            "each interval holds the rate: {line}"
        );
        assert_eq!(field(line, "connections"), 2.0);
    }
    let summary = lines.last().unwrap();
    assert!(
        !summary.contains("\"interval\""),
        "the summary comes last: {summary}"
    );
    assert!(
        (790.0..=810.0).contains(&field(summary, "requests")),
        "{summary}"
    );
    let out = client(&[
        "bench",
        "--connect",
        &connect,
        "-c",
        "1",
        "-d",
        "1.2",
        "-w",
        "0",
        "--interval",
        "0.5",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(" req/s  errors 0  conns 1  p50 "))
            .count(),
        3,
        "two whole intervals and the last 0.2 s: {stdout}"
    );
}

#[test]
fn churn_opens_a_connection_per_message_and_times_each_connect() {
    let server = Server::start(&[]);
    let connect = server.connect_arg();
    let out = client(&[
        "bench",
        "--connect",
        &connect,
        "-c",
        "2",
        "-d",
        "1",
        "-w",
        "0",
        "--reconnect-every",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = text(&out.stdout);
    let (requests, connects) = (field(&json, "requests"), field(&json, "connects"));
    assert!(requests > 100.0, "{json}");
    // Every connect is counted, the warm-up's and the drain's too.
    assert!(
        (connects - requests).abs() <= 10.0 + requests / 50.0,
        "a connect per request: {json}"
    );
    assert!(field(&json, "connect_us.p50") > 0.0);
    // Paced ramp-up: 10 connections at 20 per second take about half a second.
    let started = std::time::Instant::now();
    let out = client(&[
        "bench",
        "--connect",
        &connect,
        "-c",
        "10",
        "-d",
        "0.3",
        "-w",
        "0",
        "--connect-rate",
        "20",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(750),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(field(&text(&out.stdout), "connects"), 10.0);
    assert_usage_errors(
        CLIENT,
        &[
            &["bench", "--reconnect-every", "0"][..],
            &["bench", "--connect-rate", "0"],
            &["bench", "--reconnect-every", "5", "--rate", "100"],
        ],
    );
}

#[test]
fn a_reset_is_counted_as_a_reset_not_as_broken() {
    let server = Server::start(&["--reset-after", "100"]);
    let connect = server.connect_arg();
    let out = client(&[
        "bench",
        "--connect",
        &connect,
        "-c",
        "2",
        "-s",
        "1000",
        "-d",
        "1",
        "-w",
        "0",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json = text(&out.stdout);
    assert_eq!(field(&json, "failures.reset"), 2.0, "{json}");
    assert_eq!(field(&json, "failures.broken"), 0.0, "{json}");
}
