//! TLS session resumption (`ssl:...:sessionTickets=N`), judged by clients
//! and balancers no one here wrote: OpenSSL's `s_client -sess_out` then
//! `-sess_in`, nginx's `proxy_ssl_session_reuse` and HAProxy's default
//! session reuse towards an `ssl` back end; and our own `bench`, which
//! reports full and resumed handshakes and forces full ones with
//! `--no-resume`. The server's stats line counts both kinds.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(20);

/// An `ssl:` server with a throw-away certificate, `extra` appended to its
/// endpoint (`:sessionTickets=2`), counting in stats lines every 50 ms.
fn tls_server(extra: &str) -> Server {
    Server::start_listening(
        &[
            "--listen",
            &format!("ssl:0:interface=127.0.0.1{extra}"),
            "--self-signed",
        ],
        &["--stats-interval", "50ms", "-v"],
    )
}

/// The handshakes and resumed sessions the stats lines have counted, once
/// they count at least `at_least` handshakes (and a few more lines have
/// passed, for any late ones).
fn counted(server: &Server, at_least: usize) -> (usize, usize) {
    let start = std::time::Instant::now();
    while stats_sum(&server.log(), "tls_handshakes") < at_least {
        assert!(
            start.elapsed() < LONG,
            "never {at_least} handshakes:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log();
    (
        stats_sum(&log, "tls_handshakes"),
        stats_sum(&log, "tls_resumed"),
    )
}

/// How many of exactly `handshakes` handshakes resumed a session.
fn resumed_of(server: &Server, handshakes: usize) -> usize {
    let (made, resumed) = counted(server, handshakes);
    assert_eq!(made, handshakes, "{}", server.log());
    resumed
}

/// One `openssl s_client` connection that sends `line`, reads its echo and
/// closes; `session` is `-sess_out FILE` or `-sess_in FILE`. Returns its
/// standard output (which says `New,` or `Reused,`).
fn s_client(port: u16, version: &str, session: [&str; 2], line: &str) -> String {
    let script = format!(
        "(printf '{line}\\n'; sleep 0.3) | openssl s_client -connect 127.0.0.1:{port} {version} {} {} 2>/dev/null",
        session[0], session[1]
    );
    let out = output_within(Command::new("sh").args(["-c", &script]), EXIT_LIMIT);
    let stdout = text(&out.stdout);
    assert!(
        stdout.lines().any(|l| l == line),
        "no echo of {line:?} from s_client:\n{stdout}"
    );
    stdout
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("echo-resume-{}-{name}", std::process::id()))
}

#[test]
fn openssl_resumes_a_session_with_tickets_and_never_without() {
    each_io(|_io| {
        if !have("openssl") {
            return;
        }
        for version in ["-tls1_3", "-tls1_2"] {
            // Asked for: the second connection resumes the first one's session.
            let server = tls_server(":sessionTickets=2");
            let file = temp(&format!("asked{version}.pem"));
            let path = file.display().to_string();
            let first = s_client(server.port, version, ["-sess_out", &path], "first");
            assert!(first.contains("New, TLS"), "{version}: {first}");
            let second = s_client(server.port, version, ["-sess_in", &path], "second");
            assert!(
                second.contains("Reused, TLS"),
                "{version}: the session was not resumed:\n{second}"
            );
            assert_eq!(resumed_of(&server, 2), 1, "{version}\n{}", server.log());
            assert!(
                server.log().contains("TLS session resumed"),
                "{}",
                server.log()
            );
            let _ = std::fs::remove_file(&file);

            // The default: no tickets, no session IDs kept; the same client
            // offering its saved session gets a full handshake.
            let server = tls_server("");
            let file = temp(&format!("default{version}.pem"));
            let path = file.display().to_string();
            let first = s_client(server.port, version, ["-sess_out", &path], "first");
            // Nothing to resume with: no TLS 1.3 ticket, no TLS 1.2 session ID
            // (s_client then saves no session at all).
            assert!(
                first.contains("New, TLS") && !first.contains("Post-Handshake New Session Ticket"),
                "{version}: a ticket was sent unasked:\n{first}"
            );
            assert!(
                !file.exists(),
                "{version}: s_client was given a session to resume"
            );
            assert_eq!(resumed_of(&server, 1), 0, "{}", server.log());
            let _ = std::fs::remove_file(&file);
        }
    });
}

/// A balancer in front of the `ssl:` server on `backend`, listening on the
/// port it returns; ended (with its files) on drop.
struct Balancer {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Balancer {
    /// nginx's stream proxy re-encrypting to the back end, keeping its
    /// sessions (`proxy_ssl_session_reuse`, on by default, said here).
    fn nginx(backend: u16) -> Self {
        let port = free_port();
        let dir = temp(&format!("nginx-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
             daemon off;\nmaster_process off;\npid {dir}/nginx.pid;\n\
             error_log {dir}/error.log;\nevents {{}}\n\
             stream {{\n  server {{\n    listen 127.0.0.1:{port};\n\
             proxy_pass 127.0.0.1:{backend};\n    proxy_ssl on;\n\
             proxy_ssl_session_reuse on;\n    proxy_ssl_verify off;\n  }}\n}}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        let mut nginx = Command::new("nginx");
        nginx
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"));
        nginx.arg("-c").arg(dir.join("nginx.conf"));
        Self::run(nginx, port, dir)
    }

    /// HAProxy with an `ssl` server line: it reuses the back end's session
    /// unless told `no-ssl-reuse`.
    fn haproxy(backend: u16) -> Self {
        let port = free_port();
        let dir = temp(&format!("haproxy-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("haproxy.cfg"),
            format!(
                "global\n  maxconn 100\n\
                 defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
                 frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
                 backend be\n  server s1 127.0.0.1:{backend} ssl verify none\n"
            ),
        )
        .unwrap();
        let mut haproxy = Command::new("haproxy");
        haproxy.args(["-db", "-f"]).arg(dir.join("haproxy.cfg"));
        Self::run(haproxy, port, dir)
    }

    /// Starts `command`, owned (and ended, its files removed, on drop)
    /// before the wait for it to listen on `port`, which may fail.
    fn run(mut command: Command, port: u16, dir: PathBuf) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the balancer");
        let balancer = Self { child, port, dir };
        wait_listening(port, LONG);
        balancer
    }

    /// `n` clients one after the other, each echoing a line through the
    /// balancer.
    fn echo_through(&self, n: usize) {
        for i in 0..n {
            let out = client(&[
                "--connect",
                &format!("tcp:127.0.0.1:{}", self.port),
                "--connections",
                "1",
                "--message",
                &format!("client {i} through the balancer"),
            ]);
            assert!(out.status.success(), "client {i}: {}", text(&out.stderr));
        }
    }
}

#[test]
fn a_balancer_that_reuses_sessions_to_its_back_end_is_counted_as_resumed() {
    each_io(|_io| {
        for (name, start) in [
            ("nginx", Balancer::nginx as fn(u16) -> Balancer),
            ("haproxy", Balancer::haproxy),
        ] {
            if !have(name) {
                continue;
            }
            let server = tls_server(":sessionTickets=2");
            let balancer = start(server.port);
            balancer.echo_through(5);
            // The first handshake is a full one; later ones resume the session
            // the balancer kept, as often as it offers one (here nginx 1.22
            // resumed 2 of 5 and HAProxy 2.6 3 of 5, while s_client resumes
            // every time with the tickets a resumed handshake brings).
            let resumed = resumed_of(&server, 5);
            assert!((1..=4).contains(&resumed), "{name}:\n{}", server.log());
            eprintln!("{name}: {resumed} of 5 handshakes resumed");
            drop(balancer);

            // Without tickets the balancer's reuse finds nothing to resume.
            let server = tls_server("");
            let balancer = start(server.port);
            balancer.echo_through(3);
            assert_eq!(resumed_of(&server, 3), 0, "{name}:\n{}", server.log());
        }
    });
}

/// `echo-client bench` over TLS with connection churn, as JSON.
fn bench_json(server: &Server, extra: &[&str]) -> serde_json::Value {
    let mut command = Command::new(CLIENT);
    command
        .args(["bench", "--connect"])
        .arg(format!("tls:localhost:{}", server.port))
        .args(["--insecure", "--connections", "2", "--requests", "40"])
        .args(["--reconnect-every", "4", "--warmup", "0s", "--json"])
        .args(extra);
    let out = output_within(&mut command, EXIT_LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bench --json")
}

#[test]
fn bench_reports_full_and_resumed_handshakes_and_no_resume_forces_full_ones() {
    each_io(|_io| {
        let server = tls_server(":sessionTickets=2");
        let run = bench_json(&server, &[]);
        let (handshakes, resumed) = (
            run["handshakes"].as_u64().expect("handshakes"),
            run["resumed"].as_u64().expect("resumed"),
        );
        assert!(handshakes >= 10, "{run}");
        // Only each connection's first handshake, made before any ticket
        // arrived, may be a full one.
        let full = handshakes - resumed;
        assert!((1..=2).contains(&full), "{run}");
        // The server also counts the reconnects made after measuring ended.
        let (made, resumed_there) = counted(&server, handshakes as usize);
        assert_eq!(
            made - resumed_there,
            full as usize,
            "both ends count the full ones alike"
        );

        let server = tls_server(":sessionTickets=2");
        let run = bench_json(&server, &["--no-resume"]);
        let handshakes = run["handshakes"].as_u64().expect("handshakes");
        assert_eq!(run["resumed"], 0, "{run}");
        assert_eq!(counted(&server, handshakes as usize).1, 0);

        // The text report says both kinds.
        let out = output_within(
            Command::new(CLIENT)
                .args(["bench", "--connect"])
                .arg(format!("tls:localhost:{}", server.port))
                .args(["--insecure", "--requests", "8", "--reconnect-every", "2"]),
            EXIT_LIMIT,
        );
        let report = text(&out.stdout);
        assert!(
            report.contains("handshakes: ")
                && report.contains(" full, ")
                && report.contains(" resumed)"),
            "{report}"
        );
    });
}

#[test]
fn resumption_flags_with_bad_values_are_usage_errors() {
    assert_usage_errors(
        SERVER,
        &[
            &["--listen", "ssl:0:sessionTickets=9", "--self-signed"],
            &["--listen", "ssl:0:sessionTickets=-1", "--self-signed"],
            &["--listen", "ssl:0:sessionTickets=", "--self-signed"],
            &["--listen", "ssl:0:sessionTickets=two", "--self-signed"],
        ],
    );
    assert_usage_errors(
        CLIENT,
        &[
            &["bench", "--connect", "tcp:127.0.0.1:9", "--no-resume"],
            &["bench", "--connect", "tls:localhost:9", "--no-resume=maybe"],
        ],
    );
}
