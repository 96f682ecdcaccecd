//! The lab (`scripts/lab.sh`), short: three back ends behind a real HAProxy
//! (PROXY v2, health checks) in network namespaces, two load hosts at half
//! the rate each, one back end killed and restarted, another restarted
//! gracefully. What the load hosts report must be what HAProxy itself
//! logged: the sessions per back end, and those that ended before the run
//! did; the merged run is both hosts' requests; the thresholds' verdict is
//! the lab's exit code; nothing the lab made is left behind.
//!
//! Needs root (namespaces), `ip` and `haproxy`: skipped with a message
//! where it cannot make namespaces, unless `ECHO_REQUIRE_PEERS` is set.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Whether this machine can make network namespaces (as root).
fn can_make_namespaces() -> bool {
    let name = format!("echo-probe-{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .is_ok_and(|o| o.status.success());
    if made {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        return true;
    }
    assert!(
        std::env::var_os("ECHO_REQUIRE_PEERS").is_none(),
        "the lab needs network namespaces (root and iproute2)"
    );
    eprintln!("SKIPPED: cannot make network namespaces here (the lab needs root)");
    false
}

/// The number after `prefix` in `line` (`"backend be1: 3 connections"`,
/// prefix `"backend be1: "` gives 3).
fn number_after(line: &str, prefix: &str) -> u64 {
    line.split(prefix)
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {line:?}"))
}

#[test]
fn a_failover_seen_from_two_load_hosts_is_what_haproxy_logged() {
    if !have("ip") || !have("haproxy") || !can_make_namespaces() {
        return;
    }
    let out = std::env::temp_dir().join(format!("echo-lab-test-{}", std::process::id()));
    let bin = Path::new(SERVER).parent().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/lab.sh");
    let run = output_within(
        Command::new("bash")
            .args([script, "12", "1000"])
            .env("ECHO_BIN_DIR", bin)
            .env("LAB_OUT", &out)
            .env("LAB_THRESHOLDS", "p99<500ms,requests>=1000"),
        Duration::from_secs(90),
    );
    let report = text(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{report}\n{}",
        text(&run.stderr)
    );

    // Per back end: the load hosts' connections against HAProxy's sessions.
    let mut ours: BTreeMap<String, u64> = BTreeMap::new();
    let mut cut = 0;
    let mut requests = 0;
    for host in ["load1", "load2"] {
        let summary = std::fs::read_to_string(out.join(format!("{host}.txt"))).unwrap();
        for line in summary.lines() {
            if let Some(rest) = line.strip_prefix("backend ") {
                let name = rest.split(':').next().unwrap().to_owned();
                *ours.entry(name.clone()).or_default() +=
                    number_after(line, &format!("backend {name}: "));
            }
            if line.contains(" requests in ") && line.contains("connections x") {
                requests += number_after(line, ": ");
                if line.contains("closed early by the server") {
                    cut += number_after(line, "errors ");
                }
            }
        }
        assert!(
            summary.lines().any(|l| l.contains("cut ")),
            "the failover shows in {host}'s interval lines:\n{summary}"
        );
    }
    let mut theirs: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in report.lines().filter(|l| l.starts_with("haproxy be")) {
        let name = line["haproxy ".len()..]
            .split(':')
            .next()
            .unwrap()
            .to_owned();
        let sessions = number_after(line, &format!("haproxy {name}: "));
        let early = number_after(line, "sessions, ");
        theirs.insert(name, (sessions, early));
    }
    let sessions: BTreeMap<String, u64> = theirs.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    assert_eq!(
        ours, sessions,
        "connections per back end, ours against HAProxy's log:\n{report}"
    );
    let early: u64 = theirs.values().map(|v| v.1).sum();
    assert_eq!(
        cut, early,
        "connections the load hosts saw closed early against the sessions HAProxy saw end before the run did:\n{report}"
    );
    assert!(
        theirs["be1"].1 > 0 && theirs["be2"].1 > 0 && theirs["be3"].1 == 0,
        "the killed and the restarted back ends lost connections, the third none:\n{report}"
    );
    // The merge is both hosts' runs: their requests, their cut
    // connections, every back end.
    let merged = report
        .split("2 runs merged:")
        .nth(1)
        .unwrap_or_else(|| panic!("no merged report:\n{report}"));
    let load = merged
        .lines()
        .find(|l| l.contains(" requests in "))
        .unwrap_or_else(|| panic!("no merged load line:\n{report}"));
    assert_eq!(number_after(load, ": "), requests, "{report}");
    assert!(
        load.contains(&format!("errors {cut} ({cut} closed early by the server)")),
        "{load}"
    );
    for backend in ["be1", "be2", "be3"] {
        let line = merged
            .lines()
            .find(|l| l.starts_with(&format!("backend {backend}: ")))
            .unwrap_or_else(|| panic!("no {backend} in the merge:\n{report}"));
        assert_eq!(
            number_after(line, &format!("backend {backend}: ")),
            ours[backend],
            "{line}"
        );
    }
    assert!(report.contains("✓ p99<500ms"), "{report}");
    assert!(out.join("load1-series.svg").exists());

    // Nothing left: no namespace of the lab's.
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = text(&left.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with("el")),
        "the lab left namespaces behind: {left}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
