//! Helpers: start the real binaries on loopback and watch their output.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

thread_local! {
    /// The `--io` that [`Server`]s started on this thread get (through
    /// `ECHO_IO`): set by [`each_io`].
    static IO: std::cell::Cell<&'static str> = const { std::cell::Cell::new("epoll") };
}

/// Runs `body` once per `echo-server --io` value this machine can run
/// (epoll, and io_uring where the kernel and sandbox allow it; with
/// `ECHO_REQUIRE_PEERS=1`, as in CI, they must): every [`Server`] it
/// starts runs on that path, and says so in its listening line.
pub fn each_io(body: impl Fn(&'static str)) {
    for io in io_models() {
        IO.set(io);
        eprintln!("--- with --io {io}");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(io)));
        IO.set("epoll");
        if let Err(panic) = outcome {
            eprintln!("--- failed with --io {io}");
            std::panic::resume_unwind(panic);
        }
    }
}

/// The `--io` values this machine runs: epoll, and uring if a server
/// started with it comes up on io_uring.
pub fn io_models() -> Vec<&'static str> {
    static MODELS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    MODELS
        .get_or_init(|| {
            let mut probe = Command::new(SERVER);
            probe.args(["--io", "uring", "--listen", "tcp:0:interface=127.0.0.1"]);
            let (available, why) = uring_comes_up(probe);
            if available {
                vec!["epoll", "uring"]
            } else {
                assert!(
                    std::env::var_os("ECHO_REQUIRE_PEERS").is_none(),
                    "ECHO_REQUIRE_PEERS=1 but echo-server --io uring does not run here: {why}"
                );
                eprintln!("io_uring not available here ({why}): the --io uring runs are skipped");
                vec!["epoll"]
            }
        })
        .clone()
}

/// Whether `command` (an `echo-server --io uring`) listens on io_uring;
/// else what it said.
fn uring_comes_up(command: Command) -> (bool, String) {
    let mut child = Starting::piped(command);
    let mut line = String::new();
    let _ = BufReader::new(child.child().stdout.take().unwrap()).read_line(&mut line);
    if line.contains("(io_uring)") {
        return (true, line);
    }
    let mut err = String::new();
    let _ = child
        .child()
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err);
    (false, err)
}

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
    pub fn spawn(command: Command) -> Self {
        Self::spawn_reading(command, 0).0
    }

    /// [`spawn`](Self::spawn), also returning the `more` lines the server
    /// prints after its first (another endpoint's, the metrics address).
    pub fn spawn_reading(mut command: Command, more: usize) -> (Self, Vec<String>) {
        if IO.get() != "epoll" {
            command.env("ECHO_IO", IO.get());
        }
        // Owned by a guard from the start: a failure below (no listening
        // line) must not leave the server running after the test.
        let mut child = Starting::piped(command);
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let io = IO.get();
        let mut err = child.child().stderr.take().unwrap();
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
        let mut stdout = BufReader::new(child.child().stdout.take().unwrap());
        stdout
            .read_line(&mut line)
            .expect("read the listening line");
        let mut lines = Vec::new();
        for _ in 0..more {
            let mut next = String::new();
            stdout
                .read_line(&mut next)
                .expect("read the server's lines");
            lines.push(next.trim_end().to_owned());
        }
        // The rest of standard output is read to its end, not left with no
        // reader: a server run through `podman run` (bin/tests/image.rs)
        // lost its container when podman's next write to a closed pipe
        // failed ("write /dev/stdout: broken pipe").
        thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        if !line.starts_with("listening on ") {
            let _ = child.child().wait();
            thread::sleep(Duration::from_millis(50));
            panic!(
                "unexpected first line {line:?}; standard error:\n{}",
                stderr.lock().unwrap()
            );
        }
        assert!(
            io != "uring" || line.contains("(io_uring)"),
            "asked for --io uring, got {line:?}"
        );
        let port = line
            .split(":port=")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        (
            Self {
                child: child.take(),
                port,
                stderr,
            },
            lines,
        )
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
        stop(&mut self.child);
    }
}

/// Ends a child a test started: SIGTERM first (a server then cleans up,
/// e.g. its throw-away CA file), SIGKILL if it has not exited within half
/// a second; reaped either way.
pub fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while matches!(child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_millis(500) {
            thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// How long a command a test expects to end may run: past it the test
/// fails (and the command is ended), rather than hang the suite.
pub const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// Runs `command` to its end (standard input empty), failing the test if
/// it runs past `limit`; its output, as `Command::output` gives it.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    output_fed(command, None, limit)
}

/// [`output_within`], with `input` on standard input (written on a thread
/// of its own, and closed after it).
pub fn output_fed(command: &mut Command, input: Option<Vec<u8>>, limit: Duration) -> Output {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = Peer(
        command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the command"),
    );
    if let (Some(input), Some(mut pipe)) = (input, child.0.stdin.take()) {
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .0
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .0
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the command") {
            break status;
        }
        assert!(
            start.elapsed() < limit,
            "{command:?} still running after {limit:?}"
        );
        thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Waits for `child` to exit, failing the test past `limit`.
pub fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status;
        }
        assert!(start.elapsed() < limit, "still running after {limit:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `echo-client` with `args` to completion (at most [`EXIT_LIMIT`]).
pub fn client(args: &[&str]) -> Output {
    output_within(Command::new(CLIENT).args(args), EXIT_LIMIT)
}

/// Runs `echo-client` feeding `input` on standard input (at most
/// [`EXIT_LIMIT`]).
pub fn client_with_stdin(args: &[&str], input: Vec<u8>) -> Output {
    output_fed(Command::new(CLIENT).args(args), Some(input), EXIT_LIMIT)
}

/// A `echo-client --stdin` whose standard output and error are read on
/// threads (so a full pipe never stalls it) while the test feeds its input.
pub struct StdinClient {
    /// Ended when the test ends without `finish` (a failed assertion).
    child: Starting,
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
            child: Starting::new(child),
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
        let status = self.child.child().wait().unwrap();
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

/// The sum of `field=N` over the `--stats-interval` lines of `log`: each
/// line counts since the one before, so a burst may straddle two.
pub fn stats_sum(log: &str, field: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" stats open="))
        .filter_map(|l| {
            l.split(&format!(" {field}="))
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

impl Server {
    /// Waits until the stats lines have counted `n` under `field`.
    pub fn wait_counted(&self, field: &str, n: usize, limit: Duration) {
        let start = Instant::now();
        while stats_sum(&self.log(), field) < n {
            assert!(
                start.elapsed() < limit,
                "the stats lines never counted {n} {field}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(stats_sum(&self.log(), field), n, "counted exactly once");
    }
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
        let out = output_within(Command::new(binary).args(*args), EXIT_LIMIT);
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
        stop(&mut self.0);
    }
}

/// A child owned until [`take`](Self::take)n, and ended on drop before
/// that: a test that fails while starting one leaves nothing running.
pub struct Starting(Option<Child>);

impl Starting {
    /// Starts `command` (an `echo-server`) with its standard output and
    /// error piped and no standard input.
    pub fn piped(mut command: Command) -> Self {
        Self::new(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start echo-server"),
        )
    }

    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("not taken")
    }

    pub fn take(mut self) -> Child {
        self.0.take().expect("not taken")
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            stop(child);
        }
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
    let mut child = Peer(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the peer server"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the peer said {line:?}, not PORT <n>"));
    (child, port)
}

/// Every `--help` the two binaries have, by the command a user types.
pub const COMMANDS: [(&str, &str, &[&str]); 7] = [
    ("echo-server", SERVER, &[]),
    ("echo-client", CLIENT, &[]),
    ("echo-client bench", CLIENT, &["bench"]),
    ("echo-client udp", CLIENT, &["udp"]),
    ("echo-client merge", CLIENT, &["merge"]),
    ("echo-client compare", CLIENT, &["compare"]),
    ("echo-client plot", CLIENT, &["plot"]),
];

/// One option as `--help` lists it.
pub struct HelpOption {
    /// `--listen`.
    pub flag: String,
    /// `ECHO_SERVER_LISTEN`, when it has one.
    pub env: Option<String>,
}

/// The options `binary sub --help` lists (`--help` and `--version` too),
/// read with a clean environment.
pub fn options_in_help(binary: &str, sub: &[&str]) -> Vec<HelpOption> {
    let out = output_within(
        Command::new(binary).args(sub).arg("--help").env_clear(),
        EXIT_LIMIT,
    );
    let mut options: Vec<HelpOption> = Vec::new();
    for line in text(&out.stdout).lines() {
        // An option's first line: `  -l, --listen <DESC>` or
        // `      --grace <DURATION>`, its help and env after it or on it.
        if line.starts_with("  -") || line.starts_with("      --") {
            let flag = line
                .split([',', ' '])
                .find(|w| w.starts_with("--"))
                .unwrap_or("")
                .trim_end_matches("...")
                .to_owned();
            options.push(HelpOption { flag, env: None });
        }
        if let Some(rest) = line.split("[env: ").nth(1)
            && let Some(option) = options.last_mut()
        {
            option.env = Some(rest.split('=').next().unwrap().to_owned());
        }
    }
    options
}
