//! UDP echo (RFC 862) through the real binaries, and against peers we did
//! not write.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn udp_server(args: &[&str]) -> Server {
    Server::start_listening(&["--listen", "udp:0:interface=127.0.0.1"], args)
}

fn udp_arg(port: u16) -> String {
    format!("udp:127.0.0.1:{port}")
}

/// The client's summary line (standard error).
fn summary(out: &std::process::Output) -> String {
    text(&out.stderr)
        .lines()
        .find(|l| l.starts_with("udp: "))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn our_client_and_server_echo_datagrams_and_account_for_each() {
    let mut server = udp_server(&[]);
    let out = client(&[
        "udp",
        "--connect",
        &udp_arg(server.port),
        "-n",
        "20",
        "--interval",
        "0.001",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "> from server: hello server\n".repeat(20)
    );
    assert!(
        summary(&out).starts_with(
            "udp: 20 sent, 20 back, 0 lost, 0 duplicated, 0 reordered, 0 corrupted; round trip "
        ),
        "{}",
        text(&out.stderr)
    );
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    assert!(
        server
            .log()
            .contains("udp datagrams received=20 echoed=20 rate_limited=0")
    );
}

#[test]
fn the_largest_datagram_comes_back_whole() {
    let server = udp_server(&[]);
    let out = client(&[
        "udp",
        "--connect",
        &udp_arg(server.port),
        "-n",
        "3",
        "--size",
        "65507",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "> from server: 65507 bytes\n".repeat(3));
    for bad in ["65508", "15"] {
        let out = client(&["udp", "--connect", &udp_arg(server.port), "--size", bad]);
        assert_eq!(out.status.code(), Some(2), "--size {bad}");
        assert!(text(&out.stderr).contains("is not a datagram size from 16 to 65507 bytes"));
    }
}

#[test]
fn the_rate_limit_drops_the_excess_and_every_warning_counts_exactly() {
    let mut server = udp_server(&["--udp-rate", "5"]);
    let out = client(&[
        "udp",
        "--connect",
        &udp_arg(server.port),
        "-n",
        "20",
        "--interval",
        "0",
        "--wait",
        "0.5",
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 5);
    assert!(
        summary(&out)
            .starts_with("udp: 20 sent, 5 back, 15 lost, 0 duplicated, 0 reordered, 0 corrupted;"),
        "{}",
        text(&out.stderr)
    );
    server.wait_log("dropping datagrams", 1, Duration::from_secs(5));
    server.signal("INT");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    // Each warning counts exactly what it says, for the source it names:
    // together they account for all 15 drops, all from the one client port.
    let log = server.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dropping datagrams"))
        .collect();
    let total: u64 = warnings
        .iter()
        .map(|l| {
            l.split("dropped=")
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in {l}"))
        })
        .sum();
    assert_eq!(total, 15, "{log}");
    let source = |l: &str| {
        l.split("from=")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_owned)
    };
    assert!(
        warnings.iter().all(|l| source(l) == source(warnings[0])),
        "{log}"
    );
    assert!(
        server
            .log()
            .contains("received=20 echoed=5 rate_limited=15"),
        "{}",
        server.log()
    );
}

#[test]
fn udp_usage_errors_exit_2_with_a_pointer() {
    let out = client(&["--connect", "udp:127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("UDP echo has its own subcommand: echo-client udp --connect"),
        "{}",
        text(&out.stderr)
    );
    let out = client(&["--stdin", "--connect", "udp:127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2));
    let out = client(&["udp", "--connect", "tcp:127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("needs a udp: endpoint"));
    // A message no datagram can carry is a usage error too.
    let huge = "x".repeat(70_000);
    let out = client(&["udp", "--connect", "udp:127.0.0.1:9", "-m", &huge]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // UDP-only flags are not accepted for stream echo.
    for flag in [["--interval", "1"], ["--wait", "1"]] {
        let out = client(&["--connect", "tcp:127.0.0.1:9", flag[0], flag[1]]);
        assert_eq!(out.status.code(), Some(2), "{flag:?}");
    }
}

#[test]
fn udp_rate_0_lifts_the_limit() {
    let server = udp_server(&["--udp-rate", "0"]);
    let out = client(&[
        "udp",
        "--connect",
        &udp_arg(server.port),
        "-n",
        "400",
        "--interval",
        "0.0002",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(summary(&out).starts_with("udp: 400 sent, 400 back, 0 lost"));
}

#[test]
fn udp_is_off_unless_listed_and_a_refusal_is_reported() {
    // A TCP-only server has no UDP socket on its port: the kernel answers
    // with "port unreachable", which the client reports as a refusal.
    let server = Server::start(&[]);
    let out = client(&["udp", "--connect", &udp_arg(server.port), "-n", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "connection refused by udp 127.0.0.1:{}",
            server.port
        )),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_benchmark_refuses_udp() {
    let out = client(&["bench", "--connect", "udp:127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("this mode measures stream echo; use tcp:, unix: or tls:"));
}

#[test]
fn our_client_verifies_socat_as_a_udp_echo_server() {
    if !have("socat") {
        return;
    }
    // socat's own echo (`PIPE`: what it writes into a pipe it reads back),
    // not `EXEC:cat`: cat, a second process, can read a 64 KiB datagram out
    // of the pipe in two parts, and socat then sends two datagrams back (a
    // 65,507-byte one came back as 36,544 and 28,963 once in a loaded run).
    let run = |buffer: &str, size: &str| {
        let port = free_port();
        let mut socat = Peer(
            Command::new("socat")
                .args([
                    "-b",
                    buffer,
                    &format!("UDP4-RECVFROM:{port},bind=127.0.0.1,fork"),
                    "PIPE",
                ])
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(300));
        let out = client(&[
            "udp",
            "--connect",
            &udp_arg(port),
            "-n",
            "3",
            "--size",
            size,
        ]);
        let _ = socat.0.kill();
        let _ = socat.0.wait();
        out
    };
    let whole = run("65536", "65507");
    assert!(whole.status.success(), "stderr: {}", text(&whole.stderr));
    assert!(summary(&whole).starts_with("udp: 3 sent, 3 back, 0 lost"));
    // socat's default 8 KiB buffer cuts big datagrams: we say so.
    let cut = run("8192", "20000");
    assert_eq!(cut.status.code(), Some(1));
    assert_eq!(
        summary(&cut),
        "udp: 3 sent, 0 back, 3 lost, 0 duplicated, 0 reordered, 3 corrupted"
    );
}

#[test]
fn a_python_udp_client_gets_every_datagram_back_whole() {
    if !have("python3") {
        return;
    }
    let server = udp_server(&[]);
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
addr = ("127.0.0.1", int(sys.argv[1]))
for size in (0, 1, 1400, 9000, 65507):
    data = bytes((i * 7 + size) % 256 for i in range(size))
    s.sendto(data, addr)
    got, frm = s.recvfrom(70000)
    if got != data or frm != addr:
        print("mismatch at", size, len(got), frm); sys.exit(1)
print("ok")
"#;
    let (said, stderr) = python(script, server.port);
    assert_eq!(said, "ok", "stderr: {stderr}");
}

#[test]
fn datagrams_from_the_echo_port_are_never_answered() {
    if !have("python3") {
        return;
    }
    let server = udp_server(&[]);
    // From port 7 (another echo service, say) a reply would start an
    // endless ping-pong. Binding port 7 needs privileges: skip without.
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.bind(("127.0.0.1", 7))
except OSError as e:
    print("skip", e); sys.exit(0)
s.settimeout(0.5)
s.sendto(b"ping", ("127.0.0.1", int(sys.argv[1])))
try:
    s.recvfrom(100); print("answered")
except socket.timeout:
    print("silent")
"#;
    let (said, stderr) = python(script, server.port);
    if said.starts_with("skip") {
        eprintln!("SKIPPED: cannot bind port 7 here ({said})");
        return;
    }
    assert_eq!(said, "silent", "stderr: {stderr}");
    server.wait_log("source port 7 is never answered", 1, Duration::from_secs(5));
}
