//! Every answer right: the places where the binaries once gave a wrong
//! result without a word (a shared port, a vanished address, a false
//! failure, a dropped interval, a count credited to one peer, a check that
//! was a connection...). Each test is one of those, seen as a user sees it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(20);

/// The asyncio echo server from the Python docs (no one here wrote it).
fn asyncio_server() -> (Peer, u16) {
    let mut command = Command::new("python3");
    command.arg(peer_script("asyncio_echo_server.py"));
    announced(command)
}

fn bench(connect: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["bench", "--connect", connect];
    all.extend_from_slice(args);
    let out = client(&all);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A Python listener with `SO_REUSEPORT` on a free port, as another
/// program sharing-minded (nginx `reuseport`, say) would hold it.
fn reuseport_listener() -> (Peer, u16) {
    let script = r#"
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", 0))
s.listen()
print("PORT", s.getsockname()[1], flush=True)
time.sleep(60)
"#;
    let mut command = Command::new("python3");
    command.args(["-c", script]);
    announced(command)
}

#[test]
fn a_second_server_on_a_workers_port_fails_to_start_as_without_workers() {
    let first = Server::start(&["--workers", "2"]);
    let listen = format!("tcp:{}:interface=127.0.0.1", first.port);
    for workers in ["2", "0"] {
        let second = output_within(
            Command::new(SERVER)
                .args(["--listen", &listen, "--workers", workers])
                .stdin(Stdio::null()),
            EXIT_LIMIT,
        );
        assert_eq!(second.status.code(), Some(1), "--workers {workers}");
        assert!(
            text(&second.stderr).contains("in use"),
            "{}",
            text(&second.stderr)
        );
    }
    // Nor can it join another program's SO_REUSEPORT group.
    let (_other, port) = reuseport_listener();
    let joined = output_within(
        Command::new(SERVER)
            .args(["--listen", &format!("tcp:{port}:interface=127.0.0.1")])
            .args(["--workers", "2"])
            .stdin(Stdio::null()),
        EXIT_LIMIT,
    );
    assert_eq!(joined.status.code(), Some(1));
    assert!(text(&joined.stderr).contains("already in use"));
    // The workers of one server still share their port: every echo comes
    // back.
    let out = client(&["--connect", &first.connect_arg(), "-c", "40"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Reads whatever a client sends first on a fresh Python listener.
fn first_bytes_of(args: &[&str]) -> Vec<u8> {
    let script = r#"
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("PORT", s.getsockname()[1], flush=True)
c, _ = s.accept()
c.settimeout(5)
data = b""
while b"\r\n" not in data and len(data) < 52:
    chunk = c.recv(100)
    if not chunk:
        break
    data += chunk
sys.stdout.buffer.write(data)
sys.stdout.flush()
"#;
    let mut child = Peer(
        Command::new("python3")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("PORT ").unwrap().to_owned();
    let mut peer = child;
    let mut all = vec!["--connect".to_owned(), format!("tcp:127.0.0.1:{port}")];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.extend(["-c", "1", "--timeout", "1"].map(str::to_owned));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let _ = client(&refs);
    let mut got = Vec::new();
    out.read_to_end(&mut got).unwrap();
    let _ = peer.0.wait();
    got
}

#[test]
fn an_ipv6_proxy_source_on_an_ipv4_connection_is_sent_as_tcp6_not_unknown() {
    let v1 = first_bytes_of(&["--send-proxy", "v1", "--proxy-source", "[2001:db8::5]:99"]);
    let v1 = text(&v1);
    assert!(
        v1.starts_with("PROXY TCP6 2001:db8::5 ::ffff:127.0.0.1 99 "),
        "{v1:?}"
    );
    let v2 = first_bytes_of(&["--send-proxy", "v2", "--proxy-source", "[2001:db8::5]:99"]);
    assert_eq!(v2[12], 0x21, "v2 PROXY command");
    assert_eq!(v2[13], 0x21, "TCP over IPv6, not UNSPEC");
    assert_eq!(
        &v2[16..32],
        &"2001:db8::5"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
    );
    // And our own server takes it as the declared client.
    let server = Server::start_listening(&["--listen", "haproxy:tcp:0:interface=127.0.0.1"], &[]);
    let out = client(&[
        "--connect",
        &server.connect_arg(),
        "--send-proxy",
        "v2",
        "--proxy-source",
        "[2001:db8::5]:99",
        "-c",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.wait_log("peer=[2001:db8::5]:99", 1, LONG);
}

#[test]
fn an_open_loop_at_low_rates_reports_no_false_failure_and_prints_the_rate_as_asked() {
    if !have("python3") {
        return;
    }
    let (_peer, port) = asyncio_server();
    let connect = format!("tcp:127.0.0.1:{port}");
    for (args, rate) in [
        (
            &["-w", "0", "-c", "3", "-d", "2", "--rate", "1"][..],
            "at 1 req/s",
        ),
        (
            &["-w", "0", "-c", "2", "-d", "1", "--rate", "0.5"],
            "at 0.5 req/s",
        ),
        (
            &["-w", "0", "-c", "2", "-d", "1", "--rate", "1.5"],
            "at 1.5 req/s",
        ),
    ] {
        let started = Instant::now();
        let (code, out, err) = bench(&connect, args);
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
        assert!(out.contains("errors 0"), "{out}");
        assert!(out.contains(rate), "{out}");
        // Ends with the run, not at the next send seconds away.
        assert!(started.elapsed() < Duration::from_secs(6), "{args:?}");
    }
}

#[test]
fn an_open_loop_reports_its_requests_per_back_end() {
    let server = Server::start(&["--banner", "pod-x"]);
    let (code, out, err) = bench(
        &server.connect_arg(),
        &["--banner", "--rate", "200", "-c", "2", "-d", "1", "-w", "0"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let total: u64 = out
        .split(" requests in ")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(total > 100, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("backend pod-x:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&format!("2 connections, {total} requests")),
        "{line}"
    );
    assert!(!line.contains("p50 0.0us"), "{line}");
}

#[test]
fn denials_are_counted_apart_and_their_warnings_summarised_by_a_timer() {
    let server = Server::start(&["--deny", "127.0.0.1", "--stats-interval", "1s"]);
    for _ in 0..3_000 {
        drop(TcpStream::connect(server.addr()));
    }
    // No further denial comes: the summary must be written by its timer.
    server.wait_log("more connections denied", 1, LONG);
    server.wait_counted("denied", 3000, LONG);
    let log = server.log();
    let warnings = log.lines().filter(|l| l.contains("denied by")).count();
    assert!(warnings <= 7, "{warnings} warning lines:\n{log}");
    let summary = log
        .lines()
        .find(|l| l.contains("more connections denied"))
        .unwrap();
    assert!(summary.contains("2995 more"), "{summary}");
    assert!(summary.contains("last_peer=127.0.0.1:"), "{summary}");
    assert_eq!(
        stats_sum(&log, "refused"),
        0,
        "denials are no refusals: {log}"
    );
}

#[test]
fn a_proxy_command_declaring_its_own_address_is_a_connection_not_a_health_check() {
    let server = Server::start_listening(&["--listen", "haproxy:tcp:0:interface=127.0.0.1"], &[]);
    let out = client(&[
        "--connect",
        &server.connect_arg(),
        "--send-proxy",
        "v2",
        "-s",
        "100000",
        "-c",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.wait_log("connection lost", 1, LONG);
    let log = server.log();
    assert!(
        log.contains("INFO") && log.contains("connection made"),
        "{log}"
    );
    assert!(!log.contains("health check"), "{log}");
}

/// The 16-byte v2 LOCAL header, from the spec's byte layout.
const V2_LOCAL: [u8; 16] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00,
];

#[test]
fn a_balancers_local_health_check_is_served_past_allow_and_said_once() {
    let server = Server::start_listening(
        &["--listen", "haproxy:tcp:0:interface=127.0.0.1"],
        &["--allow", "198.51.100.0/24", "-v"],
    );
    for _ in 0..3 {
        let mut check = TcpStream::connect(server.addr()).unwrap();
        check.write_all(&V2_LOCAL).unwrap();
        check.write_all(b"ping").unwrap();
        check.set_read_timeout(Some(LONG)).unwrap();
        let mut back = [0u8; 4];
        check.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
    }
    server.wait_log("health check ended", 3, LONG);
    let log = server.log();
    assert_eq!(
        log.matches("serving the balancer's health checks").count(),
        1,
        "{log}"
    );
    // A PROXY command from outside the list is still turned away.
    let out = client(&[
        "--connect",
        &server.connect_arg(),
        "--send-proxy",
        "v1",
        "-c",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    server.wait_log("connection denied", 1, LONG);
}

#[test]
fn the_last_interval_is_reported_and_no_failed_run_leaves_an_empty_file() {
    let server = Server::start(&[]);
    let (code, out, err) = bench(
        &server.connect_arg(),
        &["-d", "3", "--interval", "1", "-w", "0", "-c", "2"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let intervals: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" req/s  errors"))
        .collect();
    assert_eq!(intervals.len(), 3, "{out}");
    assert!(intervals[2].trim_start().starts_with("3.0s"), "{out}");

    let dir = std::env::temp_dir().join(format!("echo-answers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("series.svg");
    let (code, out, err) = bench(
        &server.connect_arg(),
        &[
            "-d",
            "1",
            "--interval",
            "0.5",
            "-w",
            "0",
            "-c",
            "2",
            "--plot-series",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(std::fs::metadata(&svg).unwrap().len() > 1000);

    let hgrm = dir.join("refused.hgrm");
    let refused = format!("tcp:127.0.0.1:{}", free_port());
    let (code, _, err) = bench(&refused, &["-d", "1", "--hgrm", hgrm.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(!hgrm.exists(), "a failed run left {}", hgrm.display());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_banner_is_limited_once_filled_in_and_listen_names_no_file() {
    let out = output_within(
        Command::new(SERVER)
            .args(["--listen", "tcp:0:interface=127.0.0.1"])
            .args([
                "--banner",
                "{listen} {listen} {listen} {listen} {listen} {listen} {listen}",
            ]),
        EXIT_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("once its placeholders are filled in"));
    if !have("openssl") {
        return;
    }
    // A key and certificate from OpenSSL: their paths must reach no client.
    let dir = std::env::temp_dir().join(format!("echo-banner-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("secret-cert.pem"), dir.join("secret-key.pem"));
    let made = output_within(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-subj", "/CN=localhost", "-days", "1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        EXIT_LIMIT,
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    let listen = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
        key.display(),
        cert.display()
    );
    let server = Server::start_listening(&["--listen", &listen], &["--banner", "at {listen}"]);
    let out = client(&[
        "--connect",
        &format!("tls:127.0.0.1:{}", server.port),
        "--insecure",
        "--banner",
        "-c",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("at ssl:port=0:interface=127.0.0.1"), "{said}");
    assert!(
        !said.contains("secret") && !said.contains("privateKey"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn self_signed_on_another_loopback_address_prints_a_command_that_works() {
    let mut child = Peer(
        Command::new(SERVER)
            .args(["--listen", "ssl:0:interface=127.0.0.2", "--self-signed"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines: Vec<String> = BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .take(4)
        .map(Result::unwrap)
        .collect();
    let _guard = child;
    assert!(lines[1].contains("127.0.0.2"), "{lines:?}");
    let command = lines[3]
        .strip_prefix("try: echo-client ")
        .unwrap_or_else(|| panic!("{lines:?}"));
    let args: Vec<&str> = command.split(' ').collect();
    let out = client(&args);
    assert!(out.status.success(), "{command}: {}", text(&out.stderr));
}

#[test]
fn self_signed_misuse_is_a_usage_error_and_leaves_no_ca_file() {
    for args in [
        &["--self-signed"][..],
        &["--listen", "ssl:0:privateKey=key.pem", "--self-signed"],
        &["--listen", "ssl:0:caCerts="],
    ] {
        let out = output_within(Command::new(SERVER).args(args), EXIT_LIMIT);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = client(&["--connect", "tls:localhost:1:trustRoots="]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // A start-up that fails (its port taken) removes the CA file it wrote.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut child = Peer(
        Command::new(SERVER)
            .args([
                "--listen",
                &format!("ssl:{port}:interface=127.0.0.1"),
                "--self-signed",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    assert_eq!(wait_within(&mut child.0, EXIT_LIMIT).code(), Some(1));
    let ca = std::env::temp_dir().join(format!("echo-server-{pid}-ca.pem"));
    assert!(!ca.exists(), "left behind: {}", ca.display());
    drop(taken);
}

#[test]
fn reconnects_count_only_while_measuring() {
    let server = Server::start(&[]);
    let (code, out, err) = bench(
        &server.connect_arg(),
        &[
            "-c",
            "2",
            "-d",
            "1",
            "-w",
            "1",
            "--reconnect-every",
            "1",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let field = |name: &str| -> u64 {
        summary[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {out}"))
    };
    let (requests, connects, reconnects) =
        (field("requests"), field("connects"), field("reconnects"));
    assert_eq!(
        connects,
        reconnects + 2,
        "the two first connects and the measured reconnects"
    );
    // One reconnect before every message but each connection's first;
    // a message or two per connection may straddle the window's edges.
    assert!(
        reconnects.abs_diff(requests) <= 4,
        "{requests} requests, {reconnects} reconnects"
    );
}

#[test]
fn a_connect_and_close_on_haproxy_or_ssl_is_no_warning() {
    let proxied = Server::start_listening(
        &["--listen", "haproxy:tcp:0:interface=127.0.0.1"],
        &["-v", "--stats-interval", "200ms"],
    );
    let tls = Server::start_listening(
        &["--listen", "ssl:0:interface=127.0.0.1", "--self-signed"],
        &["-v", "--stats-interval", "200ms"],
    );
    for server in [&proxied, &tls] {
        for _ in 0..3 {
            drop(TcpStream::connect(server.addr()).unwrap());
        }
    }
    proxied.wait_log("closed before sending a PROXY header", 3, LONG);
    tls.wait_log("closed before sending a TLS ClientHello", 3, LONG);
    std::thread::sleep(Duration::from_millis(500));
    for server in [&proxied, &tls] {
        let log = server.log();
        assert!(!log.contains("WARN"), "{log}");
        assert!(
            !log.contains("bad_proxy_headers") && !log.contains("tls_handshake_failures"),
            "{log}"
        );
    }
}

#[test]
fn a_mismatch_at_the_first_byte_says_its_likely_cause() {
    if !have("python3") {
        return;
    }
    let (_peer, port) = asyncio_server();
    let plain = format!("tcp:127.0.0.1:{port}");
    let out = client(&["--connect", &plain, "-c", "1", "--send-proxy", "v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("an echoed PROXY header?"),
        "{}",
        text(&out.stderr)
    );
    let out = client(&[
        "--connect",
        &format!("tls:localhost:{port}"),
        "--insecure",
        "-c",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the server echoed our TLS ClientHello"),
        "{}",
        text(&out.stderr)
    );
    let tls = Server::start_listening(
        &["--listen", "ssl:0:interface=127.0.0.1", "--self-signed"],
        &[],
    );
    let out = client(&["--connect", &tls.connect_arg(), "-c", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the server speaks TLS"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn start_up_lines_and_usage_errors_read_as_words() {
    let server = Server::start(&[
        "--delay",
        "50ms",
        "--close-after",
        "10",
        "--fault-ratio",
        "0.5",
    ]);
    server.wait_log("misbehaving on purpose", 1, LONG);
    let log = server.log();
    assert!(
        log.contains("faults=delay 50ms, close after 10 bytes on 50% of connections (seed 0)"),
        "{log}"
    );
    assert!(!log.contains("FaultConfig"), "{log}");
    let out = client(&[
        "bench",
        "-c",
        "100000",
        "-s",
        "16MiB",
        "--connect",
        "tcp:127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("Usage: echo-client bench"),
        "{}",
        text(&out.stderr)
    );
    let out = client(&["bench", "--connect-rate", "0"]);
    assert!(
        text(&out.stderr).contains("connections per second"),
        "{}",
        text(&out.stderr)
    );
    let bogus = std::env::temp_dir().join(format!("echo-not-hlog-{}", std::process::id()));
    std::fs::write(&bogus, "this is no interval log\n").unwrap();
    let out = client(&["merge", bogus.to_str().unwrap()]);
    let _ = std::fs::remove_file(&bogus);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !text(&out.stderr).contains("ParseError"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_second_signal_exits_at_once_and_still_removes_the_throw_away_ca() {
    // The first line (and so the port) is the plain endpoint's.
    let server = Server::start_listening(
        &["--listen", "tcp:0:interface=127.0.0.1"],
        &["--listen", "ssl:0:interface=127.0.0.1", "--self-signed"],
    );
    let ca = std::env::temp_dir().join(format!("echo-server-{}-ca.pem", server.child.id()));
    assert!(ca.exists(), "{}", ca.display());
    // An open connection keeps the first signal's shutdown waiting.
    let _open = TcpStream::connect(server.addr()).unwrap();
    server.wait_log("connection made", 1, LONG);
    server.signal("TERM");
    server.wait_log("shutting down", 1, LONG);
    server.signal("TERM");
    let mut server = server;
    let status = server.wait_exit(LONG);
    assert_eq!(status.code(), Some(143), "{}", server.log());
    assert!(!ca.exists(), "left behind: {}", ca.display());
}

#[test]
fn help_names_tls_and_completions_and_man_writes_every_page_it_names() {
    let help = client(&["--help"]);
    let help = text(&help.stdout);
    assert!(help.contains("tcp:, unix: or tls:"), "{help}");
    assert!(
        help.contains("trustRoots=") && help.contains("certificate="),
        "{help}"
    );
    assert!(
        help.contains("--completions") && help.contains("--man"),
        "{help}"
    );
    let dir = std::env::temp_dir().join(format!("echo-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = client(&["--man", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let main = std::fs::read_to_string(dir.join("echo-client.1")).unwrap();
    for sub in ["bench", "udp", "merge", "plot"] {
        assert!(
            main.contains(&format!("echo\\-client\\-{sub}")),
            "{sub} named"
        );
        assert!(
            dir.join(format!("echo-client-{sub}.1")).exists(),
            "{sub} written"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
