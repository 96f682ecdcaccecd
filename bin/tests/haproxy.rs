//! Behind a real HAProxy (Debian's `haproxy`, installed by `.ci/run`):
//! `send-proxy` and `send-proxy-v2` in front of our `haproxy:` server, whose
//! log must name the client, not HAProxy; HAProxy's v2 health checks (LOCAL)
//! logged as such at debug, its v1 ones as connections, never as bad
//! headers; HAProxy `accept-proxy` in front of
//! our plain server, taking our client's `--send-proxy`. And `--allow` /
//! `--deny` on loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(20);

/// A HAProxy process with a generated configuration, stopped on drop.
struct Haproxy {
    child: Child,
    port: u16,
    _dir: std::path::PathBuf,
}

impl Haproxy {
    /// Listens on a free port (with `bind_options`) and forwards to
    /// `backend_port` with `server_options`.
    fn start(bind_options: &str, backend_port: u16, server_options: &str) -> Self {
        let server = format!("  server echo 127.0.0.1:{backend_port} {server_options}\n");
        Self::start_with(bind_options, &server)
    }

    /// Round robin over several plain servers.
    fn round_robin(ports: &[u16]) -> Self {
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("  server echo{i} 127.0.0.1:{port}\n"))
            .collect();
        Self::start_with("", &format!("  balance roundrobin\n{servers}"))
    }

    fn start_with(bind_options: &str, backend: &str) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("echo-haproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n  maxconn 100\n\
                 defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
                 frontend fe\n  bind 127.0.0.1:{port} {bind_options}\n  default_backend be\n\
                 backend be\n{backend}"
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        // Owned (and ended on drop) before the wait, which may fail.
        let haproxy = Self {
            child,
            port,
            _dir: dir,
        };
        // Not a probe connection: HAProxy would pass it to the back end,
        // whose log the test then reads.
        wait_listening(port, LONG);
        haproxy
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// Connects from `source_ip` (a loopback address), sends a line, reads
/// the echo; returns the local port it used.
fn echo_from(source_ip: &str, port: u16) -> u16 {
    let script = r#"
import socket, sys
s = socket.socket()
s.bind((sys.argv[2], 0))
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"through the balancer")
got = b""
while len(got) < 20:
    chunk = s.recv(100)
    if not chunk:
        break
    got += chunk
assert got == b"through the balancer", got
print(s.getsockname()[1])
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string(), source_ip])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().parse().unwrap()
}

fn proxied_server() -> Server {
    Server::start_listening(&["--listen", "haproxy:tcp:0:interface=127.0.0.1"], &["-v"])
}

fn the_client_is_logged_through(server_options: &str, local_checks: bool) {
    let server = proxied_server();
    let haproxy = Haproxy::start("", server.port, server_options);
    let client_port = echo_from("127.0.0.2", haproxy.port);
    server.wait_log("connection made id=", 1, LONG);
    let peer = format!("peer=127.0.0.2:{client_port} via=127.0.0.1:");
    server.wait_log(&peer, 1, LONG);
    // HAProxy's health checks: v2 sends LOCAL, logged as checks; v1 sends
    // a PROXY line naming its own socket, a connection like any other.
    // Never bad headers.
    if local_checks {
        server.wait_log("health check", 2, LONG);
    } else {
        server.wait_log("connection made id=", 3, LONG);
        assert!(!server.log().contains("health check"), "{}", server.log());
    }
    let log = server.log();
    assert!(!log.contains("without a valid PROXY header"), "{log}");
    // Our own client through it, too.
    let out = client(&[
        "--connect",
        &format!("tcp:127.0.0.1:{}", haproxy.port),
        "-c",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn behind_haproxy_send_proxy_the_client_is_the_peer() {
    each_io(|_io| {
        if !have("haproxy") || !have("python3") {
            return;
        }
        the_client_is_logged_through("send-proxy check inter 300ms", false);
    });
}

#[test]
fn behind_haproxy_send_proxy_v2_the_client_is_the_peer() {
    each_io(|_io| {
        if !have("haproxy") || !have("python3") {
            return;
        }
        the_client_is_logged_through("send-proxy-v2 check inter 300ms", true);
    });
}

#[test]
fn haproxy_accept_proxy_takes_our_clients_header() {
    each_io(|_io| {
        if !have("haproxy") {
            return;
        }
        let server = Server::start(&[]);
        let haproxy = Haproxy::start("accept-proxy", server.port, "");
        let connect = format!("tcp:127.0.0.1:{}", haproxy.port);
        for version in ["v1", "v2"] {
            let out = client(&["--connect", &connect, "-c", "2", "--send-proxy", version]);
            assert!(out.status.success(), "{version}: {}", text(&out.stderr));
        }
        let out = client(&["--connect", &connect, "-c", "1", "--timeout", "2"]);
        assert_eq!(out.status.code(), Some(1), "no header: HAProxy drops it");
    });
}

#[test]
fn a_bad_or_missing_header_is_closed_logged_and_counted() {
    each_io(|_io| {
        let server = Server::start_listening(
            &["--listen", "haproxy:tcp:0:interface=127.0.0.1"],
            &["--stats-interval", "200ms"],
        );
        let out = client(&["--connect", &server.connect_arg(), "-c", "1"]);
        assert_eq!(out.status.code(), Some(1));
        let mut garbage = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        std::io::Write::write_all(&mut garbage, b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n").unwrap();
        let mut line = String::new();
        let _ = BufReader::new(&garbage).read_line(&mut line);
        assert_eq!(line, "", "closed, nothing echoed");
        server.wait_log("bad port", 1, LONG);
        server.wait_counted("bad_proxy_headers", 2, LONG);
    });
}

#[test]
fn deny_and_allow_decide_on_the_peer() {
    each_io(|_io| {
        let server = Server::start(&["--deny", "127.0.0.0/8"]);
        let out = client(&["--connect", &server.connect_arg(), "-c", "1"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains("received 0"),
            "{}",
            text(&out.stderr)
        );
        server.wait_log("denied by --allow/--deny", 1, LONG);
        // More denials: the first five in full, the rest counted into one
        // summary line (bin/tests/answers.rs follows it to its end).
        for _ in 0..20 {
            drop(TcpStream::connect(server.addr()));
        }
        std::thread::sleep(Duration::from_millis(300));
        let warnings = server.log().matches("denied by --allow/--deny").count();
        assert_eq!(warnings, 5, "{}", server.log());

        let server = Server::start(&["--allow", "127.0.0.2/32"]);
        let from = |ip: &str| {
            client(&[
                "--connect",
                &format!("tcp:host=127.0.0.1:port={}:bindAddress={ip}", server.port),
                "-c",
                "1",
            ])
        };
        assert_eq!(from("127.0.0.1").status.code(), Some(1));
        assert!(from("127.0.0.2").status.success());
        let bad = Command::new(SERVER)
            .args(["--allow", "10.0.0.0/33"])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2));
        assert!(text(&bad.stderr).contains("not an IP address or CIDR block"));
    });
}

#[test]
fn behind_haproxy_deny_applies_to_the_declared_client() {
    each_io(|_io| {
        if !have("haproxy") || !have("python3") {
            return;
        }
        let server = Server::start_listening(
            &["--listen", "haproxy:tcp:0:interface=127.0.0.1"],
            &["--deny", "127.0.0.3/32"],
        );
        let haproxy = Haproxy::start("", server.port, "send-proxy-v2");
        echo_from("127.0.0.2", haproxy.port);
        let script = r#"
import socket, sys
s = socket.socket()
s.bind(("127.0.0.3", 0))
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"x")
print(repr(s.recv(10)))
"#;
        let out = Command::new("python3")
            .args(["-c", script, &haproxy.port.to_string()])
            .output()
            .unwrap();
        assert_eq!(text(&out.stdout).trim(), "b''", "denied behind HAProxy too");
    });
}

#[test]
fn a_connection_that_never_sends_its_header_is_closed_after_five_seconds() {
    each_io(|_io| {
        let server =
            Server::start_listening(&["--listen", "haproxy:tcp:0:interface=127.0.0.1"], &[]);
        let silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let start = Instant::now();
        let mut line = String::new();
        let _ = BufReader::new(&silent).read_line(&mut line);
        let waited = start.elapsed();
        assert!(
            (Duration::from_millis(4_500)..Duration::from_secs(10)).contains(&waited),
            "closed after {waited:?}"
        );
        server.wait_log("no PROXY header within 5s", 1, LONG);
    });
}

#[test]
fn behind_haproxy_over_tls_the_header_comes_before_the_handshake() {
    each_io(|_io| {
        if !have("haproxy") || !have("python3") {
            return;
        }
        // HAProxy speaks TLS to the back end (its own OpenSSL) and sends the
        // PROXY v2 header first, in clear, as AWS load balancers do too.
        let server = Server::start_listening(
            &[
                "--listen",
                "haproxy:ssl:0:interface=127.0.0.1",
                "--self-signed",
            ],
            &["-v"],
        );
        let haproxy = Haproxy::start("", server.port, "ssl verify none send-proxy-v2");
        let client_port = echo_from("127.0.0.2", haproxy.port);
        let peer = format!("peer=127.0.0.2:{client_port} via=127.0.0.1:");
        server.wait_log(&peer, 1, LONG);
        let log = server.log();
        assert!(!log.contains("TLS handshake failed"), "{log}");
        assert!(!log.contains("without a valid PROXY header"), "{log}");
    });
}

#[test]
fn bad_proxy_flag_values_are_usage_errors() {
    for args in [
        &["--send-proxy", "v3"][..],
        &["--proxy-source", "1.2.3.4:5"],
        &["--send-proxy", "v1", "--proxy-source", "not-an-address"],
        &["bench", "--send-proxy", "2.0"],
    ] {
        let out = Command::new(CLIENT).args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    for args in [&["--deny", "300.1.1.1"][..], &["--allow", "::1/129"]] {
        let out = Command::new(SERVER).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = Command::new(SERVER)
        .args(["--listen", "haproxy:udp:7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("tcp, tcp6, unix or ssl after haproxy:"));
}

#[test]
fn behind_haproxy_round_robin_each_backend_is_named_by_its_banner() {
    each_io(|_io| {
        if !have("haproxy") {
            return;
        }
        let a = Server::start(&["--banner", "pod-a"]);
        let b = Server::start(&["--banner", "pod-b"]);
        let haproxy = Haproxy::round_robin(&[a.port, b.port]);
        let connect = format!("tcp:127.0.0.1:{}", haproxy.port);
        let out = client(&[
            "bench",
            "--connect",
            &connect,
            "-c",
            "100",
            "-d",
            "1",
            "-w",
            "0",
            "--banner",
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json = text(&out.stdout);
        let summary: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        let count = |name: &str| -> u64 {
            summary["backends"][name]["connections"]
                .as_u64()
                .unwrap_or_else(|| panic!("{json}"))
        };
        let (on_a, on_b) = (count("pod-a"), count("pod-b"));
        assert_eq!(on_a + on_b, 100, "{json}");
        assert!(
            (40..=60).contains(&on_a),
            "about half each: {on_a} and {on_b}"
        );
        // Per interval too: each line names both back ends.
        let out = client(&[
            "bench",
            "--connect",
            &connect,
            "-c",
            "10",
            "-d",
            "1.1",
            "-w",
            "0",
            "--banner",
            "--interval",
            "0.5",
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let intervals: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|l: &serde_json::Value| l["interval"] == true)
            .collect();
        assert!(!intervals.is_empty(), "{stdout}");
        for line in intervals {
            assert!(
                line["backends"]["pod-a"]["requests"].is_u64()
                    && line["backends"]["pod-b"]["requests"].is_u64(),
                "{line}"
            );
        }
        let out = client(&["--connect", &connect, "-c", "2", "--banner"]);
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("> from pod-a: hello server")
                && stdout.contains("> from pod-b: hello server"),
            "{stdout}"
        );
    });
}

#[test]
fn behind_haproxy_its_health_checks_are_served_past_allow_and_said_once() {
    each_io(|_io| {
        if !have("haproxy") {
            return;
        }
        // HAProxy's own address (127.0.0.1) is not allowed; its v2 checks
        // (LOCAL) declare no client, so the list does not judge them.
        let server = Server::start_listening(
            &["--listen", "haproxy:tcp:0:interface=127.0.0.1"],
            &["--allow", "198.51.100.0/24", "-v"],
        );
        let _haproxy = Haproxy::start("", server.port, "send-proxy-v2 check inter 200ms");
        server.wait_log("health check ended", 3, LONG);
        let log = server.log();
        assert_eq!(
            log.matches("serving the balancer's health checks").count(),
            1,
            "{log}"
        );
        assert!(!log.contains("denied"), "{log}");
    });
}

#[test]
fn a_shutdown_does_not_wait_for_a_header_still_on_its_way() {
    each_io(|io| {
        let mut server =
            Server::start_listening(&["--listen", "haproxy:tcp:0:interface=127.0.0.1"], &[]);
        let silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        std::thread::sleep(Duration::from_millis(200)); // accepted, header awaited
        let asked = Instant::now();
        server.signal("TERM");
        assert!(server.wait_exit(EXIT_LIMIT).success(), "{io}");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{io}: exited {:?} after the signal, as if waiting for the header's deadline",
            asked.elapsed()
        );
        drop(silent);
    });
}
