//! `echo-server --io`: io_uring where asked and able, a clear error where
//! asked and unable, epoll as the fallback of `auto`. io_uring is forbidden
//! for real here, by a seccomp filter (`peers/no_io_uring.c`, the way
//! Docker's default profile forbids it), not by a switch of ours.
//! The server-side tests of the other files run on both paths
//! (`common::each_io`).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `peers/no_io_uring.c`, compiled once into a temporary directory;
/// `None` without a C compiler (CI has one: `ECHO_REQUIRE_PEERS=1`).
fn no_io_uring() -> Option<PathBuf> {
    static BUILT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("echo-no-uring-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let exe = dir.join("no_io_uring");
            let built = Command::new("cc")
                .args(["-O2", "-o"])
                .arg(&exe)
                .arg(peer_script("no_io_uring.c"))
                .status()
                .is_ok_and(|s| s.success());
            if !built {
                assert!(
                    std::env::var_os("ECHO_REQUIRE_PEERS").is_none(),
                    "ECHO_REQUIRE_PEERS=1 but the seccomp helper does not build (cc)"
                );
                return None;
            }
            Some(exe)
        })
        .clone()
}

fn without_io_uring(args: &[&str]) -> Option<Command> {
    let helper = no_io_uring()?;
    let mut command = Command::new(helper);
    command.arg(SERVER).args(args);
    Some(command)
}

#[test]
fn uring_where_a_seccomp_filter_forbids_it_is_exit_1_with_the_reason() {
    let Some(mut command) =
        without_io_uring(&["--io", "uring", "--listen", "tcp:0:interface=127.0.0.1"])
    else {
        return;
    };
    let out = output_within(&mut command, EXIT_LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--io uring: io_uring is not available")
            && stderr.contains("Operation not permitted")
            && stderr.contains("seccomp"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).is_empty(),
        "nothing announced as listening"
    );
}

#[test]
fn auto_falls_back_to_epoll_saying_why_and_echoes() {
    let Some(command) = without_io_uring(&[
        "--io",
        "auto",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--batch-wait",
        "60us",
    ]) else {
        return;
    };
    let server = Server::spawn(command);
    let out = client(&["--connect", &server.connect_arg(), "-c", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.wait_log(
        "--io auto: serving on epoll, io_uring is not available",
        1,
        LONG,
    );
    assert!(server.log().contains("seccomp"), "{}", server.log());
    // The wait asked for is not there, and the log says so.
    assert!(
        server
            .log()
            .contains("--batch-wait has no effect: the server runs on epoll"),
        "{}",
        server.log()
    );
}

#[test]
fn auto_and_the_environment_take_io_uring_where_it_runs() {
    if !io_models().contains(&"uring") {
        return;
    }
    let mut command = Command::new(SERVER);
    command
        .args(["--io", "auto", "--listen", "tcp:0:interface=127.0.0.1"])
        .args(["--listen", "udp:0:interface=127.0.0.1"]);
    let (server, more) = Server::spawn_reading(command, 1);
    let listening = std::iter::once(format!("port {}", server.port))
        .chain(more.iter().cloned())
        .collect::<Vec<_>>();
    assert!(
        more[0].starts_with("listening on udp:") && !more[0].contains("io_uring"),
        "udp stays on epoll: {listening:?}"
    );
    let out = client(&["--connect", &server.connect_arg()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(server);

    // ECHO_IO, as a container would set it; `Server::spawn` checks the
    // listening line says io_uring.
    let mut command = Command::new(SERVER);
    command.env("ECHO_IO", "uring").args([
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--workers",
        "2",
    ]);
    let mut server = Server::spawn(command);
    let out = client(&["--connect", &server.connect_arg(), "-c", "20"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.signal("TERM");
    assert!(server.wait_exit(EXIT_LIMIT).success());
    assert!(server.log().contains("accepted=20"), "{}", server.log());
}

#[test]
fn the_stats_line_counts_io_uring_traffic() {
    each_io(|io| {
        let server = Server::start(&["--stats-interval", "100ms"]);
        let out = client(&["--connect", &server.connect_arg(), "-c", "2"]);
        assert!(out.status.success(), "{io}: {}", text(&out.stderr));
        // Two clients of "hello server" (12 bytes each), both ways.
        server.wait_counted("bytes_in", 24, LONG);
        server.wait_counted("bytes_out", 24, LONG);
        server.wait_counted("accepted", 2, LONG);
    });
}

#[test]
fn io_values_and_endpoints_io_uring_does_not_serve_are_usage_errors() {
    assert_usage_errors(
        SERVER,
        &[
            &["--io", "kqueue"],
            &["--io", ""],
            &["--io", "uring", "--listen", "udp:0"],
            &[
                "--io",
                "uring",
                "--listen",
                "unix:/tmp/echo-never-bound.sock",
            ],
            &[
                "--io",
                "uring",
                "--listen",
                "ssl:0,unix:/tmp/echo-never-bound.sock",
                "--self-signed",
            ],
        ],
    );
    let out = output_within(
        Command::new(SERVER).args(["--io", "uring", "--listen", "udp:0"]),
        EXIT_LIMIT,
    );
    assert!(
        text(&out.stderr).contains(
            "--io uring serves tcp: and ssl: endpoints (and their haproxy: forms), and udp:port=0:interface=0.0.0.0 is not one"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = output_within(Command::new(SERVER).env("ECHO_IO", "iocp"), EXIT_LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("[possible values: epoll, uring, auto]"));
}

/// `--batch-wait`: while completions come fast, a turn waits for several
/// of them, and every echo still comes back whole and in order. The
/// longest window (10 ms) makes any load fast enough to start the waiting,
/// whatever this machine's speed; where the kernel lacks what it needs
/// (6.12), the server says so instead.
#[test]
fn batched_turns_still_echo_every_byte() {
    if !io_models().contains(&"uring") {
        return;
    }
    let server = Server::start(&["--io", "uring", "--batch-wait", "10ms", "-vv"]);
    let out = client(&[
        "bench",
        "--connect",
        &server.connect_arg(),
        "-c",
        "20",
        "-s",
        "700",
        "-d",
        "1",
        "-w",
        "0",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("\"errors\":0,"), "{report}");
    assert!(!report.contains("\"requests\":0,"), "{report}");
    let log = server.log();
    assert!(
        log.contains("turns now wait for several")
            || log.contains("--batch-wait has no effect here: it needs Linux 6.12"),
        "{log}"
    );
}

#[test]
fn batch_wait_out_of_range_or_on_epoll_is_a_usage_error() {
    assert_usage_errors(
        SERVER,
        &[
            &["--io", "uring", "--batch-wait", "11ms"],
            &["--io", "uring", "--batch-wait", "500ns"],
            &["--io", "uring", "--batch-wait", "-1"],
            &["--io", "uring", "--batch-wait", "soon"],
            &["--batch-wait", "60us"],
            &["--io", "epoll", "--batch-wait", "60us"],
        ],
    );
    let out = output_within(
        Command::new(SERVER).env("ECHO_SERVER_BATCH_WAIT", "60us"),
        EXIT_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("--batch-wait is a wait of the io_uring loop, and --io epoll has none"),
        "{}",
        text(&out.stderr)
    );
}

const LONG: Duration = Duration::from_secs(30);

/// The context switches of `pid`'s thread named `name` so far.
fn switches(pid: u32, name: &str) -> Option<u64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = task.ok()?.path();
        if std::fs::read_to_string(dir.join("comm")).ok()?.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        return status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse().ok());
    }
    None
}

/// An idle ring sleeps in the kernel until something happens: no timer
/// wakes it (it polled every 50 ms, 20 wake-ups a second, before the
/// server woke it through an eventfd), and it still notices a shutdown at
/// once.
#[test]
fn an_idle_ring_sleeps_and_still_hears_the_shutdown() {
    if !io_models().contains(&"uring") {
        return;
    }
    let mut command = Command::new(SERVER);
    command.args(["--io", "uring", "--listen", "tcp:0:interface=127.0.0.1"]);
    let mut server = Server::spawn(command);
    let pid = server.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let before = switches(pid, "uring-0").expect("the ring's thread");
    std::thread::sleep(Duration::from_secs(2));
    let after = switches(pid, "uring-0").expect("the ring's thread");
    assert!(
        after - before <= 2,
        "an idle ring woke {} times in 2 s",
        after - before
    );
    let out = client(&["--connect", &server.connect_arg()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let asked = std::time::Instant::now();
    server.signal("TERM");
    assert!(server.wait_exit(EXIT_LIMIT).success());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "took {:?} to stop",
        asked.elapsed()
    );
}
