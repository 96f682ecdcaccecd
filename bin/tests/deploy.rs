//! The Kubernetes manifests in `deploy/`: valid against the API's schema
//! (strictly, so a misspelt field fails), and in agreement with the
//! server they run.
//!
//! The schema check uses `kubernetes-validate` (PyPI), from the
//! repository's `.peers-venv` as `.ci/run` installs it, or from `PATH`;
//! without it those tests skip, unless `ECHO_REQUIRE_PEERS` is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifests() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    found.sort();
    assert!(found.len() >= 3, "{found:?}");
    found
}

/// The validator, if installed.
fn validator() -> Option<PathBuf> {
    let venv = repo().join(".peers-venv/bin/kubernetes-validate");
    if venv.exists() {
        return Some(venv);
    }
    have("kubernetes-validate").then(|| PathBuf::from("kubernetes-validate"))
}

/// Whether `file` passes strict validation, with no warning either (a
/// misspelt `kind` has no schema, which the validator only warns about);
/// the validator's words.
fn validates(validator: &Path, file: &Path) -> (bool, String) {
    let out = output_within(
        Command::new(validator).arg("--strict").arg(file),
        EXIT_LIMIT,
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let warned = said.lines().any(|l| l.starts_with("WARN"));
    (out.status.success() && !warned, said)
}

#[test]
fn every_manifest_passes_the_kubernetes_schema_strictly() {
    let Some(validator) = validator() else {
        return;
    };
    for file in manifests() {
        let (ok, said) = validates(&validator, &file);
        assert!(ok, "{}: {said}", file.display());
    }
}

#[test]
fn a_typo_in_a_manifest_fails_validation() {
    let Some(validator) = validator() else {
        return;
    };
    let original = std::fs::read_to_string(repo().join("deploy/echo-server.yaml")).unwrap();
    let dir = std::env::temp_dir().join(format!("echo-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (from, to) in [
        ("readinessProbe:", "readinesProbe:"),
        (
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: 30s",
        ),
        ("containerPort: 8888", "containerPort: eighty"),
        ("runAsNonRoot: true", "runAsNonroot: true"),
        ("kind: Service", "kind: Servce"),
    ] {
        assert!(original.contains(from), "{from}");
        let file = dir.join("typo.yaml");
        std::fs::write(&file, original.replacen(from, to, 1)).unwrap();
        let (ok, said) = validates(&validator, &file);
        assert!(!ok, "{from} -> {to} passed: {said}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `(name, value)` of each `- name: ECHO_...` / `value: ...` pair.
fn env_of(manifest: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = manifest.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let name = pair[0].strip_prefix("- name: ")?;
            let value = pair[1].strip_prefix("value: ")?;
            name.starts_with("ECHO_")
                .then(|| (name.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

#[test]
fn the_servers_manifests_name_real_variables_and_outwait_the_grace_period() {
    let help = text(&output_within(Command::new(SERVER).arg("--help"), EXIT_LIMIT).stdout);
    for file in manifests() {
        let manifest = std::fs::read_to_string(&file).unwrap();
        if !manifest.contains("kind: Deployment") {
            continue;
        }
        let env = env_of(&manifest);
        for (name, _) in &env {
            assert!(
                help.contains(&format!("[env: {name}=")),
                "{}: echo-server knows no {name}",
                file.display()
            );
        }
        let value = |name: &str| {
            env.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{}: no {name}", file.display()))
        };
        let grace = humantime::parse_duration(&value("ECHO_SERVER_GRACE")).unwrap();
        let kubelet: u64 = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds: "))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}: no terminationGracePeriodSeconds", file.display()));
        assert!(
            kubelet > grace.as_secs(),
            "{}: the kubelet kills at {kubelet}s, before --grace {grace:?} ends",
            file.display()
        );
        // The probes ask the metrics server, which must be on.
        assert!(value("ECHO_SERVER_METRICS").starts_with("tcp:9090"));
        for path in ["path: /readyz", "path: /healthz"] {
            assert!(manifest.contains(path), "{}: no {path}", file.display());
        }
    }
}

#[test]
fn the_manifests_settings_start_a_server() {
    // Each Deployment's environment, on free loopback ports, starts the
    // server (every value parses and binds) with its metrics ready.
    for file in manifests() {
        let manifest = std::fs::read_to_string(&file).unwrap();
        if !manifest.contains("kind: Deployment") {
            continue;
        }
        let metrics = free_port();
        let mut command = Command::new(SERVER);
        for (name, value) in env_of(&manifest) {
            let value = match name.as_str() {
                "ECHO_SERVER_LISTEN" => value
                    .replace("tcp:8888", "tcp:0")
                    .replace("0.0.0.0", "127.0.0.1"),
                "ECHO_SERVER_METRICS" => format!("tcp:{metrics}:interface=127.0.0.1"),
                _ => value,
            };
            command.env(name, value);
        }
        let server = Server::spawn(command);
        wait_listening(metrics, std::time::Duration::from_secs(10));
        assert!(server.port != 0, "{}: {}", file.display(), server.log());
    }
}
