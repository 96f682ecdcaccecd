//! The longest stall: a server that stops answering for 300 ms once (a
//! small asyncio server whose whole loop sleeps, so the stall is the
//! server's) shows as a longest stall of 300 ms +- 10 %, on a connection
//! and at a time, in text, JSON, the interval lines and a threshold.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

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
        if not stalled and time.monotonic() - start > 0.5:
            stalled = True
            time.sleep(0.3)  # the whole server stalls once, for 300 ms
        w.write(data)
        await w.drain()
    w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    print("PORT", srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"#;

fn stalling_server() -> Option<(Peer, u16)> {
    if !have("python3") {
        return None;
    }
    let mut command = Command::new("python3");
    command.args(["-c", STALLING_SERVER]);
    Some(announced(command))
}

#[test]
fn a_300_ms_stall_shows_as_the_longest_stall_with_its_connection_and_time() {
    stall_of_300_ms(&[]);
}

#[test]
fn a_300_ms_stall_shows_in_an_open_loop_too_from_the_last_echo_to_the_next() {
    stall_of_300_ms(&["--rate", "200"]);
}

fn stall_of_300_ms(extra: &[&str]) {
    let Some((_server, port)) = stalling_server() else {
        return;
    };
    let connect = format!("tcp:127.0.0.1:{port}");
    let mut args = vec![
        "bench",
        "--connect",
        &connect,
        "-c",
        "2",
        "-d",
        "1.2",
        "-w",
        "0",
        "--json",
        "--interval",
        "0.4",
        "--threshold",
        "stall<100ms",
    ];
    args.extend_from_slice(extra);
    let out = client(&args);
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = lines.last().unwrap();
    let stall = &summary["stall"];
    let longest = stall["longest_us"].as_f64().unwrap();
    assert!(
        (270_000.0..=330_000.0).contains(&longest),
        "300 ms +- 10 %: {stall}"
    );
    assert!(stall["connection"].as_u64().unwrap() < 2, "{stall}");
    let at = stall["at"].as_f64().unwrap();
    assert!((0.3..=0.8).contains(&at), "began about 0.5 s in: {stall}");
    assert_eq!(summary["thresholds"][0]["held"], false);
    // The interval in which it ended says so too.
    let worst_interval = lines[..lines.len() - 1]
        .iter()
        .map(|i| i["stall_us"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        (270_000.0..=330_000.0).contains(&worst_interval),
        "{stdout}"
    );
}

#[test]
fn a_server_that_never_stalls_has_a_short_longest_stall_in_text() {
    let server = Server::start(&[]);
    let out = client(&[
        "bench",
        "--connect",
        &server.connect_arg(),
        "-c",
        "2",
        "-d",
        "0.4",
        "-w",
        "0",
        "--threshold",
        "stall<250ms",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("longest stall: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("(connection "), "{line}");
    assert!(stdout.contains("✓ stall<250ms"), "{stdout}");
}

#[test]
fn abort_on_fail_sees_a_stall_while_it_is_still_going_on() {
    // Echoes 100 messages per connection, then holds them unanswered.
    let server = Server::start(&["--stall-after", "6400"]);
    let started = std::time::Instant::now();
    let out = client(&[
        "bench",
        "--connect",
        &server.connect_arg(),
        "-c",
        "2",
        "-d",
        "10",
        "-w",
        "0",
        "--interval",
        "0.1",
        "--threshold",
        "stall<300ms",
        "--abort-on-fail",
    ]);
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "stopped long before the 5 s timeout would end the stall"
    );
    assert!(
        text(&out.stderr).contains("--abort-on-fail: stall<300ms breached"),
        "{}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let growing: Vec<&str> = stdout.lines().filter(|l| l.contains(" stall ")).collect();
    assert!(growing.len() >= 3, "an interval line per 0.1 s: {stdout}");
}
