//! The interop matrix: our client against echo servers no one here wrote,
//! and their clients against our server, each verifying every byte.
//!
//! Peers: Twisted 26 (a plain `Protocol` echo and `twisted.protocols.wire.Echo`,
//! neither half-closeable), Python `asyncio` streams, socat, ncat and Node.js
//! `net`. Each test skips with a notice when its peer is missing, and fails
//! instead when `ECHO_REQUIRE_PEERS` is set (`.ci/run` sets it and installs
//! them). Twisted comes from `ECHO_PEERS_PYTHON`, else `.peers-venv/` at the
//! workspace root (what `.ci/run` makes), else `python3`.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Skips (or, in CI, fails) when `ok` is false.
fn required(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            std::env::var_os("ECHO_REQUIRE_PEERS").is_none(),
            "{what} is required here (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {what} is not available");
    }
    ok
}

/// A Python interpreter that can import Twisted, if there is one.
fn twisted_python() -> Option<String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.peers-venv/bin/python");
    let candidates = [
        std::env::var("ECHO_PEERS_PYTHON").ok(),
        venv.exists().then(|| venv.display().to_string()),
        Some("python3".to_owned()),
    ];
    let found = candidates.into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", "import twisted"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    required(found.is_some(), "Python with Twisted (pip install twisted)").then(|| found.unwrap())
}

/// Starts a peer server on `port` (which it cannot announce) and waits until
/// it accepts.
fn on_port(mut command: Command, port: u16) -> Peer {
    let peer = Peer(command.spawn().expect("start the peer server"));
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the peer never listened"
        );
        thread::sleep(Duration::from_millis(20));
    }
    peer
}

/// Our client against a server: ten connections saying hello, ten 100 KB
/// messages, and 1 MiB through `--stdin`, every byte verified.
fn our_client_against(port: u16) {
    let connect = format!("tcp:127.0.0.1:{port}");
    let out = client(&["--connect", &connect]);
    assert!(out.status.success(), "hello: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout)
            .lines()
            .filter(|l| *l == "> from server: hello server")
            .count(),
        10
    );

    let message = "x".repeat(100_000);
    let out = client(&["--connect", &connect, "-n", "10", "-m", &message]);
    assert!(out.status.success(), "100 KB: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 10);

    let input = random_bytes(1 << 20, u64::from(port));
    let out = client_with_stdin(&["--stdin", "--connect", &connect], input.clone());
    assert!(out.status.success(), "--stdin: {}", text(&out.stderr));
    assert!(out.stdout == input, "--stdin: the echo differs");
}

#[test]
fn our_client_against_twisted_protocol_echo() {
    let Some(python) = twisted_python() else {
        return;
    };
    let mut command = Command::new(python);
    command.args([&peer_script("twisted_echo_server.py"), "plain"]);
    let (_peer, port) = announced(command);
    our_client_against(port);
}

#[test]
fn our_client_against_twisted_wire_echo() {
    let Some(python) = twisted_python() else {
        return;
    };
    let mut command = Command::new(python);
    command.args([&peer_script("twisted_echo_server.py"), "wire"]);
    let (_peer, port) = announced(command);
    our_client_against(port);
    // The load generator never half-closes mid-run either.
    let out = client(&[
        "bench",
        "--connect",
        &format!("tcp:127.0.0.1:{port}"),
        "-c",
        "4",
        "-s",
        "4096",
        "-d",
        "1",
        "-w",
        "0",
        "--json",
    ]);
    assert!(out.status.success(), "bench: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"errors\":0"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn half_close_against_twisted_gets_exact_verdicts() {
    let Some(python) = twisted_python() else {
        return;
    };
    let mut command = Command::new(python);
    command.args([&peer_script("twisted_echo_server.py"), "wire"]);
    let (_peer, port) = announced(command);
    // Twisted drops what it still owes when the FIN arrives: whether a
    // connection loses its echo is a race (PEERS.md 1.1), but every verdict
    // must be exact, never `done` for a short echo.
    let out = client(&[
        "--half-close",
        "--connect",
        &format!("tcp:127.0.0.1:{port}"),
        "-n",
        "20",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let done = stdout
        .lines()
        .filter(|l| *l == "> from server: hello server")
        .count();
    let truncated: Vec<&str> = stderr.lines().collect();
    assert_eq!(done + truncated.len(), 20, "{stdout}{stderr}");
    for line in &truncated {
        assert!(
            line.contains("truncated: sent 12 bytes, received 0 before the server closed"),
            "{line}"
        );
    }
    assert_eq!(
        out.status.code(),
        Some(if truncated.is_empty() { 0 } else { 1 })
    );
    eprintln!(
        "--half-close against wire.Echo: {} of 20 truncated",
        truncated.len()
    );
}

#[test]
fn our_client_against_asyncio_streams() {
    if !have("python3") {
        return;
    }
    let mut command = Command::new("python3");
    command.arg(peer_script("asyncio_echo_server.py"));
    let (_peer, port) = announced(command);
    our_client_against(port);
    // asyncio keeps the connection half-open after FIN: --half-close works.
    let input = random_bytes(1 << 20, 9);
    let out = client_with_stdin(
        &[
            "--stdin",
            "--half-close",
            "--connect",
            &format!("tcp:127.0.0.1:{port}"),
        ],
        input.clone(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout == input);
}

#[test]
fn our_client_against_socat() {
    if !have("socat") {
        return;
    }
    let port = free_port();
    let mut command = Command::new("socat");
    command.args([
        &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
        "EXEC:cat",
    ]);
    let _peer = on_port(command, port);
    our_client_against(port);
}

#[test]
fn our_client_against_ncat() {
    if !have("ncat") {
        return;
    }
    let port = free_port();
    let mut command = Command::new("ncat");
    command.args([
        "-l",
        "127.0.0.1",
        &port.to_string(),
        "-k",
        "--sh-exec",
        "cat",
    ]);
    let _peer = on_port(command, port);
    our_client_against(port);
}

#[test]
fn our_client_against_node() {
    if !have("node") {
        return;
    }
    let mut command = Command::new("node");
    command.arg(peer_script("node_echo_server.js"));
    let (_peer, port) = announced(command);
    our_client_against(port);
}

#[test]
fn twisted_clients_against_our_server() {
    each_io(|_io| {
        let Some(python) = twisted_python() else {
            return;
        };
        let server = Server::start(&[]);
        let port = server.port.to_string();
        let client = peer_script("twisted_echo_client.py");
        for (connections, size) in [("10", "12"), ("3", "1048576")] {
            let out = Command::new(&python)
                .args([&client, &port, connections, size])
                .output()
                .unwrap();
            assert_eq!(
                text(&out.stdout).trim(),
                format!("ok {connections}"),
                "{}",
                text(&out.stderr)
            );
        }
    });
}

#[test]
fn asyncio_clients_against_our_server() {
    each_io(|_io| {
        if !have("python3") {
            return;
        }
        let server = Server::start(&[]);
        let port = server.port.to_string();
        // Big writes then a half-close (our server flushes before its FIN), and
        // one-byte writes waiting for every byte.
        for args in [
            ["1048576", "65536", "eof"],
            ["3000", "1", "wait"],
            ["3000", "1", "eof"],
        ] {
            let out = Command::new("python3")
                .arg(peer_script("asyncio_echo_client.py"))
                .arg(&port)
                .args(args)
                .output()
                .unwrap();
            assert_eq!(
                text(&out.stdout).trim(),
                "ok",
                "{args:?}: {}",
                text(&out.stderr)
            );
        }
    });
}

/// Runs a command-line client with `input` on standard input; returns what
/// it printed.
fn pipe_through(mut command: Command, input: &[u8]) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("echo-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("in-{}", input.len()));
    std::fs::write(&file, input).unwrap();
    let out = command
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    out.stdout
}

#[test]
fn socat_and_ncat_as_clients_of_our_server() {
    each_io(|_io| {
        let server = Server::start(&[]);
        let input = random_bytes(1 << 20, 13);
        if have("socat") {
            let mut socat = Command::new("socat");
            socat.args(["-t", "10", "-", &format!("TCP:127.0.0.1:{}", server.port)]);
            assert!(
                pipe_through(socat, &input) == input,
                "socat got a different echo"
            );
        }
        if have("ncat") {
            let mut ncat = Command::new("ncat");
            ncat.args(["127.0.0.1", &server.port.to_string()]);
            assert!(
                pipe_through(ncat, &input) == input,
                "ncat got a different echo"
            );
        }
    });
}

/// socat half-closes after its input (a FIN) and waits for the echo: a
/// server that holds echoes back (`--delay`) must send them before it
/// closes, not drop what it holds at the FIN.
#[test]
fn socat_half_closing_gets_an_echo_held_back_by_a_delay() {
    each_io(|_io| {
        if !have("socat") {
            return;
        }
        let server = Server::start(&["--delay", "300ms"]);
        let input = random_bytes(64 << 10, 17);
        let mut socat = Command::new("socat");
        socat.args(["-t", "10", "-", &format!("TCP:127.0.0.1:{}", server.port)]);
        let started = Instant::now();
        let echo = pipe_through(socat, &input);
        assert!(
            echo == input,
            "socat got {} of {} bytes back",
            echo.len(),
            input.len()
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the delay held"
        );
    });
}

#[test]
fn node_client_against_our_server() {
    each_io(|_io| {
        if !have("node") {
            return;
        }
        let server = Server::start(&[]);
        let out = Command::new("node")
            .args([
                &peer_script("node_echo_client.js"),
                &server.port.to_string(),
                "1048576",
            ])
            .output()
            .unwrap();
        assert_eq!(text(&out.stdout).trim(), "ok", "{}", text(&out.stderr));
    });
}
