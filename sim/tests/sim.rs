//! The simulation properties. `cargo test -p sim` runs them; `SIM_CASES=N`
//! sets the case count (a soak: `SIM_CASES=100000`), `SIM_SEED=S` replays one
//! case, `SIM_TRACE=1` prints each case's event trace.

/// What every property over our server and client must reach: the
/// arcs and ends of a clean echo, the fault points inside the sockets
/// (hiccups that a driver must ride out: `Interrupted`, `WouldBlock`,
/// spurious wake-ups, one-byte writes; an accept loop sent away early).
const ECHO: &[&str] = &[
    "arc Open -> Closing",
    "arc Closing -> Closed",
    "action Close",
    "end done",
    "verdict done",
    "io hiccup: read Interrupted",
    "io hiccup: read WouldBlock",
    "io hiccup: read spurious wake-up",
    "io hiccup: write Interrupted",
    "io hiccup: write WouldBlock",
    "io hiccup: write spurious wake-up",
    "io hiccup: one-byte write",
    "accept: early Pending",
    "accept: connection aborted",
    "accept: out of file descriptors",
    "driver: a random read budget",
];

/// What faults then heal must reach besides: every fault class, every way
/// a connection ends uncleanly, the client's verdicts on a cut echo.
const FAULTS: &[&str] = &[
    "arc Open -> Closed",
    "action Abort",
    "end aborted",
    "end reset",
    "end timed out",
    "fault Partition",
    "fault PartitionToServer",
    "fault PartitionFromServer",
    "fault Repair",
    "fault Hold",
    "fault Release",
    "fault CrashServer",
    "fault BounceServer",
    "verdict ConnectionLost",
    "verdict TimedOut",
    "verdict Truncated",
    "verdict gave up",
];

/// Over TLS: the same hiccups that a record layer passes through (no
/// errors: rustls reports them as failures), and TLS's own ends.
const TLS: &[&str] = &[
    "arc Open -> Closing",
    "arc Closing -> Closed",
    "action Close",
    "end done",
    "verdict done",
    "io hiccup: read spurious wake-up",
    "io hiccup: write spurious wake-up",
    "io hiccup: one-byte write",
];

/// A graceful shutdown ends connections as shut down, and resets the
/// flushes it cuts off.
const SHUTDOWN: &[&str] = &["end shut down", "action Abort"];

/// Half-closing clients: the core asks the driver for a half-close.
const HALF_CLOSE: &[&str] = &["action ShutdownWrite"];

/// Slow readers: every echo done, every connection ended cleanly.
const IDLE: &[&str] = &["end done", "verdict done"];

/// The state table's labels no property reaches, and why.
const NOT_SIMULATED: &[(&str, &str)] = &[
    (
        "end io error",
        "turmoil's sockets fail only by a reset or a close; the hiccups they inject are ridden out",
    ),
    (
        "end tls alert",
        "a peer's alert after the handshake (a refused client certificate): no simulated client \
         presents a certificate",
    ),
    (
        "end tls",
        "a corrupt record after the handshake: the simulated network corrupts nothing",
    ),
];

/// What the zoo must reach: every verdict a client can give a peer.
const ZOO: &[&str] = &[
    "verdict done",
    "verdict Mismatch",
    "verdict Unexpected",
    "verdict Truncated",
    "verdict TimedOut",
    "verdict ConnectionLost",
    "verdict NoBanner",
];

/// What the attacks must reach: every refusal reason of the PROXY decoder
/// and of a TLS handshake, both timers, admissions and denials.
const HOSTILE: &[&str] = &[
    "hostile admitted",
    "hostile admitted just in time",
    "hostile denied",
    "hostile left before a byte",
    "hostile stall freed by the PROXY header timeout",
    "hostile stall freed by the handshake timeout",
    "proxy refused: PROXY address block too short for its family",
    "proxy refused: PROXY header declares bytes",
    "proxy refused: PROXY header with unknown command",
    "proxy refused: PROXY header with unknown family byte",
    "proxy refused: PROXY header with version",
    "proxy refused: PROXY line without CRLF in bytes",
    "proxy refused: malformed PROXY line",
    "proxy refused: no PROXY header",
    "proxy refused: no PROXY header within",
    "tls refused: no TLS handshake within",
    "tls refused: received corrupt message of type InvalidContentType",
    "tls refused: the peer closed the connection during the handshake",
    "proxy counted: line_too_long",
    "proxy counted: malformed",
    "proxy counted: version",
    "proxy counted: command",
    "proxy counted: family",
    "proxy counted: too_long",
    "proxy counted: short_address",
    "proxy counted: missing",
    "proxy counted: timed_out",
    "tls counted: not_tls",
    "tls counted: closed",
    "tls counted: timed_out",
];

use sim::{
    access_case, broken_app_case, check, fault_case, held_back_case, misbehaving_case,
    no_fault_case, shutdown_case, shutdown_fault_case, tls_case, tls_fault_case, tls_shutdown_case,
    udp_case, zoo_case,
};

/// Any latency, chunking down to one byte, short writes, water marks and
/// idle timeouts, with no faults: every client is done, exactly; the server's
/// count returns to 0; no connection buffers more than high + one read; no
/// panic; every eighth case replays identically.
#[test]
fn no_faults_every_echo_completes_exactly() {
    let summary = check(
        "no_faults_every_echo_completes_exactly",
        no_fault_case(),
        1_200,
    );
    assert!(summary.stats.done > 0);
    summary.must_have_reached(ECHO);
}

/// The same fault-free cases over TLS (an `ssl:` server, `tls:` clients):
/// chunking down to one byte and short writes now split TLS records, and
/// every echo is still exact, with a handshake that never fails, close_notify
/// on every close, the books balanced and replays identical.
#[test]
fn tls_echoes_complete_exactly_at_any_split() {
    let summary = check("tls_echoes_complete_exactly_at_any_split", tls_case(), 600);
    assert!(summary.stats.done > 0);
    summary.must_have_reached(TLS);
}

/// The fault schedules over TLS: partitions, holds and crashes also cut
/// handshakes, which must end within their bound and be retried; nothing is
/// corrupted, every retrying client completes after the heal, failed
/// handshakes are never admitted (the books balance).
#[test]
fn tls_under_faults_stays_safe_and_live() {
    let summary = check(
        "tls_under_faults_stays_safe_and_live",
        tls_fault_case(),
        400,
    );
    if std::env::var_os("SIM_SEED").is_none() {
        assert!(
            summary.stats.handshakes_cut > 0,
            "no fault ever cut a handshake: {summary:?}"
        );
        assert!(summary.stats.retries > summary.cases / 4, "{summary:?}");
    }
}

/// The graceful shutdown cases over TLS: the grace period and the flush
/// timeout bound a TLS server's shutdown too, a drained one leaves every
/// admitted client done, and nothing is admitted once it began (a
/// handshake that finishes after it is dropped, not served).
#[test]
fn tls_graceful_shutdown_loses_nothing_the_server_read() {
    let summary = check(
        "tls_graceful_shutdown_loses_nothing_the_server_read",
        tls_shutdown_case(),
        200,
    );
    if std::env::var_os("SIM_SEED").is_none() {
        assert!(summary.stats.done > 0, "{summary:?}");
        assert!(summary.stats.cut_short > 0, "{summary:?}");
    }
}

/// Partitions (two-way and one-way), holds, server crashes and bounces and
/// client give-ups, then everything heals: no client ever receives anything
/// but a prefix of what it sent, clients that retry complete after the heal,
/// the server's count returns to 0 (idle timeouts reclaim wedged
/// connections), memory stays bounded, no panic, replays are identical.
#[test]
fn faults_then_heal_keep_echoes_safe_and_live() {
    let summary = check(
        "faults_then_heal_keep_echoes_safe_and_live",
        fault_case(),
        800,
    );
    summary.must_have_reached(ECHO);
    summary.must_have_reached(FAULTS);
    // The faults must bite: a fault schedule that always lands after the
    // echoes finished would prove nothing.
    if std::env::var_os("SIM_SEED").is_none() {
        assert!(
            summary.stats.faults_mid_traffic > summary.cases / 4,
            "faults rarely hit traffic: {summary:?}"
        );
        assert!(
            summary.stats.retries > summary.cases / 4,
            "faults rarely forced a retry: {summary:?}"
        );
        assert!(
            summary.stats.crashes > 0,
            "no case crashed the server: {summary:?}"
        );
    }
}

/// A graceful shutdown (as on SIGTERM) while echoes run, with any grace
/// period: it always finishes; if it drained, every admitted client is done;
/// if the grace period expired, every byte the server read still came back
/// before the close (the flush and lingering close); the server's books
/// balance; nothing panics.
#[test]
fn graceful_shutdown_loses_nothing_the_server_read() {
    let summary = check(
        "graceful_shutdown_loses_nothing_the_server_read",
        shutdown_case(),
        300,
    );
    summary.must_have_reached(SHUTDOWN);
    if std::env::var_os("SIM_SEED").is_none() {
        // Both endings must occur: echoes that finish within the grace
        // period, and echoes the expiry cuts short.
        assert!(summary.stats.done > 0, "{summary:?}");
        assert!(summary.stats.cut_short > 0, "{summary:?}");
    }
}

/// A graceful shutdown while partitions and holds cut clients off: flushes
/// to clients that cannot take their echo are cut off by the flush timeout,
/// and the shutdown still ends within grace + flush timeout + linger + a
/// round trip; nothing is corrupted, the books balance, nothing panics.
#[test]
fn a_shutdown_under_faults_ends_in_time() {
    let summary = check(
        "a_shutdown_under_faults_ends_in_time",
        shutdown_fault_case(),
        120,
    );
    if std::env::var_os("SIM_SEED").is_none() {
        assert!(summary.stats.faults_mid_traffic > 0, "{summary:?}");
        assert!(summary.stats.cut_short > 0, "{summary:?}");
    }
}

/// UDP echo with requests and replies dropped, replies duplicated, latency
/// jitter reordering them, and per-source rate limits: each client's report
/// (received, lost, duplicated, reordered, corrupted) equals an independent
/// count of what arrived, a datagram is back exactly when the server's
/// network delivered a reply, the server's counters match its wire, and
/// without faults every datagram comes back.
#[test]
fn udp_accounting_is_exact_under_loss_duplication_and_reordering() {
    let summary = check(
        "udp_accounting_is_exact_under_loss_duplication_and_reordering",
        udp_case(),
        300,
    );
    if std::env::var_os("SIM_SEED").is_none() {
        let s = summary.stats;
        assert!(s.done > 0 && s.lost > 0, "{summary:?}");
        assert!(s.duplicates > 0 && s.reordered > 0, "{summary:?}");
    }
}

/// The client against peers that are not our server: Twisted's default
/// close-on-EOF protocol, the seed's first-chunk-then-close server, a
/// store-and-forward server (answers after a half-closing client's FIN), a
/// one-byte-at-a-time server, one that corrupts a byte, one that sends
/// extra bytes, one that stops short and closes, one that never answers,
/// and a relay that re-chunks and delays in front of our server (whose
/// access list, in some cases, denies the relay or the client: it must
/// decide on the peer it reports, the client a PROXY header declared). The
/// client's verdict is exactly what the peer did: done only when every byte
/// came back, else the failure with its offset and counts; a silent peer is
/// reported at the client's timeout.
#[test]
fn client_verdicts_are_exact_against_a_peer_zoo() {
    let summary = check(
        "client_verdicts_are_exact_against_a_peer_zoo",
        zoo_case(),
        400,
    );
    summary.must_have_reached(ZOO);
    if std::env::var_os("SIM_SEED").is_none() {
        assert!(
            summary.stats.done > summary.cases / 5 && summary.stats.cut_short > summary.cases / 5,
            "the zoo must produce both verdicts often: {summary:?}"
        );
    }
}

/// The server's access list (by a deny block, or by an allow list of the
/// other hosts) turns one client host away, with and without faults: each
/// of its connections is denied before any echo (the books show it denied,
/// counted with the refusals, never admitted) and gets nothing back, while
/// every other client is served exactly as without the list.
#[test]
fn access_lists_turn_away_exactly_the_peers_they_deny() {
    let summary = check(
        "access_lists_turn_away_exactly_the_peers_they_deny",
        access_case(),
        150,
    );
    if std::env::var_os("SIM_SEED").is_none() {
        assert!(
            summary.stats.denied > summary.cases / 2 && summary.stats.done > summary.cases,
            "denials and echoes must both be common: {summary:?}"
        );
    }
}

/// Clients whose standard output blocks for a while, with a small
/// allowance of unread echo: every echo still completes exactly, no client
/// holds more than its allowance less one, plus a read, plus the event its
/// output is writing (met exactly with one-byte reads), and no idle timer
/// fires while the application is what holds the echo back.
#[test]
fn a_client_whose_output_blocks_holds_no_more_than_its_allowance() {
    let summary = check(
        "a_client_whose_output_blocks_holds_no_more_than_its_allowance",
        held_back_case(),
        100,
    );
    if std::env::var_os("SIM_SEED").is_none() {
        assert!(
            summary.stats.held_full > summary.cases / 2,
            "reading must often pause on the allowance: {summary:?}"
        );
        assert_eq!(summary.stats.done, summary.stats.attempts, "{summary:?}");
    }
}

/// Clients that read slowly but steadily, having sent everything: the
/// server has nothing to read for several idle timeouts and keeps writing
/// as the client takes its echo, a pause of a third to a half of the idle
/// timeout at a time. Writes are traffic: no idle timer fires, every echo
/// completes exactly, every connection ends cleanly (the books).
#[test]
fn the_idle_timer_counts_writes_as_traffic() {
    let summary = check(
        "the_idle_timer_counts_writes_as_traffic",
        sim::slow_reader_case(),
        60,
    );
    if std::env::var_os("SIM_SEED").is_none() {
        assert_eq!(summary.stats.done, summary.stats.attempts, "{summary:?}");
    }
    summary.must_have_reached(IDLE);
}

/// Clients whose application side fails mid-echo (a broken pipe on the
/// output, a read error on the input): each reports its local error, reads
/// nothing more from the socket, and ends the connection, which the server
/// closes in turn (its books balance, nothing stays open).
#[test]
fn a_client_whose_application_fails_stops_at_once() {
    let summary = check(
        "a_client_whose_application_fails_stops_at_once",
        broken_app_case(),
        60,
    );
    if std::env::var_os("SIM_SEED").is_none() {
        assert!(
            summary.stats.broken > summary.cases,
            "application failures must be common: {summary:?}"
        );
    }
}

/// A server that misbehaves on purpose (delay, jitter, throttle, a cut-off
/// for none, some or all connections): every client's verdict is exact
/// (done with every byte, or cut off with exactly the cut-off's bytes back,
/// and only where the cut-off may apply), no echo beats the delay or the
/// throttle, and the bytes the knobs hold back stay within the high-water
/// mark plus a read. Over the run, a partial share both cuts and spares.
#[test]
fn a_misbehaving_server_gets_an_exact_verdict_from_every_client() {
    let summary = check(
        "a_misbehaving_server_gets_an_exact_verdict_from_every_client",
        misbehaving_case(),
        100,
    );
    summary.must_have_reached(HALF_CLOSE);
    if std::env::var_os("SIM_SEED").is_none() {
        assert!(
            summary.stats.cut > 0 && summary.stats.spared > 0 && summary.stats.done > summary.cases,
            "cut-offs, connections a partial share spares, and echoes must all be common: {summary:?}"
        );
    }
}

/// A case that never yields: what the watchdog exists for.
#[derive(Debug, Clone)]
struct Spin;

impl sim::Scenario for Spin {
    fn seeded(self, _seed: u64) -> Self {
        self
    }

    fn run(&self) -> sim::Report {
        loop {
            std::hint::spin_loop();
        }
    }
}

/// Not a test of its own: `a_case_that_never_yields_is_stopped_with_its_seed`
/// starts this test binary again to run it, and watches it get stopped.
#[test]
#[ignore = "run by a_case_that_never_yields_is_stopped_with_its_seed"]
fn watchdog_target_spins() {
    check("watchdog_target_spins", proptest::strategy::Just(Spin), 1);
}

/// Starts this test binary again on `watchdog_target_spins`, with a
/// one-second watchdog.
fn spinner(stderr: std::process::Stdio) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "watchdog_target_spins",
            "--ignored",
            "--nocapture",
        ])
        .env("SIM_WATCHDOG_SECS", "1")
        .env("SIM_SEED", "42")
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Waits up to 30 s for `child` to end on its own.
fn stopped(child: &mut std::process::Child) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the spinning case was not stopped within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A busy loop inside a case does not hang the run: the watchdog stops the
/// test binary and names the property and the seed.
#[test]
fn a_case_that_never_yields_is_stopped_with_its_seed() {
    let mut child = spinner(std::process::Stdio::piped());
    let status = stopped(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(101), "{stderr}");
    assert!(
        stderr.contains(
            "watchdog: property watchdog_target_spins, seed 42: one case ran for more than 1s"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("replay: SIM_SEED=42"), "{stderr}");
}

/// Nor does it spin on when no one reads its message any more (its parent
/// test binary exited, say, as `SIM_FAIL_FAST` makes it): printing to a
/// closed pipe fails, and the watchdog must stop the process all the same.
/// (It once panicked on that failure, and orphaned busy loops ate the cores
/// of a mutation run.)
#[test]
fn a_case_that_never_yields_is_stopped_when_no_one_listens() {
    let mut child = spinner(std::process::Stdio::piped());
    drop(child.stderr.take());
    assert_eq!(stopped(&mut child).code(), Some(101));
}

/// Peers that attack the front door: PROXY headers built from the spec's
/// byte layout (malformed, overlong, of the wrong version, command or
/// family, declaring too much, stalled part way, split anywhere and
/// trickled), TLS garbage, truncated records and handshakes that stop half
/// way, and valid headers declaring IPv4, IPv6 and IPv4-mapped clients
/// behind deny blocks that cover them or miss by one bit. The server
/// refuses each bad one once (counted, one warning saying why, nothing
/// echoed, never admitted) and frees it at once; frees a stalled one at
/// its timeout, not before and not a round trip after; admits a valid one
/// as the client it declares, unless its access list covers that client.
#[test]
fn hostile_headers_are_refused_counted_and_freed_in_time() {
    let summary = check(
        "hostile_headers_are_refused_counted_and_freed_in_time",
        sim::hostile_case(),
        400,
    );
    summary.must_have_reached(HOSTILE);
}

/// Every arc of the connection's state table, every action and every end
/// is required by some property's coverage gate, or said unreachable here
/// with its reason: a new state, action or reason must join one or the
/// other.
#[test]
fn every_arc_action_and_end_is_required_somewhere_or_said_unreachable() {
    let required: Vec<&str> = [ECHO, FAULTS, TLS, SHUTDOWN, HALF_CLOSE, IDLE]
        .concat()
        .into_iter()
        .chain(NOT_SIMULATED.iter().map(|(label, _)| *label))
        .collect();
    let ends = echo_core::CloseReason::LABELS
        .iter()
        .map(|end| format!("end {end}"));
    for label in sim::coverage::TABLE
        .iter()
        .map(ToString::to_string)
        .chain(ends)
    {
        assert!(
            required.contains(&label.as_str()),
            "{label:?} is neither required by a property nor said unreachable"
        );
    }
}
