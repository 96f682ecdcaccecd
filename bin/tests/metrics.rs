//! `echo-server --metrics`: what a scraper, Prometheus itself, a balancer's
//! probe and a hostile client see, over real sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A server on a free loopback port, serving metrics on another; the
/// metrics port.
fn start(args: &[&str]) -> (Server, u16) {
    let mut command = Command::new(SERVER);
    command
        .args(["--listen", "tcp:0:interface=127.0.0.1"])
        .args(["--metrics", "tcp:0:interface=127.0.0.1"])
        .args(args);
    let (server, lines) = Server::spawn_reading(command, 1);
    let port = lines[0]
        .strip_prefix("metrics on http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no metrics line: {lines:?}"));
    (server, port)
}

/// An HTTP answer, as a plain TCP client reads it.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` as it is and reads the answer to the end (the request
/// asks the server to close).
fn exchange(port: u16, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = text(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(port: u16, path: &str, headers: &str) -> Answer {
    exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// The value of the sample `name` (with its labels, if any) in an
/// exposition.
fn sample(exposition: &str, name: &str) -> u64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{exposition}"))
}

/// `promtool check metrics` passes `body` without a word.
fn promtool_finds_nothing_wrong(body: String) {
    let checked = output_fed(
        Command::new("promtool").args(["check", "metrics"]),
        Some(body.into_bytes()),
        EXIT_LIMIT,
    );
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
}

/// `body` if `name` reads `want` there, else a scrape that does.
fn scrape_until_in(port: u16, body: String, name: &str, want: u64) -> String {
    if sample(&body, name) == want {
        body
    } else {
        scrape_until(port, name, want)
    }
}

/// Scrapes until `name` reads `want` (connections end a moment after
/// their clients exit), failing after ten seconds.
fn scrape_until(port: u16, name: &str, want: u64) -> String {
    let start = Instant::now();
    loop {
        let body = get(port, "/metrics", "").body;
        if sample(&body, name) == want {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name} never reached {want}:\n{body}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_scrape_counts_exactly_the_connections_made_and_their_bytes() {
    let (server, metrics) = start(&[]);
    let out = client(&[
        "--connect",
        &server.connect_arg(),
        "--connections",
        "7",
        "--message",
        "twelve bytes",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = scrape_until(metrics, "echo_connections_ended_total{reason=\"clean\"}", 7);
    assert_eq!(sample(&body, "echo_connections_accepted_total"), 7);
    assert_eq!(sample(&body, "echo_connections_open"), 0);
    assert_eq!(sample(&body, "echo_connections_refused_total"), 0);
    assert_eq!(sample(&body, "echo_received_bytes_total"), 7 * 12);
    assert_eq!(sample(&body, "echo_sent_bytes_total"), 7 * 12);
    // The process's own, under the usual names.
    assert!(sample(&body, "process_open_fds") >= 3, "{body}");
    assert!(
        sample(&body, "process_resident_memory_bytes") > 1 << 20,
        "{body}"
    );
    assert!(sample(&body, "process_max_fds") >= sample(&body, "process_open_fds"));
    // A connection held open is counted open, then ended.
    let mut held = TcpStream::connect(server.addr()).unwrap();
    scrape_until(metrics, "echo_connections_open", 1);
    held.write_all(b"x").unwrap();
    drop(held);
    scrape_until(metrics, "echo_connections_accepted_total", 8);
    scrape_until(metrics, "echo_connections_open", 0);
}

#[test]
fn completed_resumed_and_failed_tls_handshakes_are_counted_by_kind_and_reason() {
    let mut command = Command::new(SERVER);
    command.args([
        "--listen",
        "ssl:0:interface=127.0.0.1:sessionTickets=1",
        "--self-signed",
        "--metrics",
        "tcp:0:interface=127.0.0.1",
    ]);
    // The listening line, the metrics line, then the certificate's lines.
    let (server, lines) = Server::spawn_reading(command, 4);
    let metrics: u16 = lines[0]
        .strip_prefix("metrics on http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no metrics line: {lines:?}"));
    let connect = lines
        .iter()
        .find_map(|l| l.strip_prefix("try: echo-client --connect "))
        .unwrap_or_else(|| panic!("no client command: {lines:?}"));
    // One connection, then four one after the other over one client's
    // session: a full handshake, then resumed ones.
    let out = client(&["--connect", connect, "--connections", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = output_within(
        Command::new(CLIENT).args([
            "bench",
            "--connect",
            connect,
            "--connections",
            "1",
            "--requests",
            "8",
            "--reconnect-every",
            "2",
        ]),
        EXIT_LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Plain text to a TLS port: a failed handshake, for not being TLS.
    let mut plain = TcpStream::connect(server.addr()).unwrap();
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest);
    let body = scrape_until(
        metrics,
        "echo_tls_handshake_failures_total{reason=\"not_tls\"}",
        1,
    );
    let made = sample(&body, "echo_connections_accepted_total");
    assert!(made >= 5, "{body}");
    // Each client's first handshake is a full one, the reconnects resume.
    assert_eq!(sample(&body, "echo_tls_handshakes_total{kind=\"full\"}"), 2);
    assert_eq!(
        sample(&body, "echo_tls_handshakes_total{kind=\"resumed\"}"),
        made - 2
    );
    assert_eq!(
        sample(&body, "echo_tls_handshake_duration_seconds_count"),
        made
    );
    assert_eq!(
        sample(
            &body,
            "echo_tls_handshake_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        made
    );
    for reason in ["timed_out", "closed", "certificate", "io_error"] {
        let name = format!("echo_tls_handshake_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&body, &name), 0, "{body}");
    }
    if have("promtool") {
        promtool_finds_nothing_wrong(body);
    }
}

#[test]
fn udp_datagrams_echoed_and_dropped_are_counted() {
    let mut command = Command::new(SERVER);
    command.args([
        "--listen",
        "udp:0:interface=127.0.0.1",
        "--metrics",
        "tcp:0:interface=127.0.0.1",
        "--udp-rate",
        "5",
    ]);
    let (server, lines) = Server::spawn_reading(command, 1);
    let metrics: u16 = lines[0]
        .strip_prefix("metrics on http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no metrics line: {lines:?}"));
    // 8 datagrams at once from one source limited to 5 a second: 5 come
    // back, 3 are dropped (the client says so and exits 1).
    let _ = client(&[
        "udp",
        "--connect",
        &format!("udp:127.0.0.1:{}", server.port),
        "--count",
        "8",
        "--interval",
        "0s",
        "--wait",
        "500ms",
        "--message",
        "twelve bytes",
    ]);
    let body = scrape_until(metrics, "echo_udp_datagrams_received_total", 8);
    assert_eq!(sample(&body, "echo_udp_datagrams_echoed_total"), 5);
    assert_eq!(sample(&body, "echo_udp_echoed_bytes_total"), 5 * (16 + 12));
    assert_eq!(
        sample(
            &body,
            "echo_udp_datagrams_dropped_total{reason=\"rate_limited\"}"
        ),
        3
    );
    assert_eq!(sample(&body, "echo_connections_accepted_total"), 0);
}

#[test]
fn proxy_health_checks_and_bad_headers_are_counted() {
    let mut command = Command::new(SERVER);
    command.args([
        "--listen",
        "haproxy:tcp:0:interface=127.0.0.1",
        "--metrics",
        "tcp:0:interface=127.0.0.1",
    ]);
    let (server, lines) = Server::spawn_reading(command, 1);
    let metrics: u16 = lines[0]
        .strip_prefix("metrics on http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no metrics line: {lines:?}"));
    let send = |bytes: &[u8]| {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(bytes).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        let _ = stream.read_to_end(&mut echoed);
        echoed
    };
    // Two balancer checks (v1 UNKNOWN), a proxied client, a bad header.
    send(b"PROXY UNKNOWN\r\n");
    send(b"PROXY UNKNOWN\r\n");
    let echoed = send(b"PROXY TCP4 10.0.0.1 10.0.0.2 40000 8888\r\nhello");
    assert_eq!(echoed, b"hello");
    send(b"NOT A PROXY HEADER\r\n");
    send(b"PROXY TCP4 10.0.0.1 10.0.0.2 40000\r\n");
    let body = scrape_until(
        metrics,
        "echo_proxy_headers_rejected_total{reason=\"missing\"}",
        1,
    );
    let body = scrape_until_in(
        metrics,
        body,
        "echo_proxy_headers_rejected_total{reason=\"malformed\"}",
        1,
    );
    assert_eq!(
        sample(
            &body,
            "echo_proxy_headers_rejected_total{reason=\"timed_out\"}"
        ),
        0
    );
    let body = scrape_until_in(metrics, body, "echo_connections_accepted_total", 3);
    assert_eq!(sample(&body, "echo_proxy_health_checks_total"), 2);
}

#[test]
fn promtool_finds_nothing_wrong_with_the_exposition() {
    if !have("promtool") {
        return;
    }
    let (server, metrics) = start(&[]);
    let out = client(&["--connect", &server.connect_arg(), "--connections", "2"]);
    assert!(out.status.success());
    let body = scrape_until(metrics, "echo_connections_accepted_total", 2);
    promtool_finds_nothing_wrong(body);
}

#[test]
fn a_real_prometheus_scrapes_the_accepted_counter() {
    if !have("prometheus") || !have("promtool") {
        return;
    }
    let (server, metrics) = start(&[]);
    let made = 5;
    let out = client(&[
        "--connect",
        &server.connect_arg(),
        "--connections",
        &made.to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    scrape_until(
        metrics,
        "echo_connections_ended_total{reason=\"clean\"}",
        made,
    );

    let dir = std::env::temp_dir().join(format!("echo-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: echo\n    static_configs:\n      - targets: ['127.0.0.1:{metrics}']\n"
        ),
    )
    .unwrap();
    let web = free_port();
    let _prometheus = Peer(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let query = "echo_connections_accepted_total{job=\"echo\"}";
    let start = Instant::now();
    let answer = loop {
        let out = output_within(
            Command::new("promtool").args([
                "query",
                "instant",
                &format!("http://127.0.0.1:{web}"),
                query,
            ]),
            EXIT_LIMIT,
        );
        let answer = text(&out.stdout);
        if answer.contains(" => ") {
            break answer;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus never had {query}: {answer}{}",
            text(&out.stderr)
        );
        thread::sleep(Duration::from_millis(250));
    };
    let _ = std::fs::remove_dir_all(&dir);
    // `echo_connections_accepted_total{instance="127.0.0.1:P", job="echo"} => 5 @[...]`
    let value = answer
        .split(" => ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_default();
    assert_eq!(value, made.to_string(), "{answer}");
}

#[test]
fn readyz_turns_503_at_sigterm_while_an_open_connection_still_echoes() {
    let (mut server, metrics) = start(&["--grace", "20s"]);
    assert_eq!(get(metrics, "/readyz", "").status, 200);
    assert_eq!(get(metrics, "/healthz", "").status, 200);
    let mut open = TcpStream::connect(server.addr()).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut echo = [0u8; 6];
    open.write_all(b"before").unwrap();
    open.read_exact(&mut echo).unwrap();

    server.signal("TERM");
    let start = Instant::now();
    while get(metrics, "/readyz", "").status != 503 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "/readyz still 200 after SIGTERM:\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let unready = get(metrics, "/readyz", "");
    assert_eq!(unready.body, "shutting down\n");
    // Long before the grace period ends: still alive, still echoing.
    assert_eq!(get(metrics, "/healthz", "").status, 200);
    open.write_all(b"after!").unwrap();
    open.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"after!");
    assert!(server.child.try_wait().unwrap().is_none(), "exited early");
    drop(open);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn unknown_paths_other_methods_and_garbage_get_http_errors_and_nothing_else_changes() {
    let (server, metrics) = start(&[]);
    let missing = get(metrics, "/nope", "");
    assert_eq!(missing.status, 404, "{}", missing.head);
    let post = exchange(
        metrics,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(post.status, 405);
    assert!(
        post.head.to_ascii_lowercase().contains("allow: get"),
        "{}",
        post.head
    );
    for garbage in [
        &b"\x16\x03\x01\x00\x05hello\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"HELLO THERE\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", metrics)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(garbage).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer); // an error status, or closed
        let answer = text(&answer);
        assert!(
            answer.is_empty()
                || answer.starts_with("HTTP/1.1 4")
                || answer.starts_with("HTTP/1.1 5"),
            "{garbage:?}: {answer}"
        );
        assert!(!answer.contains("echo_"), "{garbage:?}: {answer}");
    }
    // The echo and the metrics carry on as before.
    let out = client(&["--connect", &server.connect_arg(), "--connections", "1"]);
    assert!(out.status.success());
    let ok = get(metrics, "/metrics", "");
    assert_eq!(ok.status, 200);
    assert!(
        ok.head
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        ok.head
    );
    let om = get(
        metrics,
        "/metrics",
        "Accept: application/openmetrics-text\r\n",
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
}

#[test]
fn slow_scrapers_are_cut_off_and_never_hold_up_the_echo() {
    let (server, metrics) = start(&[]);
    // Slots taken by scrapers that send half a request line and stall.
    let stalled: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", metrics)).unwrap();
            s.write_all(b"GET /metr").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    // One more is closed at once, unanswered.
    let mut extra = TcpStream::connect(("127.0.0.1", metrics)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let mut answer = Vec::new();
    let _ = extra.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", text(&answer));
    // Meanwhile the echo is served as ever.
    let echoed = Instant::now();
    let out = client(&["--connect", &server.connect_arg(), "--connections", "3"]);
    assert!(out.status.success());
    assert!(echoed.elapsed() < Duration::from_secs(2));
    // The stalled ones are closed by the header-read timeout (5 s).
    let started = Instant::now();
    for mut s in stalled {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stalled scrapers held for {:?}",
        started.elapsed()
    );
    // And the slots are free again.
    assert_eq!(get(metrics, "/healthz", "").status, 200);
}

#[test]
fn a_metrics_endpoint_that_collides_or_is_taken_is_a_clear_error() {
    let port = free_port().to_string();
    let listen = format!("tcp:{port}:interface=127.0.0.1");
    let collide = output_within(
        Command::new(SERVER).args(["--listen", &listen, "--metrics", &listen]),
        EXIT_LIMIT,
    );
    assert_eq!(collide.status.code(), Some(2), "{}", text(&collide.stderr));
    assert!(
        text(&collide.stderr).contains("same port as --listen"),
        "{}",
        text(&collide.stderr)
    );
    assert_usage_errors(
        SERVER,
        &[
            &["--metrics", "unix:/tmp/echo-metrics.sock"],
            &["--metrics", "udp:9090"],
            &["--metrics", "tcp:notaport"],
            &["--metrics", &format!("tcp:{port}"), "--listen", &listen],
        ],
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let out = output_within(
        Command::new(SERVER).args([
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--metrics",
            &format!("tcp:{taken_port}:interface=127.0.0.1"),
        ]),
        EXIT_LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot serve metrics on 127.0.0.1:{taken_port}: Address already in use"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("in use").count(), 1, "said once: {stderr}");
    assert!(
        !text(&out.stdout).contains("listening on"),
        "announced before failing: {}",
        text(&out.stdout)
    );
}

#[test]
fn bench_serves_live_figures_while_it_runs() {
    let server = Server::start(&[]);
    let metrics = free_port();
    let mut bench = Peer(
        Command::new(CLIENT)
            .args(["bench", "--connect", &server.connect_arg()])
            .args([
                "--connections",
                "4",
                "--duration",
                "4s",
                "--warmup",
                "0s",
                "--json",
            ])
            .args(["--metrics", &format!("tcp:{metrics}:interface=127.0.0.1")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo-client bench"),
    );
    wait_listening(metrics, Duration::from_secs(10));
    // Scrapes during the run: requests climb, the histogram fills.
    let start = Instant::now();
    let body = loop {
        let body = get(metrics, "/metrics", "").body;
        if sample(&body, "echo_bench_latency_seconds_count") > 0 {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "no latencies:\n{body}"
        );
        thread::sleep(Duration::from_millis(100));
    };
    let requests = sample(&body, "echo_bench_requests_total");
    let counted = sample(&body, "echo_bench_latency_seconds_count");
    assert!(
        counted > 0 && counted <= requests,
        "{counted} of {requests}"
    );
    assert_eq!(sample(&body, "echo_bench_connections_open"), 4);
    assert_eq!(
        sample(&body, "echo_bench_latency_seconds_bucket{le=\"+Inf\"}"),
        counted
    );
    for kind in ["timed_out", "reset", "mismatch"] {
        let name = format!("echo_bench_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(sample(&body, &name), 0, "{body}");
    }
    if have("promtool") {
        promtool_finds_nothing_wrong(body.clone());
    }
    let status = wait_within(&mut bench.0, EXIT_LIMIT);
    assert!(status.success());
    let mut report = String::new();
    bench
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut report)
        .unwrap();
    let total: u64 = report
        .split("\"requests\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no requests in {report}"));
    assert!(
        total >= requests,
        "the report's {total} < a scrape's {requests}"
    );
}
