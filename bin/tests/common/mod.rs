//! Helpers: start the real binaries on loopback and watch their output.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

/// A running `echo-server` whose standard error is collected.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `echo-server` on a free loopback port with extra `args`.
    pub fn start(args: &[&str]) -> Self {
        Self::start_listening(&["--listen", "tcp:0:interface=127.0.0.1"], args)
    }

    pub fn start_listening(listen: &[&str], args: &[&str]) -> Self {
        let mut command = Command::new(SERVER);
        command.args(listen).args(args);
        Self::spawn(command)
    }

    /// Runs `command` (which must exec an `echo-server`), collects its
    /// standard error and reads the port from its first line.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo-server");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut err = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the listening line");
        assert!(
            line.starts_with("listening on "),
            "unexpected first line {line:?}"
        );
        let port = line
            .split(":port=")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Self {
            child,
            port,
            stderr,
        }
    }

    pub fn connect_arg(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the server to exit, failing after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "server still running after {limit:?}\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` `times` times.
    pub fn wait_log(&self, needle: &str, times: usize, limit: Duration) {
        let start = Instant::now();
        while self.log().matches(needle).count() < times {
            assert!(
                start.elapsed() < limit,
                "log never had {times} x {needle:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `echo-client` with `args` to completion.
pub fn client(args: &[&str]) -> Output {
    Command::new(CLIENT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run echo-client")
}

/// Runs `echo-client` feeding `input` on standard input.
pub fn client_with_stdin(args: &[&str], input: Vec<u8>) -> Output {
    let mut child = Command::new(CLIENT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run echo-client");
    let mut stdin = child.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// A `echo-client --stdin` whose standard output and error are read on
/// threads (so a full pipe never stalls it) while the test feeds its input.
pub struct StdinClient {
    pub child: Child,
    pub stdin: Option<std::process::ChildStdin>,
    /// While set, standard output is not read (the client then stops
    /// reading its socket too, once its own buffers fill).
    pub stall: Arc<std::sync::atomic::AtomicBool>,
    stdout: thread::JoinHandle<Vec<u8>>,
    stderr: thread::JoinHandle<Vec<u8>>,
}

impl StdinClient {
    pub fn start(connect: &str) -> Self {
        let mut child = Command::new(CLIENT)
            .args(["--stdin", "--connect", connect])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run echo-client");
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let stall = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stalled = Arc::clone(&stall);
        let stdout = thread::spawn(move || {
            let mut v = Vec::new();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                while stalled.load(std::sync::atomic::Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(5));
                }
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => v.extend_from_slice(&buf[..n]),
                }
            }
            v
        });
        let stderr = thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        Self {
            child,
            stdin,
            stall,
            stdout,
            stderr,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for exit; returns (exit code, stdout, stderr).
    pub fn finish(mut self) -> (Option<i32>, Vec<u8>, String) {
        let status = self.child.wait().unwrap();
        drop(self.stdin.take());
        let stdout = self.stdout.join().unwrap();
        let stderr = self.stderr.join().unwrap();
        (status.code(), stdout, text(&stderr))
    }
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether something listens on TCP `port` (any address), read from the
/// kernel's socket table: a readiness check that opens no connection, so
/// nothing behind a proxy being waited for sees a probe.
pub fn listening(port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|t| {
            t.lines().skip(1).any(|line| {
                let mut fields = line.split_whitespace();
                let local = fields.nth(1).unwrap_or("");
                let state = fields.nth(1).unwrap_or("");
                state == "0A" && format!("{local} ").ends_with(&hex)
            })
        })
    })
}

/// Waits until something listens on TCP `port` ([`listening`]).
pub fn wait_listening(port: u16, limit: Duration) {
    let start = Instant::now();
    while !listening(port) {
        assert!(
            start.elapsed() < limit,
            "nothing listened on port {port} within {limit:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port nobody listens on.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Whether a tool is on the PATH; when `ECHO_REQUIRE_PEERS` is set (CI), a
/// missing tool fails the test instead of skipping it.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("ECHO_REQUIRE_PEERS").is_none(),
            "{tool} is required here (apt-get install -y {tool})"
        );
        eprintln!("SKIPPED: {tool} is not installed (install it to run this interop test)");
    }
    found
}

/// Runs a Python script with the server's port as its argument; returns
/// what it printed on standard output, trimmed, and its standard error.
pub fn python(script: &str, port: u16) -> (String, String) {
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .output()
        .expect("run python3");
    (text(&out.stdout).trim().to_owned(), text(&out.stderr))
}

/// Each argument list makes `binary` exit 2 (a usage error).
pub fn assert_usage_errors(binary: &str, cases: &[&[&str]]) {
    for args in cases {
        let out = Command::new(binary).args(*args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// A peer process (someone else's implementation), killed when the test
/// ends.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The path of a peer script in `bin/tests/peers`.
pub fn peer_script(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
        .display()
        .to_string()
}

/// Starts a peer server that prints `PORT <n>` when it listens.
pub fn announced(mut command: Command) -> (Peer, u16) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the peer server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the peer said {line:?}, not PORT <n>"));
    (Peer(child), port)
}
