//! The server's fault knobs end to end on loopback: observed by a plain
//! Python socket client (code no one here wrote the semantics of: the
//! standard library's blocking sockets) and by our own client, whose verdicts
//! and exit codes must name what happened. Also: flags from the environment,
//! the stats line, completions and the man page.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(20);

/// Sends some bytes, then reads until all came back ("whole"), end-of-file,
/// a reset or 5 s of silence; prints the byte count, how it ended and the
/// milliseconds to the first byte and to the end.
const PROBE: &str = r#"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(5)
data = bytes(range(256)) * 4
t0 = time.monotonic()
n = int(sys.argv[2])
s.sendall(data[:n])
got, first, how = b"", None, "eof"
try:
    while len(got) < n or n == 0:
        chunk = s.recv(65536)
        if not chunk:
            break
        if first is None:
            first = time.monotonic()
        got += chunk
    else:
        how = "whole"
except ConnectionResetError:
    how = "reset"
except socket.timeout:
    how = "silent"
end = time.monotonic()
print(len(got), how, int(((first or end) - t0) * 1000), int((end - t0) * 1000))
"#;

/// Runs [`PROBE`] against `port`, sending `n` bytes.
fn probe(port: u16, n: usize) -> (usize, String, u64, u64) {
    let out = Command::new("python3")
        .args(["-c", PROBE, &port.to_string(), &n.to_string()])
        .output()
        .expect("run python3");
    let stdout = text(&out.stdout);
    let f: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(f.len(), 4, "probe said {stdout:?}, {}", text(&out.stderr));
    (
        f[0].parse().unwrap(),
        f[1].to_owned(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    )
}

/// Sends `argv[2]` bytes, then half-closes, so a delayed echo can finish
/// and close; or, with `then-wait`, says "sent" once they had time to
/// arrive and keeps its write side open. Reads until end-of-file; prints
/// the count, the milliseconds taken and whether the echo was exact.
const HALF_CLOSE_PROBE: &str = r#"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(10)
t0 = time.monotonic()
data = (bytes(range(250)) * (int(sys.argv[2]) // 250 + 1))[:int(sys.argv[2])]
s.sendall(data)
if sys.argv[3:] == ["then-wait"]:
    time.sleep(0.5)
    print("sent", flush=True)
else:
    s.shutdown(socket.SHUT_WR)
got = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
print(len(got), int((time.monotonic() - t0) * 1000), got == data)
"#;

#[test]
fn a_delay_holds_every_echo_back_that_long() {
    each_io(|_io| {
        let server = Server::start(&["--delay", "300ms"]);
        let (n, how, first_ms, _) = probe(server.port, 12);
        assert_eq!((n, how.as_str()), (12, "whole"));
        assert!(
            (300..1_500).contains(&first_ms),
            "first byte after {first_ms} ms"
        );
        // Our client: every round trip takes at least the delay.
        let start = Instant::now();
        let out = client(&["--connect", &server.connect_arg(), "-c", "2"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(start.elapsed() >= Duration::from_millis(300));
        // An operator is told, once, that the server misbehaves on purpose.
        server.wait_log("misbehaving on purpose", 1, LONG);
    });
}

#[test]
fn a_graceful_shutdown_sends_the_echo_a_delay_still_holds() {
    each_io(|_io| {
        let mut server = Server::start(&["--delay", "60s", "--grace", "0"]);
        let mut peer = Peer(
            Command::new("python3")
                .args([
                    "-c",
                    HALF_CLOSE_PROBE,
                    &server.port.to_string(),
                    "1000",
                    "then-wait",
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run python3"),
        );
        let mut lines = BufReader::new(peer.0.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "sent");
        server.signal("TERM");
        assert!(server.wait_exit(LONG).success(), "{}", server.log());
        // Held for a minute, released by the shutdown: nothing read is lost.
        let said = lines.next().unwrap().unwrap();
        assert!(
            said.starts_with("1000 ") && said.ends_with(" True"),
            "{said}\n{}",
            server.log()
        );
        assert!(peer.0.wait().unwrap().success());
    });
}

#[test]
fn a_throttle_caps_the_rate() {
    each_io(|_io| {
        let server = Server::start(&["--throttle", "100KiB/s"]);
        let len = 150 * 1024;
        let out = Command::new("python3")
            .args([
                "-c",
                HALF_CLOSE_PROBE,
                &server.port.to_string(),
                &len.to_string(),
            ])
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        let f: Vec<u64> = stdout
            .split_whitespace()
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(f[0], len as u64, "every byte back: {stdout}");
        assert!(stdout.trim_end().ends_with("True"), "exact: {stdout}");
        // A tenth of a second's worth goes at once, the rest at 100 KiB/s:
        // 140 KiB take 1.4 s.
        assert!(f[1] >= 1_350, "{len} bytes in {} ms", f[1]);
        assert!(f[1] < 5_000, "{len} bytes in {} ms", f[1]);
    });
}

#[test]
fn close_after_echoes_exactly_that_many_bytes_then_closes() {
    each_io(|_io| {
        let server = Server::start(&["--close-after", "5", "--stats-interval", "50ms"]);
        let (n, how, _, _) = probe(server.port, 12);
        assert_eq!((n, how.as_str()), (5, "eof"));
        let out = client(&["--connect", &server.connect_arg(), "-c", "1"]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("truncated: sent 12 bytes, received 5"),
            "{stderr}"
        );
        // Both cut off, and counted so (the metrics read the same counter).
        server.wait_counted("cut_off_close", 2, LONG);
    });
}

#[test]
fn reset_after_echoes_then_resets() {
    each_io(|_io| {
        let server = Server::start(&["--reset-after", "100", "--stats-interval", "50ms"]);
        let (n, how, _, _) = probe(server.port, 300);
        assert_eq!(how, "reset", "a reset, not a clean close");
        assert!(n <= 100, "at most the 100 bytes before the reset, got {n}");
        let out = client(&["--connect", &server.connect_arg(), "-s", "1000", "-c", "1"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("reset by peer"),
            "{}",
            text(&out.stderr)
        );
        server.wait_counted("cut_off_reset", 2, LONG);
    });
}

#[test]
fn stall_after_goes_silent_until_the_idle_timeout() {
    each_io(|_io| {
        let server = Server::start(&["--stall-after", "3", "--idle-timeout", "1"]);
        let (n, how, _, end_ms) = probe(server.port, 12);
        assert_eq!(
            (n, how.as_str()),
            (3, "eof"),
            "3 bytes, then the idle close"
        );
        assert!((900..4_000).contains(&end_ms), "closed after {end_ms} ms");
        let out = client(&[
            "--connect",
            &server.connect_arg(),
            "-c",
            "1",
            "--timeout",
            "0.3",
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("timed out"),
            "{}",
            text(&out.stderr)
        );
    });
}

#[test]
fn the_fault_ratio_picks_a_reproducible_share() {
    let run = || {
        let server = Server::start(&[
            "--close-after",
            "0",
            "--fault-ratio",
            "0.5",
            "--seed",
            "7",
            "--stats-interval",
            "50ms",
        ]);
        let fine = (0..40)
            .map(|_| probe(server.port, 4).0 == 4)
            .collect::<Vec<bool>>();
        // Exactly the connections cut off are counted as such.
        let cut = fine.iter().filter(|&&ok| !ok).count();
        server.wait_counted("cut_off_close", cut, LONG);
        fine
    };
    let first = run();
    let fine = first.iter().filter(|&&ok| ok).count();
    assert!((8..=32).contains(&fine), "{fine} of 40 untouched");
    assert_eq!(first, run(), "the same seed cuts the same connections");
}

#[test]
fn flags_come_from_the_environment_too() {
    let mut command = Command::new(SERVER);
    command
        .args(["--listen", "tcp:0:interface=127.0.0.1"])
        .env("ECHO_SERVER_CLOSE_AFTER", "2");
    let server = Server::spawn(command);
    assert_eq!(probe(server.port, 12).0, 2);
    let help = Command::new(SERVER).arg("--help").output().unwrap();
    assert!(text(&help.stdout).contains("[env: ECHO_SERVER_MAX_CONNECTIONS=]"));
    let bad = Command::new(SERVER)
        .env("ECHO_SERVER_THROTTLE", "fast")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("is not a rate"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn bad_knob_values_are_usage_errors() {
    for args in [
        &["--delay", "soon"][..],
        &["--throttle", "0"],
        &["--close-after", "-1"],
        &["--close-after", "5", "--stall-after", "5"],
        &["--fault-ratio", "1.5", "--close-after", "1"],
        &["--fault-ratio", "0.5"],
        &["--stats-interval", "0s"],
    ] {
        let out = Command::new(SERVER).args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).starts_with("error:"), "{args:?}");
    }
}

#[test]
fn stats_interval_logs_what_happened() {
    let server = Server::start(&["--stats-interval", "200ms"]);
    let out = client(&["--connect", &server.connect_arg(), "-c", "3"]);
    assert!(out.status.success());
    // Each line counts since the last: the run may straddle two.
    server.wait_counted("lost_clean", 3, LONG);
    let log = server.log();
    assert_eq!(stats_sum(&log, "accepted"), 3, "{log}");
    assert_eq!(stats_sum(&log, "bytes_in"), 36, "{log}");
    assert_eq!(stats_sum(&log, "bytes_out"), 36, "{log}");
    // Nothing more happens: no more lines.
    let lines = log.matches("stats ").count();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        server.log().matches("stats ").count(),
        lines,
        "{}",
        server.log()
    );
}

#[test]
fn completions_and_man_pages_are_printed() {
    for binary in [SERVER, CLIENT] {
        for shell in ["bash", "zsh", "fish"] {
            let out = Command::new(binary)
                .args(["--completions", shell])
                .output()
                .unwrap();
            assert!(out.status.success());
            assert!(out.stdout.len() > 500, "{binary} {shell}");
        }
        let man = Command::new(binary).arg("--man").output().unwrap();
        assert!(man.status.success());
        assert!(text(&man.stdout).contains(".TH"), "{binary}");
    }
    let bad = Command::new(SERVER)
        .args(["--completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
