//! The server under abuse: peers that never read, connection floods, running
//! out of file descriptors. Each test also checks that others are still
//! served meanwhile.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(30);

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc")
}

/// Writes until the peer stops taking bytes for `stall` (or `limit` bytes
/// went out); never reads. Returns the bytes pushed.
fn push_without_reading(stream: &mut TcpStream, limit: usize, stall: Duration) -> usize {
    stream.set_write_timeout(Some(stall)).unwrap();
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut pushed = 0;
    while pushed < limit {
        match stream.write(&chunk) {
            Ok(n) => pushed += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write failed: {e}"),
        }
    }
    pushed
}

fn seed_scenario_works(server: &Server) {
    let out = client(&["--connect", &server.connect_arg(), "--timeout", "10"]);
    assert!(
        out.status.success(),
        "others are still served: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).lines().count(), 10);
}

#[test]
fn a_peer_that_never_reads_cannot_grow_the_server() {
    each_io(|_io| {
        let server = Server::start(&[]);
        seed_scenario_works(&server); // warm up allocations
        let idle = rss_kib(server.child.id());
        let mut hog = TcpStream::connect(server.addr()).unwrap();
        let pushed = push_without_reading(&mut hog, 256 << 20, Duration::from_secs(1));
        // The kernel's socket buffers take some; our server holds at most
        // high (64 KiB) + one read (16 KiB) for this connection.
        let held = rss_kib(server.child.id()).saturating_sub(idle);
        eprintln!(
            "pushed {} KiB without reading; server RSS idle {idle} KiB, growth {held} KiB",
            pushed >> 10
        );
        assert!(
            pushed >= 80 << 10,
            "the server read at least high + one read before pausing"
        );
        assert!(
            held < 4 * 1024,
            "server grew by {held} KiB holding a never-reading peer"
        );
        seed_scenario_works(&server);
        drop(hog);
        server.wait_log("open=0", 1, LONG);
    });
}

#[test]
fn a_connection_flood_is_refused_beyond_the_limit_and_the_server_recovers() {
    each_io(|_io| {
        const LIMIT: usize = 50;
        const ATTEMPTS: usize = 600;
        let server = Server::start(&[
            "--max-connections",
            &LIMIT.to_string(),
            "--stats-interval",
            "200ms",
        ]);
        let addr = server.addr();
        let handles: Vec<_> = (0..ATTEMPTS)
            .map(|_| {
                let addr = addr.clone();
                thread::spawn(move || -> Option<TcpStream> {
                    let mut s = TcpStream::connect(&addr).ok()?;
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    // Admitted connections echo; refused ones read EOF or a reset.
                    s.write_all(b"?").ok()?;
                    let mut b = [0u8; 1];
                    match s.read(&mut b) {
                        Ok(1) => Some(s),
                        _ => None,
                    }
                })
            })
            .collect();
        let admitted: Vec<TcpStream> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(admitted.len(), LIMIT, "exactly the limit is served at once");
        // Every excess attempt was refused at once: counted exactly, though
        // warned about in full only five times (the rest in one summary).
        server.wait_counted("refused", ATTEMPTS - LIMIT, LONG);
        let log = server.log();
        let warned = log.matches("connection refused: limit reached").count();
        assert!(warned <= 5, "{warned} warnings:\n{log}");
        assert!(
            !log.contains(&format!("open={}", LIMIT + 1)),
            "never above the limit"
        );
        drop(admitted);
        server.wait_log("open=0", 1, LONG);
        seed_scenario_works(&server);
    });
}

#[test]
fn running_out_of_file_descriptors_is_survived() {
    // 32 descriptors: the runtime takes some, so accepts fail with EMFILE soon.
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!("ulimit -n 32 && exec {SERVER} --listen tcp:0:interface=127.0.0.1"),
    ]);
    let mut server = Server::spawn(command);
    let port = server.port;
    let addr = format!("127.0.0.1:{port}");
    // Far more connections than descriptors; the kernel queues them.
    let many: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    server.wait_log("accept failed; backing off", 1, LONG);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "still running after EMFILE"
    );
    drop(many);
    // Descriptors free up: the server serves again.
    let out = client(&[
        "--connect",
        &format!("tcp:127.0.0.1:{port}"),
        "-n",
        "3",
        "--retries",
        "5",
        "--timeout",
        "10",
    ]);
    assert!(
        out.status.success(),
        "served after descriptors freed: {}\n{}",
        text(&out.stderr),
        server.log()
    );
}

/// Under a real descriptor limit (`ulimit -n 256`), 1,000 connection
/// attempts at once exhaust the server's descriptors: it keeps serving the
/// connections it has, loses none of their bytes, warns about the failed
/// accepts a few times only (the rest counted into one summary), and
/// serves new clients once descriptors free up.
#[test]
fn out_of_descriptors_the_server_serves_what_it_has_and_recovers() {
    each_io(|_io| {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "ulimit -n 256 && exec \"$0\" \"$@\"",
            SERVER,
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--stats-interval",
            "1s",
        ]);
        let mut server = Server::spawn(command);
        let mut kept: Vec<TcpStream> = (0..10)
            .map(|_| TcpStream::connect(server.addr()).unwrap())
            .collect();
        for s in &mut kept {
            s.set_read_timeout(Some(LONG)).unwrap();
            s.write_all(b"k").unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
        }
        let flood: Vec<TcpStream> = (0..1_000)
            .filter_map(|_| TcpStream::connect(server.addr()).ok())
            .collect();
        server.wait_log("accept failed", 1, LONG);
        // The connections it has go on, every byte back.
        let message = random_bytes(100_000, 9);
        for s in &mut kept {
            let writer = {
                let mut w = s.try_clone().unwrap();
                let m = message.clone();
                thread::spawn(move || w.write_all(&m).unwrap())
            };
            let mut back = vec![0u8; message.len()];
            s.read_exact(&mut back).unwrap();
            writer.join().unwrap();
            assert!(
                back == message,
                "an echo changed under descriptor exhaustion"
            );
        }
        drop(flood);
        // Served again once descriptors are free.
        let start = std::time::Instant::now();
        loop {
            let out = client(&[
                "--connect",
                &server.connect_arg(),
                "-c",
                "1",
                "--timeout",
                "5s",
            ]);
            if out.status.success() {
                break;
            }
            assert!(start.elapsed() < LONG, "{}", server.log());
            thread::sleep(Duration::from_millis(100));
        }
        let log = server.log();
        let warned = log
            .lines()
            .filter(|l| l.contains("accept failed; backing off"))
            .count();
        assert!(warned <= 5, "{warned} accept warnings:\n{log}");
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "the server lives"
        );
    });
}
