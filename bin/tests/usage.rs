//! What a new user trips on, each pinned: the client reports a timeout at
//! the timeout, bounds its connections, names itself, and every bad value
//! gets a message saying what is wrong.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_timeout_is_reported_at_the_timeout_not_after_a_linger() {
    // Listens (so the connect succeeds) but never reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let out = client(&[
        "--connect",
        &format!("tcp:127.0.0.1:{port}"),
        "-c",
        "1",
        "--timeout",
        "0.5",
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("timed out: no progress for 500ms"),
        "{}",
        text(&out.stderr)
    );
    // It used to take the timeout plus a 2 s lingering close.
    assert!(
        took < Duration::from_millis(1_500),
        "reported after {took:?}"
    );
}

#[test]
fn many_connections_run_a_bounded_number_at_a_time() {
    let server = Server::start(&[]);
    let out = client(&[
        "--connect",
        &server.connect_arg(),
        "-c",
        "2000",
        "--concurrency",
        "50",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 2000);
    assert!(!text(&out.stderr).contains("Too many open files"));
    // Against a server that accepts but never answers, exactly 50 are open:
    // the rest wait their turn.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut waiting = Peer(
        Command::new(CLIENT)
            .args(["--connect", &format!("tcp:127.0.0.1:{port}")])
            .args(["-c", "2000", "--concurrency", "50", "--timeout", "10"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1_000));
    let open = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let _ = waiting.0.kill();
    let _ = waiting.0.wait();
    assert_eq!(open, 50, "connections open at once");
    for too_many in ["10000001", "1000000000000"] {
        let out = client(&["-c", too_many]);
        assert_eq!(out.status.code(), Some(2), "-c {too_many}");
        assert!(text(&out.stderr).contains("is more than 10000000"));
    }
}

#[test]
fn each_binary_names_itself_in_its_version() {
    for (binary, name) in [(SERVER, "echo-server"), (CLIENT, "echo-client")] {
        let out = Command::new(binary).arg("--version").output().unwrap();
        assert!(out.status.success());
        assert!(
            text(&out.stdout).starts_with(&format!("{name} ")),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn bad_values_get_messages_that_say_what_is_wrong() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            SERVER,
            &["--udp-rate", "fast"],
            "is not a whole number of datagrams per second from 0 (no limit)",
        ),
        (
            SERVER,
            &["--idle-timeout", "0"],
            "is not a duration above 0",
        ),
        (
            SERVER,
            &["--listen", "tcp6:port=8888:interface=::1"],
            "escape the colons of an IPv6 address",
        ),
        (
            SERVER,
            &["--listen", "tcp:8888:interface=127.0.0.1:"],
            "ends with ':'",
        ),
        (
            SERVER,
            &["--listen", "unix:/tmp/x.sock:mode=7777"],
            "octal permission bits up to 777",
        ),
        (
            CLIENT,
            &["--connect", "tcp:8888"],
            "needs a host before the port: tcp:localhost:8888",
        ),
        (CLIENT, &["--timeout", "0"], "is not a duration above 0"),
        (CLIENT, &["--size", "0"], "is not a size of at least 1 byte"),
        (CLIENT, &["bench", "-l", "64"], "unexpected argument '-l'"),
        (
            SERVER,
            &["--listen", "ssl:8443:sslmethod=TLSv1_METHOD"],
            "TLS 1.0 and 1.1 are not offered",
        ),
        (
            SERVER,
            &["--handshake-timeout", "0"],
            "is not a duration above 0",
        ),
        (
            CLIENT,
            &["--connect", "tls:localhost"],
            "tls endpoint is missing its port",
        ),
        (
            CLIENT,
            &["--connect", "tls:localhost:8443:privateKey=k.pem"],
            "privateKey is the key of a client certificate",
        ),
        (
            CLIENT,
            &["--connect", "tcp:localhost:8888", "--insecure"],
            "--insecure is for tls: endpoints",
        ),
        (
            CLIENT,
            &["bench", "--connect", "tcp:localhost:8888", "--insecure"],
            "--insecure is for tls: endpoints",
        ),
    ];
    for (binary, args, message) in cases {
        let out = Command::new(binary).args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn tls_files_that_are_missing_or_wrong_fail_with_the_file_named() {
    let dir = std::env::temp_dir().join(format!("echo-usage-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let not_pem = not_pem.display().to_string();
    let cases: &[(&str, Vec<String>, String)] = &[
        (
            SERVER,
            vec![
                "--listen".into(),
                "ssl:0:interface=127.0.0.1:privateKey=/nonexistent/k.pem".into(),
            ],
            "ssl:0: cannot read /nonexistent/k.pem: No such file or directory".into(),
        ),
        (
            SERVER,
            vec![
                "--listen".into(),
                format!("ssl:0:interface=127.0.0.1:privateKey={not_pem}"),
            ],
            format!("{not_pem} holds no PEM certificate"),
        ),
        // --self-signed misused is a usage error (exit 2): answers.rs.
        (
            CLIENT,
            vec![
                "--connect".into(),
                format!("tls:localhost:1:trustRoots={not_pem}"),
            ],
            format!("TLS setup: {not_pem} holds no PEM certificate"),
        ),
        (
            CLIENT,
            vec![
                "bench".into(),
                "--connect".into(),
                "tls:localhost:1:certificate=/nonexistent/c.pem".into(),
            ],
            "TLS setup: cannot read /nonexistent/c.pem".into(),
        ),
    ];
    for (binary, args, message) in cases {
        let out = Command::new(binary).args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains(message.as_str()), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    }
}

/// The server's log after it served one echo with `var` set to `value`.
fn log_serving_with(var: &str, value: &str) -> String {
    let mut command = Command::new(SERVER);
    command
        .env(var, value)
        .args(["--listen", "tcp:0:interface=127.0.0.1"]);
    let server = Server::spawn(command);
    let out = client(&["--connect", &server.connect_arg(), "-c", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.wait_log("connection lost", 1, Duration::from_secs(10));
    server.log()
}

#[test]
fn an_invalid_rust_log_warns_and_falls_back() {
    let log = log_serving_with("RUST_LOG", "echo=verbose[");
    assert!(
        log.contains("warning: ignoring RUST_LOG=\"echo=verbose[\""),
        "{log}"
    );
    assert!(log.contains("connection made"), "still logs at info: {log}");
}

/// tokio panics on a worker count it cannot read; the server says which
/// value it ignored and serves with one worker per core.
#[test]
fn an_invalid_tokio_worker_count_warns_and_serves() {
    let log = log_serving_with("TOKIO_WORKER_THREADS", "lots");
    assert!(
        log.contains("warning: ignoring TOKIO_WORKER_THREADS=\"lots\""),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn verbose_shows_each_echo_and_retries_say_how_many_attempts() {
    let server = Server::start(&[]);
    let out = client(&["--connect", &server.connect_arg(), "-c", "2", "-v"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stderr).matches("echo complete").count(),
        2,
        "{}",
        text(&out.stderr)
    );
    let out = client(&["--connect", &server.connect_arg(), "-c", "2", "-q"]);
    assert_eq!(text(&out.stderr), "");

    let port = free_port();
    let out = client(&[
        "--connect",
        &format!("tcp:127.0.0.1:{port}"),
        "-c",
        "1",
        "--retries",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("connection refused by 127.0.0.1:")
            && text(&out.stderr).contains("(gave up after 3 attempts)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn size_sends_a_generated_message_of_that_size() {
    let server = Server::start(&[]);
    let out = client(&[
        "--connect",
        &server.connect_arg(),
        "-c",
        "3",
        "-s",
        "100000",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "> from server: 100000 bytes\n".repeat(3));
}

#[test]
fn workers_share_one_port_and_shut_down_cleanly() {
    let mut server = Server::start(&["--workers", "3"]);
    let out = client(&["--connect", &server.connect_arg(), "-c", "300"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 300);
    let out = client(&[
        "bench",
        "--connect",
        &server.connect_arg(),
        "-c",
        "12",
        "-r",
        "3000",
        "-w",
        "0",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(20)).code(), Some(0));
    assert!(server.log().contains("accepted=312"), "{}", server.log());
    let out = Command::new(SERVER)
        .args(["--workers", "1025"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
