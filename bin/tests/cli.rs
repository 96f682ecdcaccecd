//! The binaries, end to end on loopback.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(20);

#[test]
fn the_seed_scenario_ten_clients_say_hello() {
    each_io(|_io| {
        let server = Server::start(&[]);
        // `localhost` may resolve to ::1 first; the client must fall back.
        let out = client(&["--connect", &format!("tcp:localhost:{}", server.port)]);
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert_eq!(stdout.lines().count(), 10, "{stdout}");
        assert!(
            stdout.lines().all(|l| l == "> from server: hello server"),
            "{stdout}"
        );
        assert_eq!(text(&out.stderr), "");
        server.wait_log("connection lost", 10, LONG);
        let log = server.log();
        assert_eq!(log.matches("connection made").count(), 10);
        assert!(log.contains("reason=closed cleanly received=12"), "{log}");
        assert!(log.contains("open=0"), "{log}");
    });
}

#[test]
fn stdin_streams_8_mib_of_binary_data_exactly() {
    let server = Server::start(&[]);
    let input = random_bytes(8 << 20, 7);
    let out = client_with_stdin(
        &["--stdin", "--connect", &server.connect_arg()],
        input.clone(),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input, "echoed bytes differ");
    assert_eq!(text(&out.stderr), "", "nothing but the echo, and no noise");
}

#[test]
fn stdin_with_a_banner_names_the_back_end_and_echoes_the_rest() {
    each_io(|_io| {
        let server = Server::start(&["--banner", "pod-a"]);
        let out = client_with_stdin(
            &[
                "--stdin",
                "--banner",
                "-v",
                "--connect",
                &server.connect_arg(),
            ],
            b"hello".to_vec(),
        );
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        assert_eq!(out.stdout, b"hello", "the echo only, not the banner line");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("backend=pod-a"), "{stderr}");
    });
}

#[test]
fn stdin_with_empty_input_succeeds() {
    let server = Server::start(&[]);
    let out = client_with_stdin(&["--stdin", "--connect", &server.connect_arg()], Vec::new());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

#[test]
fn many_concurrent_clients_with_a_long_message() {
    let server = Server::start(&[]);
    let message = "x".repeat(5_000);
    let out = client(&[
        "--connect",
        &server.connect_arg(),
        "-n",
        "200",
        "-m",
        &message,
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let expected = format!("> from server: {message}");
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| *l == expected).count(), 200);
    server.wait_log("connection lost", 200, LONG);
}

#[test]
fn max_connections_refuses_the_excess_and_recovers() {
    each_io(|_io| {
        let server = Server::start(&["--max-connections", "1"]);
        let mut holder = TcpStream::connect(server.addr()).unwrap();
        holder.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        holder.read_exact(&mut byte).unwrap(); // admitted and served
        let out = client(&[
            "--connect",
            &server.connect_arg(),
            "-n",
            "1",
            "--timeout",
            "5",
        ]);
        assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with("echo-client: connection 1: "),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        server.wait_log("connection refused: limit reached", 1, LONG);
        drop(holder);
        server.wait_log("open=0", 1, LONG);
        let out = client(&["--connect", &server.connect_arg(), "-n", "1"]);
        assert!(
            out.status.success(),
            "a slot freed up: {}",
            text(&out.stderr)
        );
    });
}

#[test]
fn idle_timeout_closes_a_silent_connection() {
    each_io(|_io| {
        let server = Server::start(&["--idle-timeout", "0.3"]);
        let mut silent = TcpStream::connect(server.addr()).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 8];
        assert_eq!(silent.read(&mut buf).unwrap(), 0, "the server closed it");
        assert!(start.elapsed() >= Duration::from_millis(250));
        server.wait_log("reason=lost: timed out", 1, LONG);
        server.wait_log("open=0", 1, LONG);
    });
}

#[test]
fn shutdown_lets_running_transfers_finish_then_exits_0() {
    each_io(|_io| {
        let mut server = Server::start(&[]);
        let mut client = StdinClient::start(&server.connect_arg());
        let input = random_bytes(1 << 20, 3);
        client.write(&input[..1 << 19]);
        server.wait_log("connection made", 1, LONG);
        server.signal("TERM");
        server.wait_log("shutting down", 1, LONG);
        thread::sleep(Duration::from_millis(200));
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "still serving the open transfer"
        );
        assert!(
            TcpStream::connect(server.addr()).is_err(),
            "no longer accepting"
        );
        client.write(&input[1 << 19..]);
        client.close_stdin();
        let (code, stdout, stderr) = client.finish();
        assert_eq!(code, Some(0), "stderr: {stderr}");
        assert!(stdout == input, "the transfer completed byte for byte");
        assert_eq!(server.wait_exit(LONG).code(), Some(0));
        assert!(server.log().contains("all connections finished"));
    });
}

#[test]
fn grace_expiry_flushes_what_was_read_then_closes() {
    each_io(|_io| {
        let mut server = Server::start(&["--grace", "0.5"]);
        let mut client = StdinClient::start(&server.connect_arg());
        let input = random_bytes(100_000, 5);
        client.write(&input);
        server.wait_log("connection made", 1, LONG);
        thread::sleep(Duration::from_millis(300)); // let the echo arrive
        server.signal("TERM");
        // The client's input stays open: the transfer is still running.
        assert_eq!(server.wait_exit(LONG).code(), Some(0));
        let (code, stdout, stderr) = client.finish();
        assert_eq!(code, Some(1));
        assert!(stdout == input, "every byte the server read came back");
        assert_eq!(
            stderr.trim(),
            "echo-client: truncated: sent 100000 bytes, received 100000 before the server closed"
        );
        let log = server.log();
        assert!(log.contains("grace period expired"), "{log}");
        assert!(
            log.contains("reason=lost: server shut down received=100000"),
            "the server ended it, not the client: {log}"
        );
    });
}

#[test]
fn grace_expiry_while_the_client_keeps_sending_loses_no_echo() {
    each_io(|_io| {
        // Closing a socket with unread input sends RST, which can destroy echoes
        // still in flight to the client; the server half-closes and drains
        // instead, so the client gets every byte the server read.
        let mut server = Server::start(&["--grace", "0.3"]);
        let mut client = StdinClient::start(&server.connect_arg());
        let mut stdin = client.stdin.take().unwrap();
        let input = random_bytes(64 << 20, 9);
        let feed = input.clone();
        let writer = thread::spawn(move || {
            for chunk in feed.chunks(64 << 10) {
                if stdin.write_all(chunk).is_err() {
                    break; // the client exited
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        server.wait_log("connection made", 1, LONG);
        thread::sleep(Duration::from_millis(300));
        // Stop reading echoes so they back up into the server's socket, and let
        // the grace period expire meanwhile; then read again.
        client
            .stall
            .store(true, std::sync::atomic::Ordering::SeqCst);
        server.signal("TERM");
        thread::sleep(Duration::from_millis(800));
        client
            .stall
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(server.wait_exit(LONG).code(), Some(0));
        let (code, stdout, stderr) = client.finish();
        writer.join().unwrap();
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            input.starts_with(&stdout),
            "what came back is a prefix of what was sent"
        );
        let received: usize = stderr
            .split("received ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no truncation report: {stderr}"));
        assert!(
            stderr.contains("truncated: sent"),
            "a clean truncation, not a reset: {stderr}"
        );
        assert_eq!(stdout.len(), received);
        let echoed: usize = server
            .log()
            .split("received=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("the server logged the connection's bytes");
        assert_eq!(received, echoed, "every byte the server read came back");
        assert!(received > 0);
    });
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut server = Server::start(&[]);
    let _open = TcpStream::connect(server.addr()).unwrap();
    server.wait_log("connection made", 1, LONG);
    server.signal("INT");
    server.wait_log("shutting down", 1, LONG);
    server.signal("INT");
    assert_eq!(server.wait_exit(LONG).code(), Some(130));
}

#[test]
fn refused_connection_is_exit_1_with_a_reason() {
    let port = free_port();
    let out = client(&["--connect", &format!("tcp:127.0.0.1:{port}"), "-n", "2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    for line in stderr.lines() {
        assert!(
            line.ends_with(&format!("connection refused by 127.0.0.1:{port}")),
            "{line}"
        );
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn retries_reach_a_server_that_starts_late() {
    let port = free_port();
    let connect = format!("tcp:127.0.0.1:{port}");
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        Server::start_listening(
            &["--listen", &format!("tcp:{port}:interface=127.0.0.1")],
            &[],
        )
    });
    let out = client(&["--connect", &connect, "-n", "1", "--retries", "6"]);
    let _server = late.join().unwrap();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
}

#[test]
fn bad_endpoints_and_flags_are_usage_errors() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            CLIENT,
            &["--connect", "tcp:nowhere"],
            "tcp endpoint is missing its port",
        ),
        (
            CLIENT,
            &["--connect", "carrier-pigeon:1"],
            "unknown client endpoint type",
        ),
        (CLIENT, &["-n", "0"], "is not a whole number of at least 1"),
        (CLIENT, &["--timeout", "soon"], "is not a duration"),
        (CLIENT, &["--stdin", "-m", "x"], "cannot be used with"),
        (
            SERVER,
            &["--listen", "tcp:localhost:80"],
            "tcp endpoint port \"localhost\" is not valid",
        ),
        (SERVER, &["--max-connections", "-3"], "error"),
        (SERVER, &["--bogus"], "unexpected argument"),
    ];
    for (program, args, message) in cases {
        let out = Command::new(program)
            .args(*args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{program} {args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(message), "{program} {args:?}: {stderr}");
    }
}

#[test]
fn a_port_in_use_is_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(SERVER)
        .args(["--listen", &format!("tcp:{port}:interface=127.0.0.1")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on tcp:port={port}:interface=127.0.0.1:backlog=1024"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
}

/// A server that echoes only the first 5 bytes, then closes.
fn short_echo_server() -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // The client sends no FIN while it waits for its echo: read the
        // message by its length.
        let mut all = [0u8; 12];
        s.read_exact(&mut all).unwrap();
        s.write_all(&all[..5]).unwrap();
        s.shutdown(Shutdown::Both).unwrap();
    });
    (port, handle)
}

#[test]
fn a_server_closing_early_is_reported_as_truncated() {
    let (port, handle) = short_echo_server();
    let out = client(&["--connect", &format!("tcp:127.0.0.1:{port}"), "-n", "1"]);
    handle.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "echo-client: connection 1: truncated: sent 12 bytes, received 5 before the server closed"
    );
    assert!(out.stdout.is_empty(), "no line for a failed echo");
}

/// A server that, like Twisted's default `Protocol`, drops the echo it owes
/// when the client's FIN arrives first: it reads the message, waits, and
/// echoes only if no FIN came meanwhile.
fn fin_sensitive_server(len: usize) -> (u16, thread::JoinHandle<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut message = vec![0u8; len];
        s.read_exact(&mut message).unwrap();
        thread::sleep(Duration::from_millis(200));
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let fin_first = matches!(s.read(&mut [0u8; 1]), Ok(0));
        if !fin_first {
            s.write_all(&message).unwrap();
        }
        fin_first
    });
    (port, handle)
}

#[test]
fn the_client_sends_no_fin_before_its_echo_is_complete() {
    let (port, server) = fin_sensitive_server(12);
    let connect = format!("tcp:127.0.0.1:{port}");
    let out = client(&["--connect", &connect, "-n", "1"]);
    assert!(!server.join().unwrap(), "FIN arrived before the echo");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));

    let (port, server) = fin_sensitive_server(5);
    let connect = format!("tcp:127.0.0.1:{port}");
    let out = client_with_stdin(&["--stdin", "--connect", &connect], b"hello".to_vec());
    assert!(
        !server.join().unwrap(),
        "--stdin: FIN arrived before the echo"
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout, b"hello");

    // --half-close asks for exactly that FIN, and the verdict says what it cost.
    let (port, server) = fin_sensitive_server(5);
    let connect = format!("tcp:127.0.0.1:{port}");
    let out = client_with_stdin(
        &["--stdin", "--half-close", "--connect", &connect],
        b"hello".to_vec(),
    );
    assert!(
        server.join().unwrap(),
        "--half-close sends FIN at end of input"
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("truncated: sent 5 bytes, received 0 before the server closed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_wrong_echo_is_reported_with_its_offset() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        buf[6] = b'S';
        let _ = s.write_all(&buf);
        let _ = s.read(&mut buf);
    });
    let out = client(&["--connect", &format!("tcp:127.0.0.1:{port}"), "-n", "1"]);
    handle.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "echo-client: connection 1: echo mismatch at byte offset 6: sent 0x73, received 0x53"
    );
}

#[test]
fn a_silent_server_times_the_client_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = client(&[
        "--connect",
        &format!("tcp:127.0.0.1:{port}"),
        "-n",
        "1",
        "--timeout",
        "0.3",
    ]);
    drop(listener);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .contains("connection 1: timed out: no progress for 300ms (sent 12 bytes, received 0)"),
        "{stderr}"
    );
}

#[test]
fn unix_domain_sockets_work_both_ways() {
    let dir = std::env::temp_dir().join(format!("echo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let listen = format!("unix:{}", path.display());
    let mut server = Server::start_listening(&["--listen", &listen], &[]);
    let out = client(&["--connect", &listen, "-n", "3"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 3);
    server.wait_log("connection lost", 1, LONG);
    server.signal("TERM");
    assert_eq!(server.wait_exit(LONG).code(), Some(0));
    assert!(!path.exists(), "the socket file is removed on exit");
    assert!(
        !server.log().contains("waiting for open connections"),
        "nothing was open at the signal: {}",
        server.log()
    );
    // Unix peers say what they are (Twisted's UNIXAddress), not 0.0.0.0:0.
    let log = server.log();
    let made = format!("connection made id=#1 peer=unix:(unnamed) host={listen}");
    assert!(log.contains(&made), "{log}");
    assert!(!log.contains("0.0.0.0:0"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_one_byte_high_water_mark_still_echoes_exactly() {
    each_io(|_io| {
        let server = Server::start(&["--high-water", "1"]);
        let input = random_bytes(1 << 20, 21);
        let out = client_with_stdin(
            &["--stdin", "--connect", &server.connect_arg()],
            input.clone(),
        );
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        assert!(out.stdout == input);
        let out = Command::new(SERVER)
            .args(["--high-water", "0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
    });
}

#[test]
fn verbosity_flags_and_rust_log_choose_what_is_logged() {
    let quiet = Server::start(&["-q"]);
    let verbose = Server::start(&["-v"]);
    for server in [&quiet, &verbose] {
        let out = client(&["--connect", &server.connect_arg(), "-n", "1"]);
        assert!(out.status.success());
    }
    verbose.wait_log("connection lost", 1, LONG);
    assert!(
        verbose.log().contains("data received"),
        "-v logs each read: {}",
        verbose.log()
    );
    thread::sleep(Duration::from_millis(200));
    assert!(
        !quiet.log().contains("connection made"),
        "-q hides info lines: {}",
        quiet.log()
    );
    // RUST_LOG wins over the flags.
    let mut command = Command::new(SERVER);
    command
        .args(["--listen", "tcp:0:interface=127.0.0.1", "-q"])
        .env("RUST_LOG", "debug");
    let by_env = Server::spawn(command);
    let out = client(&["--connect", &by_env.connect_arg(), "-n", "1"]);
    assert!(out.status.success());
    by_env.wait_log("data received", 1, LONG);
    // The client logs nothing by default, and its -v shows its retries.
    let out = client(&[
        "--connect",
        &format!("tcp:127.0.0.1:{}", free_port()),
        "-n",
        "1",
        "--retries",
        "1",
        "-v",
    ]);
    assert!(
        text(&out.stderr).contains("connect failed; retrying"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_closed_standard_output_is_an_error_not_a_panic() {
    // As in `echo-client | head -1`: the reader goes away before we write.
    let server = Server::start(&[]);
    for args in [
        vec!["--connect".to_string(), server.connect_arg()],
        vec![
            "bench".into(),
            "--connect".into(),
            server.connect_arg(),
            "-r".into(),
            "100".into(),
            "-w".into(),
            "0".into(),
        ],
    ] {
        let mut child = Peer(
            Command::new(CLIENT)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        drop(child.0.stdout.take()); // close the read end at once
        let status = wait_within(&mut child.0, EXIT_LIMIT);
        let mut stderr = String::new();
        let _ = std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr);
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write"), "{args:?}: {stderr}");
    }
}

#[test]
fn help_explains_endpoints_and_exit_codes() {
    for program in [SERVER, CLIENT] {
        let out = Command::new(program).arg("--help").output().unwrap();
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(help.contains("Endpoint strings"), "{help}");
        assert!(help.contains("Exit codes"), "{help}");
    }
}

#[test]
fn a_python_client_verifies_our_server() {
    if !have("python3") {
        return;
    }
    let server = Server::start(&[]);
    let script = r#"
import socket, sys, threading
data = bytes((i * 31 + i // 7) % 256 for i in range(1 << 20))
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send); t.start()
got = bytearray()
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
t.join()
print("ok" if bytes(got) == data else "mismatch %d/%d" % (len(got), len(data)))
"#;
    let (said, stderr) = python(script, server.port);
    assert_eq!(said, "ok", "stderr: {stderr}");
}
