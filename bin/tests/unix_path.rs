//! `unix:` listeners touch nothing at their path but a stale socket of their
//! own kind: a regular file, a link, a FIFO or a live server's socket there
//! is an error (exit 1) and is left exactly as it was.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(20);

/// A fresh directory for one test, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("echo-unix-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `echo-server --listen DESC` expecting it to refuse; returns stderr.
fn refused(listen: &str) -> String {
    let out = Command::new(SERVER)
        .args(["--listen", listen])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "nothing is announced");
    text(&out.stderr)
}

fn listen_arg(path: &Path) -> String {
    format!("unix:{}", path.display())
}

#[test]
fn a_regular_file_at_the_path_is_never_deleted() {
    let dir = Dir::new("file");
    let path = dir.join("f");
    std::fs::write(&path, "important data\n").unwrap();
    let stderr = refused(&listen_arg(&path));
    assert!(
        stderr.contains("already exists and is a regular file; refusing to replace it"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"important data\n");
    assert!(!dir.join("f.lock").exists(), "the lock is released");
}

#[test]
fn a_symbolic_link_and_a_fifo_are_left_alone() {
    let dir = Dir::new("link");
    let target = dir.join("target");
    std::fs::write(&target, "keep").unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let stderr = refused(&listen_arg(&link));
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    assert_eq!(std::fs::read_link(&link).unwrap(), target);
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");

    let fifo = dir.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let stderr = refused(&listen_arg(&fifo));
    assert!(stderr.contains("is a FIFO"), "{stderr}");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn a_live_servers_socket_is_not_taken_over() {
    let dir = Dir::new("live");
    let path = dir.join("s");
    let listen = listen_arg(&path);
    let mut first = Server::start_listening(&["--listen", &listen], &[]);
    // Its lock names it; a second server sees that and leaves everything.
    let stderr = refused(&listen);
    assert!(stderr.contains("is locked by running process"), "{stderr}");
    // Without the lock it checks the socket itself, and still refuses.
    let stderr = refused(&format!("{listen}:lockfile=0"));
    assert!(stderr.contains("is in use by a running server"), "{stderr}");
    let out = client(&["--connect", &listen, "-n", "1"]);
    assert!(out.status.success(), "the first server still serves");
    first.signal("TERM");
    assert_eq!(first.wait_exit(LONG).code(), Some(0));
    assert!(!path.exists() && !dir.join("s.lock").exists());
}

#[test]
fn a_stale_socket_and_a_stale_lock_are_replaced() {
    let dir = Dir::new("stale");
    let path = dir.join("s");
    // A socket nobody listens on (its listener is gone), and a lock whose
    // owner is not running: what a crashed server leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    std::os::unix::fs::symlink("999999999", dir.join("s.lock")).unwrap();
    let listen = listen_arg(&path);
    let mut server = Server::start_listening(&["--listen", &listen], &[]);
    let out = client(&["--connect", &listen, "-n", "2"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let pid = server.child.id().to_string();
    assert_eq!(
        std::fs::read_link(dir.join("s.lock")).unwrap(),
        Path::new(&pid)
    );
    server.signal("TERM");
    assert_eq!(server.wait_exit(LONG).code(), Some(0));
    assert!(!path.exists() && !dir.join("s.lock").exists());
}

#[test]
fn with_lockfile_0_even_a_stale_socket_stays() {
    let dir = Dir::new("nolock");
    let path = dir.join("s");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let stderr = refused(&format!("{}:lockfile=0", listen_arg(&path)));
    assert!(
        stderr.contains("is a stale socket; lockfile=0 leaves it"),
        "{stderr}"
    );
    assert!(path.exists());
}

#[test]
fn nothing_is_announced_when_a_later_endpoint_fails() {
    let dir = Dir::new("order");
    let path = dir.join("f");
    std::fs::write(&path, "x").unwrap();
    let out = Command::new(SERVER)
        .args([
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--listen",
            &listen_arg(&path),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "",
        "no 'listening on' before a bind failure"
    );
}
