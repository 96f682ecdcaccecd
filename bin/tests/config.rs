//! Configuration the way people write it: environment variables with one
//! meaning each (and the reference table of them,
//! `docs/reference/environment.md`, checked against `--help`), yes/no values as containers and systemd write them, lists
//! from the environment, one duration and one size syntax for every flag,
//! a `RUST_LOG` typo that never silences warnings, and shell completions
//! that complete after a subcommand.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(20);

/// (variable, flag, command) for every environment variable `--help`
/// names, read with a clean environment.
fn variables_in_help() -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    for (name, binary, sub) in COMMANDS {
        for option in options_in_help(binary, sub) {
            if let Some(variable) = option.env {
                rows.push((variable, option.flag, name.to_owned()));
            }
        }
    }
    rows
}

/// The reference table, as `| variable | flag | commands |` rows.
fn variables_in_reference() -> BTreeMap<String, (String, String)> {
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/reference/environment.md"
    ))
    .unwrap();
    reference
        .lines()
        .filter(|l| l.starts_with("| `ECHO_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(|c| c.trim().trim_matches('`')).collect();
            (
                cells[1].to_owned(),
                (cells[2].to_owned(), cells[3].to_owned()),
            )
        })
        .collect()
}

#[test]
fn every_variable_has_one_meaning_and_the_reference_table_matches_help() {
    let mut table: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for (variable, flag, command) in variables_in_help() {
        let entry = table
            .entry(variable.clone())
            .or_insert_with(|| (flag.clone(), Vec::new()));
        assert_eq!(
            entry.0, flag,
            "{variable} means {} in one place and {flag} in {command}",
            entry.0
        );
        entry.1.push(command);
    }
    assert!(table.len() > 60, "{table:?}");
    let expected: BTreeMap<String, (String, String)> = table
        .iter()
        .map(|(v, (flag, commands))| (v.clone(), (flag.clone(), commands.join(", "))))
        .collect();
    let reference = variables_in_reference();
    if reference != expected {
        let rows: String = expected
            .iter()
            .map(|(v, (flag, commands))| format!("| `{v}` | `{flag}` | {commands} |\n"))
            .collect();
        panic!("docs/reference/environment.md differs from --help; its table should read:\n{rows}");
    }
}

#[test]
fn yes_and_no_are_read_as_containers_and_systemd_write_them() {
    let server = Server::start(&[]);
    let bench_json = |value: &str| {
        let out = output_within(
            Command::new(CLIENT)
                .args(["bench", "--connect", &server.connect_arg()])
                .args(["-d", "100ms", "-w", "0", "-c", "1"])
                .env("ECHO_BENCH_JSON", value),
            EXIT_LIMIT,
        );
        assert!(out.status.success(), "{value}: {}", text(&out.stderr));
        text(&out.stdout).starts_with('{')
    };
    for yes in ["1", "true", "yes", "on", "TRUE"] {
        assert!(bench_json(yes), "{yes} read as no");
    }
    for no in ["0", "false", "no", "off", ""] {
        assert!(!bench_json(no), "{no:?} read as yes");
    }
    for no in ["0", "no", ""] {
        let mut peer = Command::new(SERVER)
            .env("ECHO_SERVER_SELF_SIGNED", no)
            .args(["--listen", "tcp:0:interface=127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Peer)
            .unwrap();
        // Read as yes, --self-signed without ssl: is a usage error at
        // once; read as no, it serves.
        std::thread::sleep(Duration::from_millis(300));
        assert!(peer.0.try_wait().unwrap().is_none(), "{no:?} read as yes");
    }
    let yes = output_within(
        Command::new(SERVER).env("ECHO_SERVER_SELF_SIGNED", "1"),
        EXIT_LIMIT,
    );
    assert_eq!(
        yes.status.code(),
        Some(2),
        "1 read as yes: --self-signed wants ssl:"
    );
    let bad = output_within(
        Command::new(CLIENT).env("ECHO_CLIENT_HALF_CLOSE", "maybe"),
        EXIT_LIMIT,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("not yes or no"),
        "{}",
        text(&bad.stderr)
    );
    // A count of -v from the environment: a number, or yes.
    let out = output_within(
        Command::new(CLIENT)
            .args(["--connect", &server.connect_arg(), "-c", "1"])
            .env("ECHO_CLIENT_VERBOSE", "true"),
        EXIT_LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("echo complete"),
        "-v logs each echo"
    );
}

#[test]
fn a_banner_in_the_servers_environment_does_not_reach_the_client() {
    let server = Server::start(&[]);
    let out = output_within(
        Command::new(CLIENT)
            .args(["--connect", &server.connect_arg(), "-c", "1"])
            .env("ECHO_SERVER_BANNER", "{hostname}")
            .env("ECHO_UDP_CONNECT", "udp:localhost:9"),
        EXIT_LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn lists_come_from_the_environment_comma_separated_with_spaces() {
    let mut child = Peer(
        Command::new(SERVER)
            .env(
                "ECHO_SERVER_LISTEN",
                "tcp:0:interface=127.0.0.1, udp:0:interface=127.0.0.1",
            )
            .env("ECHO_SERVER_ALLOW", "10.0.0.0/8, 127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(child.0.stdout.take().unwrap()));
    let tcp = lines.next().unwrap().unwrap();
    let udp = lines.next().unwrap().unwrap();
    let _guard = child;
    assert!(tcp.starts_with("listening on tcp:"), "{tcp}");
    assert!(udp.starts_with("listening on udp:"), "{udp}");
    let port = tcp
        .split(":port=")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    let out = client(&["--connect", &format!("tcp:127.0.0.1:{port}"), "-c", "1"]);
    assert!(
        out.status.success(),
        "127.0.0.1 is allowed: {}",
        text(&out.stderr)
    );
}

#[test]
fn every_duration_and_size_flag_takes_units_and_a_bare_number_is_seconds() {
    let server = Server::start(&[
        "--grace",
        "5s",
        "--idle-timeout",
        "1m",
        "--handshake-timeout",
        "1500ms",
        "--stats-interval",
        "1h",
        "--high-water",
        "64KiB",
    ]);
    for args in [
        &["-c", "1", "--timeout", "5s", "-s", "1KiB"][..],
        &["-c", "1", "--timeout", "2.5", "-s", "1000"],
        &[
            "bench",
            "-d",
            "300ms",
            "-w",
            "0",
            "-s",
            "1KiB",
            "-c",
            "1",
            "--timeout",
            "5s",
        ],
        &[
            "bench",
            "-d",
            "0.3",
            "-w",
            "0s",
            "--interval",
            "100ms",
            "-c",
            "1",
        ],
    ] {
        let connect = server.connect_arg();
        let mut full: Vec<&str> = Vec::new();
        let rest = if args[0] == "bench" {
            full.push("bench");
            &args[1..]
        } else {
            args
        };
        full.extend(["--connect", connect.as_str()]);
        full.extend(rest);
        let out = client(&full);
        assert!(out.status.success(), "{full:?}: {}", text(&out.stderr));
    }
    assert_usage_errors(
        SERVER,
        &[
            &["--grace", "soon"],
            &["--idle-timeout", "0s"],
            &["--stats-interval", "0"],
            &["--high-water", "64 parsecs"],
        ],
    );
    assert_usage_errors(
        CLIENT,
        &[
            &["--timeout", "0ms"],
            &["-s", "0KiB"],
            &["bench", "--hold", "0", "--idle", "1"],
            &["bench", "-d", "forever"],
        ],
    );
}

#[test]
fn a_rust_log_typo_keeps_warnings_and_says_so() {
    let server = Server::spawn({
        let mut command = Command::new(SERVER);
        command
            .args([
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--deny",
                "127.0.0.1",
            ])
            .env("RUST_LOG", "garbage!!");
        command
    });
    drop(TcpStream::connect(server.addr()));
    server.wait_log("WARN connection denied", 1, LONG);
    assert!(
        server.log().contains("RUST_LOG names \"garbage!!\""),
        "{}",
        server.log()
    );
}

#[test]
fn quiet_keeps_the_stats_lines_that_stats_interval_asked_for() {
    let server = Server::start(&["-q", "--stats-interval", "200ms"]);
    let out = client(&["--connect", &server.connect_arg(), "-c", "2"]);
    assert!(out.status.success());
    server.wait_log("stats open=", 1, LONG);
}

/// What bash completes for `words` (the last is the word being typed).
fn bash_completes(words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let (cur, prev) = (
        words[words.len() - 1],
        words
            .get(words.len().wrapping_sub(2))
            .copied()
            .unwrap_or(""),
    );
    let script = format!(
        "source <('{CLIENT}' --completions bash) && COMP_WORDS=({}) && COMP_CWORD={} && _echo_client echo-client '{cur}' '{prev}' && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words.len() - 1
    );
    let out = output_within(Command::new("bash").args(["-c", &script]), EXIT_LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn bash_completes_after_a_subcommand_and_offers_proxy_versions() {
    assert_eq!(
        bash_completes(&["echo-client", "bench", "--ra"]),
        ["--rate"]
    );
    let udp = bash_completes(&["echo-client", "udp", "--"]);
    assert!(
        udp.contains(&"--count".to_owned()) && udp.contains(&"--wait".to_owned()),
        "{udp:?}"
    );
    assert!(!udp.contains(&"--rate".to_owned()), "{udp:?}");
    assert_eq!(
        bash_completes(&["echo-client", "--send-proxy", ""]),
        ["v1", "v2"]
    );
    let registered = output_within(
        Command::new("bash").args([
            "-c",
            &format!("source <('{CLIENT}' --completions bash) && complete -p echo-client"),
        ]),
        EXIT_LIMIT,
    );
    assert!(
        text(&registered.stdout).contains("echo-client"),
        "{}",
        text(&registered.stdout)
    );
}
