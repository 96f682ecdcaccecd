//! The container image (`Containerfile`, `scripts/image.sh`): built as a
//! user builds it, run with podman, verified through, and stopped with
//! SIGTERM in the middle of a transfer.
//!
//! Skipped where podman is missing, unless `ECHO_REQUIRE_PEERS` is set
//! (`.ci/run` installs it). The script makes a release build (minutes the
//! first time, seconds after); podman runs with runc, host networking and
//! explicit limits, as this machine needs (crun cannot set RLIMIT_NOFILE
//! here).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// At most this many bytes uncompressed (issue #40's target).
const MAX_IMAGE_BYTES: u64 = 20_000_000;

/// How long building the image may take (a cold release build included).
const BUILD_LIMIT: Duration = Duration::from_secs(1200);

/// A tag and a container name of this test's own, removed when it ends
/// however it ends (before the `podman run` that started the container is
/// itself ended: declared first, dropped last).
struct Podman {
    tag: String,
    name: String,
}

impl Drop for Podman {
    fn drop(&mut self) {
        for args in [
            vec!["rm", "--force", "--time", "0", self.name.as_str()],
            vec!["rmi", "--force", self.tag.as_str()],
        ] {
            let _ = Command::new("podman")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn podman(args: &[&str]) -> String {
    let out = output_within(Command::new("podman").args(args), EXIT_LIMIT);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_owned()
}

fn http_status(port: u16, path: &str) -> u16 {
    http_get(port, path).0
}

/// The status and the body of `GET path` (0 and nothing when it fails).
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// Waits (at most `limit`) until the server in the container has accepted
/// `n` connections, by its own metrics: the container's standard error
/// reaches the test through podman's attach, which a loaded machine can
/// hold back for seconds.
fn wait_accepted(port: u16, n: u64, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let (_, body) = http_get(port, "/metrics");
        let accepted = body
            .lines()
            .find(|l| l.starts_with("echo_connections_accepted_total "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if accepted >= n as f64 {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!("{accepted} connections accepted, not {n}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_image_is_small_runs_as_nobody_echoes_and_drains_on_sigterm() {
    if !have("podman") {
        return;
    }
    let id = std::process::id();
    let names = Podman {
        tag: format!("localhost/echo:test-{id}"),
        name: format!("echo-image-test-{id}"),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/image.sh");
    let started = Instant::now();
    let built = output_within(Command::new(script).arg(&names.tag), BUILD_LIMIT);
    assert!(
        built.status.success(),
        "scripts/image.sh: {}{}",
        text(&built.stdout),
        text(&built.stderr)
    );
    eprintln!(
        "image built in {:?}: {}",
        started.elapsed(),
        text(&built.stdout).trim()
    );

    let size: u64 = podman(&["image", "inspect", "--format", "{{.Size}}", &names.tag])
        .parse()
        .unwrap();
    assert!(size <= MAX_IMAGE_BYTES, "the image is {size} bytes");
    let config = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{.Config.Entrypoint}} {{.Config.Env}}",
        &names.tag,
    ]);
    assert!(
        config.starts_with("65534:65534 [/usr/local/bin/echo-server]"),
        "{config}"
    );
    assert!(
        config.contains("ECHO_SERVER_LISTEN=tcp:8888:interface=0.0.0.0"),
        "{config}"
    );

    // On loopback ports of the test's choosing (host networking: this
    // machine's podman has no other), configured from the environment as a
    // user would.
    let metrics = free_port();
    let mut run = Command::new("podman");
    run.args(["--runtime", "runc", "run", "--rm", "--name", &names.name])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args(["--network", "host"])
        .args(["--env", "ECHO_SERVER_LISTEN=tcp:0:interface=127.0.0.1"])
        .args([
            "--env",
            &format!("ECHO_SERVER_METRICS=tcp:{metrics}:interface=127.0.0.1"),
        ])
        .args([&names.tag, "--grace", "30s"]);
    let mut server = Server::spawn(run);
    wait_listening(metrics, Duration::from_secs(10));
    assert_eq!(http_status(metrics, "/readyz"), 200);
    // PID 1 of the container runs as nobody (no user namespace here, so
    // the host sees the same uid).
    // (podman records the PID a moment after the process starts: 0 until then.)
    let asked = Instant::now();
    let pid = loop {
        let out = output_within(
            Command::new("podman").args([
                "inspect",
                "--type",
                "container",
                "--format",
                "{{.State.Pid}}",
                &names.name,
            ]),
            EXIT_LIMIT,
        );
        let pid = text(&out.stdout).trim().to_owned();
        if !matches!(pid.as_str(), "0" | "") {
            break pid;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "no PID for the container: {}\n{}",
            text(&out.stderr),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("PID {pid:?} of the container: {e}"));
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().nth(1), Some("65534"), "{uid}");
    let version = podman(&[
        "exec",
        &names.name,
        "/usr/local/bin/echo-client",
        "--version",
    ]);
    assert!(version.starts_with("echo-client "), "{version}");

    // echo-client's own verification, through the container.
    let out = client(&[
        "--connect",
        &server.connect_arg(),
        "--connections",
        "20",
        "--size",
        "100000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A transfer under way when SIGTERM reaches PID 1: it goes on, and
    // every byte comes back.
    let input = random_bytes(4 << 20, 40);
    let (first, second) = input.split_at(input.len() / 2);
    let mut transfer = StdinClient::start(&server.connect_arg());
    transfer.write(first);
    if let Err(e) = wait_accepted(metrics, 21, Duration::from_secs(20)) {
        panic!("{e}\n{}", server.log());
    }
    podman(&["kill", "--signal", "TERM", &names.name]);
    // Not ready from the signal on, while the transfer goes on.
    let asked = Instant::now();
    while http_status(metrics, "/readyz") != 503 {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "/readyz did not turn 503 after SIGTERM\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    transfer.write(second);
    transfer.close_stdin();
    let (code, echoed, stderr) = transfer.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        echoed == input,
        "{} of {} bytes came back",
        echoed.len(),
        input.len()
    );
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(
        server.log().contains("all connections finished; bye"),
        "{}",
        server.log()
    );
    eprintln!("whole test: {:?}", started.elapsed());
}
