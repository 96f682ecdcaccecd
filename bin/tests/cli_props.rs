//! A property over the command line: generated argument lists for both
//! binaries and every subcommand (flags read from their own `--help`, values
//! drawn from edge cases), each run bounded in time against a local server.
//! Every run exits 0, 1 or 2 as the README says (2 for usage errors, with
//! clap's `error:`), never by a signal, never with a panic, never hangs, and
//! stays within a memory bound. `CLI_CASES=N` runs more cases per mode.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The longest one run may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(20);
/// The most memory one run may hold.
const MAX_RSS_KIB: u64 = 1 << 20;

/// A flag as `--help` lists it: its long name and whether it takes a value
/// (and of what kind, by its value name).
#[derive(Debug, Clone)]
struct Flag {
    long: String,
    value: Option<String>,
}

/// Reads the flags of `binary [subcommand] --help`.
fn flags(binary: &str, sub: Option<&str>) -> Vec<Flag> {
    let mut command = Command::new(binary);
    command.args(sub).arg("--help");
    let help = text(&command.output().unwrap().stdout);
    help.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            if !line.starts_with('-') {
                return None;
            }
            let at = line.find("--")?;
            let spec = line[at + 2..].split("  ").next()?;
            let mut parts = spec.split_whitespace();
            let long = parts.next()?.trim_end_matches("...").to_owned();
            let value = parts.next().map(|v| v.trim_matches(['<', '>']).to_owned());
            (long != "help" && long != "version").then_some(Flag { long, value })
        })
        .collect()
}

/// One loopback echo server for the client runs of every test that holds
/// a [`UsesServer`]; ended when the last lets go (a static is never
/// dropped, so a server kept in one outlived the test binary).
static SHARED_SERVER: std::sync::Mutex<(usize, Option<Server>)> = std::sync::Mutex::new((0, None));

struct UsesServer;

impl UsesServer {
    fn new() -> Self {
        let mut shared = SHARED_SERVER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shared.0 += 1;
        if shared.1.is_none() {
            shared.1 = Some(Server::start(&[]));
        }
        Self
    }
}

impl Drop for UsesServer {
    fn drop(&mut self) {
        let mut shared = SHARED_SERVER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shared.0 -= 1;
        if shared.0 == 0 {
            shared.1 = None;
        }
    }
}

fn server_port() -> u16 {
    SHARED_SERVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .1
        .as_ref()
        .expect("a UsesServer is held")
        .port
}

fn values(kind: &str, role: &str) -> Vec<OsString> {
    let port = server_port();
    let strings: Vec<String> = match (kind, role) {
        ("DESC", "server") => vec![
            "tcp:0:interface=127.0.0.1".into(),
            "udp:0:interface=127.0.0.1".into(),
            format!("unix:/tmp/echo-props-{}.sock", std::process::id()),
            "tcp:0:interface=127.0.0.1:".into(),
            "tcp6:port=0:interface=::1".into(),
            "tcp:70000:interface=127.0.0.1".into(),
            "unix:".into(),
            "tcp:port=0:interface=127.0.0.1:backlog=99999999999".into(),
            String::new(),
            "pigeon:1".into(),
        ],
        ("DESC", _) => vec![
            format!("tcp:127.0.0.1:{port}"),
            format!("tcp:host=127.0.0.1:port={port}:timeout=0.5"),
            format!("udp:127.0.0.1:{port}"),
            format!("tcp:127.0.0.1:{}", free_port()),
            "unix:/nonexistent/echo.sock".into(),
            "tcp:8888".into(),
            "tcp:localhost".into(),
            "tcp::::".into(),
            String::new(),
            "pigeon:1".into(),
        ],
        // Durations stay short: a long one is a long wait on purpose (a
        // banner that never comes, under --timeout 999999999999, waited
        // past the run's bound), not a misbehaviour.
        ("SECS" | "DURATION", _) => [
            "0", "0.05", "0.3", "1", "-1", "", "x", "inf", "NaN", "1e308",
        ]
        .map(String::from)
        .to_vec(),
        // A request count runs as long as it says: only small ones here.
        ("COUNT", _) => ["0", "1", "100", "-1", "", "x", "1e3"]
            .map(String::from)
            .to_vec(),
        ("TEXT", _) => vec![
            "hello".into(),
            String::new(),
            "x".repeat(70_000),
            "--".into(),
        ],
        ("FILE.svg", _) => vec![
            "/nonexistent/plot.svg".into(),
            format!("/tmp/echo-props-{}.svg", std::process::id()),
            String::new(),
        ],
        // Rates: small ones would make a run wait on purpose.
        ("REQ/S" | "CONN/S", _) => ["0", "1000", "1e3", "-1", "", "x", "inf"]
            .map(String::from)
            .to_vec(),
        // Every other file (FILE, FILE.json, ...): under /tmp or nowhere,
        // never a bare name, which would land in the working tree (a
        // `--save 4294967296` did).
        (file, _) if file.starts_with("FILE") => vec![
            "/nonexistent/lat.hgrm".into(),
            format!("/tmp/echo-props-{}.out", std::process::id()),
            String::new(),
        ],
        // Counts, sizes and rates.
        _ => [
            "0",
            "1",
            "3",
            "-1",
            "",
            "x",
            "1e3",
            "4294967296",
            "999999999999",
            "18446744073709551616",
        ]
        .map(String::from)
        .to_vec(),
    };
    let mut values: Vec<OsString> = strings.into_iter().map(OsString::from).collect();
    // Not UTF-8. As a file to write, it goes under /tmp: a bare name would
    // land in the working tree (and did, committed by accident).
    let mut odd = Vec::new();
    if kind.starts_with("FILE") {
        odd.extend_from_slice(format!("/tmp/echo-props-{}-", std::process::id()).as_bytes());
    }
    odd.extend_from_slice(&[0xff, 0xfe, b'1']);
    values.push(OsString::from_vec(odd));
    values
}

/// Strategy: a list of flags with values for one mode.
fn arguments(
    binary: &'static str,
    sub: Option<&'static str>,
) -> impl Strategy<Value = Vec<OsString>> {
    let role = if binary == SERVER { "server" } else { "client" };
    let choices: Vec<(Flag, Vec<OsString>)> = flags(binary, sub)
        .into_iter()
        .map(|flag| {
            let pool = flag
                .value
                .as_deref()
                .map(|k| values(k, role))
                .unwrap_or_default();
            (flag, pool)
        })
        .collect();
    assert!(choices.len() >= 4, "flags read from --help: {choices:?}");
    let n = choices.len();
    proptest::collection::vec((0..n, any::<prop::sample::Index>()), 0..6).prop_map(move |picks| {
        let mut args: Vec<OsString> = sub.map(OsString::from).into_iter().collect();
        for (i, index) in picks {
            let (flag, pool) = &choices[i];
            args.push(format!("--{}", flag.long).into());
            if !pool.is_empty() {
                args.push(index.get(pool).clone());
            }
        }
        args
    })
}

/// The resident memory of `pid` in KiB, if it is still running.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `child` to its end (SIGTERM after `stop_after`, for a server),
/// watching time and memory; returns (exit code, stderr).
fn supervise(mut child: Child, stop_after: Option<Duration>) -> Result<(i32, String), String> {
    let started = Instant::now();
    let mut stderr = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut v);
        v
    });
    let mut peak = 0;
    let mut stopped = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        peak = peak.max(rss_kib(child.id()).unwrap_or(0));
        if let Some(after) = stop_after
            && !stopped
            && started.elapsed() > after
        {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            stopped = true;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {HANG:?}"));
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stderr = text(&reader.join().unwrap());
    if peak > MAX_RSS_KIB {
        return Err(format!("held {peak} KiB"));
    }
    match status.code() {
        Some(code) => Ok((code, stderr)),
        None => Err(format!("killed by a signal: {status:?}\n{stderr}")),
    }
}

/// The README's promises about exit codes, for one finished run.
fn check_exit(code: i32, stderr: &str, server_stopped: bool) -> Result<(), String> {
    if stderr.contains("panicked") {
        return Err(format!("panic: {stderr}"));
    }
    let usage = stderr.lines().any(|l| l.starts_with("error:"));
    match code {
        2 if usage => Ok(()),
        2 => Err(format!("exit 2 without a usage error: {stderr}")),
        _ if usage => Err(format!("a usage error exited {code}: {stderr}")),
        1 if stderr.trim().is_empty() => Err("exit 1 without saying why".into()),
        1 => Ok(()),
        0 if server_stopped || !stderr.contains("echo-client:") => Ok(()),
        other => Err(format!("exit {other}: {stderr}")),
    }
}

fn run_mode(binary: &'static str, sub: Option<&'static str>) {
    let _server = UsesServer::new();
    let cases = std::env::var("CLI_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&arguments(binary, sub), |mut args| {
        let is_server = binary == SERVER;
        let has = |args: &[OsString], flag: &str| args.iter().any(|a| a == flag);
        // Bound each run's own length: defaults that wait on purpose are
        // shortened (the values drawn for them stay small too).
        match sub {
            Some("bench") if has(&args, "--idle") && !has(&args, "--hold") => {
                args.extend(["--hold".into(), "0.2".into()]);
            }
            Some("bench")
                if !has(&args, "--duration")
                    && !has(&args, "--requests")
                    && !has(&args, "--idle") =>
            {
                args.extend([
                    "--duration".into(),
                    "0.3".into(),
                    "--warmup".into(),
                    "0".into(),
                ]);
            }
            Some("udp") if !has(&args, "--wait") => args.extend(["--wait".into(), "0.2".into()]),
            _ => {}
        }
        // A banner that never comes waits for the progress timeout.
        if !is_server && has(&args, "--banner") && !has(&args, "--timeout") {
            args.extend(["--timeout".into(), "0.5".into()]);
        }
        if is_server && !has(&args, "--listen") {
            args.extend(["--listen".into(), "tcp:0:interface=127.0.0.1".into()]);
        }
        if !is_server && !has(&args, "--connect") {
            let default = if sub == Some("udp") { "udp" } else { "tcp" };
            args.extend([
                "--connect".into(),
                format!("{default}:127.0.0.1:{}", server_port()).into(),
            ]);
        }
        let child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stop_after = is_server.then_some(Duration::from_millis(500));
        let outcome = supervise(child, stop_after)
            .and_then(|(code, stderr)| check_exit(code, &stderr, is_server));
        prop_assert!(
            outcome.is_ok(),
            "{binary} {args:?}: {}",
            outcome.unwrap_err()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn server_command_lines() {
    run_mode(SERVER, None);
}

#[test]
fn client_command_lines() {
    run_mode(CLIENT, None);
}

#[test]
fn bench_command_lines() {
    run_mode(CLIENT, Some("bench"));
}

#[test]
fn udp_command_lines() {
    run_mode(CLIENT, Some("udp"));
}
