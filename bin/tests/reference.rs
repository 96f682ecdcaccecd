//! The reference pages under `docs/reference/` against the binaries
//! themselves, so that they cannot drift: every flag each `--help` lists,
//! every endpoint keyword the parsers accept (read from their own error
//! message), every metric a live server and a live `bench` expose; and
//! every relative link of the README and `docs/` leads to a file and a
//! heading that exist. (`bin/tests/config.rs` does the same for the
//! environment variables.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(page: &str) -> String {
    std::fs::read_to_string(root().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"))
}

/// A page's tables by section: the `## ` heading above each row that
/// starts with `` | ` ``, and the row's cells.
fn rows_by_section(page: &str) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut sections: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in read(page).lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.to_owned();
        } else if line.starts_with("| `") {
            let cells = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect();
            sections.entry(section.clone()).or_default().push(cells);
        }
    }
    sections
}

/// `documented` (a page of docs/reference/) is exactly `actual` (what the
/// binaries have): the message names what is missing and what is stale.
fn assert_documented<T: Ord + std::fmt::Debug>(
    page: &str,
    documented: &BTreeSet<T>,
    actual: &BTreeSet<T>,
) {
    assert!(
        documented == actual,
        "docs/reference/{page}: missing {:?}, documented but not there {:?}",
        actual.difference(documented).collect::<Vec<_>>(),
        documented.difference(actual).collect::<Vec<_>>()
    );
}

/// The `` `--flag` `` names in a table cell.
fn long_flags(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .filter(|w| w.starts_with("--"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_flag_of_every_command_is_in_the_reference_and_no_other() {
    let sections = rows_by_section("docs/reference/flags.md");
    for (command, binary, sub) in COMMANDS {
        let in_help: BTreeSet<String> = options_in_help(binary, sub)
            .into_iter()
            .map(|o| o.flag)
            .filter(|f| f != "--help" && f != "--version")
            .collect();
        assert!(in_help.len() >= 2, "{command}: {in_help:?}");
        let rows = sections
            .get(command)
            .unwrap_or_else(|| panic!("docs/reference/flags.md has no section {command:?}"));
        let documented: BTreeSet<String> = rows.iter().flat_map(|r| long_flags(&r[0])).collect();
        assert_documented(&format!("flags.md, {command}"), &documented, &in_help);
    }
}

/// The keywords an endpoint kind takes, from the parser's own message for
/// an unknown one (`... (it takes port, interface, backlog)`).
fn keywords_accepted(role: &str, kind: &str) -> Vec<String> {
    let (binary, flag, description) = match role {
        "server" => (SERVER, "--listen", format!("{kind}:0:noSuchKeyword=1")),
        _ => (
            CLIENT,
            "--connect",
            format!("{kind}:localhost:1:noSuchKeyword=1"),
        ),
    };
    let out = output_within(Command::new(binary).args([flag, &description]), EXIT_LIMIT);
    let message = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{message}");
    let list = message
        .split("(it takes ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no keyword list in {message:?}"));
    list.split(", ").map(str::to_owned).collect()
}

#[test]
fn every_endpoint_keyword_is_in_the_reference_in_its_order() {
    let sections = rows_by_section("docs/reference/endpoints.md");
    let rows = &sections["Every keyword"];
    let kinds = [
        ("server", "tcp"),
        ("server", "tcp6"),
        ("server", "unix"),
        ("server", "ssl"),
        ("server", "udp"),
        ("client", "tcp"),
        ("client", "unix"),
        ("client", "tls"),
        ("client", "udp"),
    ];
    assert_eq!(
        rows.len(),
        kinds.len(),
        "one row per kind and role: {rows:?}"
    );
    for (role, kind) in kinds {
        let row = rows
            .iter()
            .find(|r| r[0] == format!("`{kind}`") && r[1] == role)
            .unwrap_or_else(|| panic!("no row for {role} {kind}"));
        let documented: Vec<String> = row[2]
            .split(", ")
            .map(|k| k.trim_matches('`').to_owned())
            .collect();
        assert_eq!(documented, keywords_accepted(role, kind), "{role} {kind}");
    }
}

/// GET `path` on loopback `port`; the body.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// (name, type) of every family in an exposition: its `# TYPE` lines.
fn families(exposition: &str) -> BTreeSet<(String, String)> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// (name, type) of every row in a section of the metrics page.
fn documented_metrics(section: &str) -> BTreeSet<(String, String)> {
    rows_by_section("docs/reference/metrics.md")[section]
        .iter()
        .map(|r| (r[0].trim_matches('`').to_owned(), r[1].clone()))
        .collect()
}

/// The port in a `metrics on http://127.0.0.1:PORT/metrics` line.
fn metrics_port(line: &str) -> u16 {
    line.split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
}

#[test]
fn every_metric_a_live_server_and_bench_expose_is_in_the_reference_and_no_other() {
    let mut command = Command::new(SERVER);
    command.args([
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--metrics",
        "tcp:0:interface=127.0.0.1",
    ]);
    let (server, lines) = Server::spawn_reading(command, 1);
    let exposed = families(&http_get(metrics_port(&lines[0]), "/metrics"));
    let documented = documented_metrics("echo-server");
    assert_documented("metrics.md, echo-server", &documented, &exposed);

    // A bench run's own families, and the process's (as above).
    let mut bench = Peer(
        Command::new(CLIENT)
            .args(["bench", "--connect", &server.connect_arg(), "-c", "1"])
            .args(["-d", "20s", "--metrics", "tcp:0:interface=127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = bench.0.stderr.take().unwrap();
    let mut said = String::new();
    let start = Instant::now();
    let mut byte = [0u8; 1];
    while !said.contains("/metrics") {
        assert!(
            start.elapsed() < EXIT_LIMIT,
            "bench never said where: {said}"
        );
        match stderr.read(&mut byte) {
            Ok(1) => said.push(char::from(byte[0])),
            _ => panic!("bench ended before serving metrics: {said}"),
        }
    }
    while !said.ends_with('\n') && stderr.read(&mut byte).is_ok_and(|n| n == 1) {
        said.push(char::from(byte[0]));
    }
    let exposed: BTreeSet<(String, String)> = families(&http_get(metrics_port(&said), "/metrics"))
        .into_iter()
        .filter(|(name, _)| !name.starts_with("process_"))
        .collect();
    let documented = documented_metrics("echo-client bench");
    assert_documented("metrics.md, bench", &documented, &exposed);
    drop(bench);
}

/// GitHub's anchor for a heading: lower case, punctuation dropped but `-`
/// and `_`, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md"), root().join("BENCHMARKS.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages
}

#[test]
fn every_relative_link_leads_to_a_page_and_heading_that_exist() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in text.split("](").skip(1).filter_map(|t| t.split(')').next()) {
            if target.starts_with("http") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let linked = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            assert!(
                linked.exists(),
                "{}: link {target:?} leads nowhere",
                page.display()
            );
            if !fragment.is_empty() {
                let headings: Vec<String> = std::fs::read_to_string(&linked)
                    .unwrap()
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .map(|l| anchor(l.trim_start_matches('#').trim()))
                    .collect();
                assert!(
                    headings.iter().any(|h| h == fragment),
                    "{}: link {target:?}: no such heading in {} (it has {headings:?})",
                    page.display(),
                    linked.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} links found");
}
