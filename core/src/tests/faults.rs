//! The misbehaving echo ([`FaultConfig`]): delays at the exact times, the
//! throttle's rate, cut-offs at the exact byte, at every chunking.

#[allow(unused_imports)]
use super::prelude::*;

use core::time::Duration;

use super::util::*;
use crate::{
    Action, CloseReason, Cutoff, EchoFactory, EchoServerConnection, FaultConfig, Instant,
    LostReason, ServerConfig, WaterMarks,
};

fn input(len: usize) -> Vec<u8> {
    (0..=250u8).cycle().take(len).collect()
}

fn factory(faults: FaultConfig, idle: Option<Duration>) -> EchoFactory {
    EchoFactory::new(ServerConfig {
        idle_timeout: idle,
        faults,
        ..ServerConfig::default()
    })
}

fn delayed(delay: Duration) -> FaultConfig {
    FaultConfig {
        delay,
        ..FaultConfig::default()
    }
}

fn cutoff(cutoff: Cutoff) -> FaultConfig {
    FaultConfig {
        cutoff: Some(cutoff),
        cutoff_per_million: FaultConfig::EVERY_CONNECTION,
        ..FaultConfig::default()
    }
}

/// Takes everything pending, as a socket that accepts all.
fn drain(conn: &mut EchoServerConnection, wire: &mut Vec<u8>, now: Instant) {
    while !conn.pending_output().is_empty() {
        flush_once(conn, wire, usize::MAX, now);
    }
}

/// A connection throttled to `rate` bytes per second that was sent `data`
/// at `t0`, and what it wrote at once (its first bucketful).
fn throttled(rate: u64, data: &[u8]) -> (EchoServerConnection, Vec<u8>) {
    let mut f = factory(
        FaultConfig {
            throttle: Some(rate),
            ..FaultConfig::default()
        },
        None,
    );
    let mut conn = server_conn(&mut f, marks(1 << 20, 0), t0());
    conn.handle_data(data, t0()).unwrap();
    let mut wire = Vec::new();
    drain(&mut conn, &mut wire, t0());
    (conn, wire)
}

/// Fires the timer while it is due at `now`.
fn tick(conn: &mut EchoServerConnection, now: Instant) {
    while conn.poll_timeout().is_some_and(|at| at <= now) {
        conn.handle_timeout(now);
    }
}

#[test]
fn a_delay_echoes_each_chunk_exactly_that_long_after_it_arrived() {
    let delay = ms(50);
    let mut f = factory(
        FaultConfig {
            delay,
            ..FaultConfig::default()
        },
        None,
    );
    let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
    conn.handle_data(b"ab", t0()).unwrap();
    conn.handle_data(b"cd", t0() + ms(20)).unwrap();
    assert_eq!(conn.pending_output(), b"", "nothing before its time");
    assert_eq!(conn.poll_timeout(), Some(t0() + ms(50)));
    conn.handle_timeout(t0() + ms(49));
    assert_eq!(conn.pending_output(), b"");
    conn.handle_timeout(t0() + ms(50));
    assert_eq!(conn.pending_output(), b"ab", "the first chunk, at +50 ms");
    assert_eq!(conn.poll_timeout(), Some(t0() + ms(70)));
    conn.handle_timeout(t0() + ms(70));
    assert_eq!(conn.pending_output(), b"abcd", "the second, at +70 ms");
    assert_eq!(conn.poll_timeout(), None, "nothing held: no timer");
}

#[test]
fn a_delayed_echo_is_exact_at_every_chunking() {
    let data = input(2_000);
    for chunk in 1..=17 {
        let mut f = factory(
            FaultConfig {
                delay: ms(30),
                jitter: ms(25),
                seed: chunk as u64,
                ..FaultConfig::default()
            },
            None,
        );
        let mut conn = server_conn(&mut f, marks(256, 0), t0());
        let (mut wire, mut now, mut fed) = (Vec::new(), t0(), 0);
        while wire.len() < data.len() {
            if fed < data.len() && conn.wants_read() {
                let piece = &data[fed..(fed + chunk).min(data.len())];
                conn.handle_data(piece, now).unwrap();
                fed += piece.len();
            }
            now += ms(1);
            tick(&mut conn, now);
            drain(&mut conn, &mut wire, now);
            assert!(
                conn.buffered() <= 256 + chunk,
                "held bytes count against the high-water mark"
            );
            assert!(
                now < t0() + Duration::from_secs(600),
                "chunk {chunk}: stuck"
            );
        }
        assert_eq!(wire, data, "chunk {chunk}");
    }
}

#[test]
fn jitter_adds_up_to_its_bound_and_follows_the_seed() {
    let release = |seed: u64| {
        let mut f = factory(
            FaultConfig {
                delay: ms(50),
                jitter: ms(40),
                seed,
                ..FaultConfig::default()
            },
            None,
        );
        let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
        conn.handle_data(b"x", t0()).unwrap();
        conn.poll_timeout().expect("held") - t0()
    };
    let all: Vec<Duration> = (0..200).map(release).collect();
    assert!(all.iter().all(|d| (ms(50)..=ms(90)).contains(d)), "{all:?}");
    assert!(all.iter().any(|d| *d < ms(60)) && all.iter().any(|d| *d > ms(80)));
    assert_eq!(release(7), release(7), "a seed repeats exactly");
}

#[test]
fn held_bytes_pause_reading_above_the_high_water_mark() {
    let mut f = factory(delayed(ms(100)), None);
    let mut conn = server_conn(&mut f, marks(10, 0), t0());
    conn.handle_data(&input(8), t0()).unwrap();
    assert!(conn.wants_read(), "8 held, high 10");
    conn.handle_data(&input(2), t0()).unwrap();
    assert!(
        conn.wants_read(),
        "10 held, high 10: still reading (only more pauses it, as for unsent bytes)"
    );
    conn.handle_data(&input(6), t0()).unwrap();
    assert!(!conn.wants_read(), "16 held: reading pauses");
    assert_eq!(conn.buffered(), 0, "nothing released yet");
    assert_eq!(conn.protocol().peak_owed(), 16, "held bytes count as owed");
    assert_eq!(conn.transport().peak_buffered(), 0);
    conn.handle_timeout(t0() + ms(100));
    assert!(!conn.wants_read(), "released but unsent still counts");
    let mut wire = Vec::new();
    drain(&mut conn, &mut wire, t0() + ms(100));
    assert!(conn.wants_read(), "drained: reading resumes");
    assert_eq!(wire.len(), 16);
    assert_eq!(
        conn.protocol().peak_owed(),
        16,
        "a peak, kept after the drain"
    );
}

#[test]
fn the_throttle_holds_the_rate_over_a_long_run() {
    let rate = 10_000u64; // bytes per second; the bucket holds 1,000
    let data = input(50_000);
    let (mut conn, mut wire) = throttled(rate, &data);
    assert_eq!(wire.len(), 1_000, "one bucketful at once");
    let mut now = t0();
    while wire.len() < data.len() {
        let at = conn.poll_timeout().expect("held bytes have a timer");
        assert!(at > now, "the timer moves on");
        now = at;
        conn.handle_timeout(now);
        drain(&mut conn, &mut wire, now);
        let allowed = 1_000 + rate * (now - t0()).as_millis() as u64 / 1_000;
        assert!(
            wire.len() as u64 <= allowed,
            "{} bytes by {:?}",
            wire.len(),
            now - t0()
        );
    }
    assert_eq!(wire, data);
    // 49,000 bytes after the first bucketful at 10,000 B/s: 4.9 s.
    assert_eq!(now - t0(), Duration::from_millis(4_900));
}

#[test]
fn close_after_echoes_exactly_n_bytes_then_closes_at_every_chunking() {
    let data = input(500);
    for n in [0u64, 1, 7, 100, 499] {
        for chunk in 1..=17 {
            let mut f = factory(cutoff(Cutoff::CloseAfter(n)), None);
            let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
            let mut wire = Vec::new();
            for piece in data.chunks(chunk) {
                if !conn.wants_read() {
                    break;
                }
                conn.handle_data(piece, t0()).unwrap();
            }
            drain(&mut conn, &mut wire, t0());
            assert_eq!(wire, &data[..n as usize], "n {n} chunk {chunk}");
            assert_eq!(actions(&mut conn), vec![Action::Close]);
            assert_eq!(conn.close_reason(), Some(CloseReason::Done));
        }
    }
}

#[test]
fn reset_after_flushes_n_bytes_then_resets() {
    let data = input(300);
    for chunk in 1..=17 {
        let mut f = factory(cutoff(Cutoff::ResetAfter(100)), None);
        let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
        for piece in data.chunks(chunk) {
            if !conn.wants_read() {
                break;
            }
            conn.handle_data(piece, t0()).unwrap();
        }
        assert_eq!(conn.pending_output(), &data[..100]);
        assert_eq!(actions(&mut conn), vec![], "the 100 bytes go out first");
        let mut wire = Vec::new();
        flush_once(&mut conn, &mut wire, 60, t0());
        assert_eq!(actions(&mut conn), vec![]);
        flush_once(&mut conn, &mut wire, 60, t0());
        assert_eq!(wire, &data[..100]);
        assert_eq!(actions(&mut conn), vec![Action::Abort], "then RST");
        assert_eq!(
            conn.close_reason(),
            Some(CloseReason::Lost(LostReason::Aborted))
        );
    }
}

#[test]
fn stall_after_goes_silent_until_the_idle_timeout_at_every_chunking() {
    for chunk in 1..=10 {
        let mut f = factory(cutoff(Cutoff::StallAfter(5)), Some(ms(1_000)));
        let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
        for piece in b"0123456789".chunks(chunk) {
            if !conn.wants_read() {
                break;
            }
            conn.handle_data(piece, t0()).unwrap();
        }
        let mut wire = Vec::new();
        drain(&mut conn, &mut wire, t0() + ms(10));
        assert_eq!(wire, b"01234", "chunk {chunk}");
        assert!(!conn.wants_read(), "a black hole reads nothing more");
        assert_eq!(actions(&mut conn), vec![], "and keeps the connection open");
        assert_eq!(conn.poll_timeout(), Some(t0() + ms(1_010)));
        conn.handle_timeout(t0() + ms(1_010));
        assert_eq!(actions(&mut conn), vec![Action::Close]);
        assert_eq!(
            conn.close_reason(),
            Some(CloseReason::Lost(LostReason::TimedOut))
        );
    }
}

#[test]
fn the_cutoff_applies_to_the_chosen_share_of_connections_reproducibly() {
    let config = FaultConfig {
        cutoff_per_million: 250_000,
        seed: 42,
        ..cutoff(Cutoff::CloseAfter(0))
    };
    let chosen = |seed: u64| {
        let mut f = factory(FaultConfig { seed, ..config }, None);
        (0..1_000)
            .map(|_| server_conn(&mut f, WaterMarks::default(), t0()).is_closed())
            .collect::<Vec<bool>>()
    };
    let first = chosen(42);
    let cut = first.iter().filter(|&&c| c).count();
    assert!((200..300).contains(&cut), "{cut} of 1,000 cut off");
    assert_eq!(first, chosen(42), "the same seed picks the same ones");
    assert_ne!(first, chosen(43), "another seed picks others");
}

#[test]
fn no_knobs_means_the_plain_echo() {
    assert!(FaultConfig::default().is_off());
    assert!(
        FaultConfig {
            cutoff: Some(Cutoff::CloseAfter(1)),
            ..FaultConfig::default()
        }
        .is_off(),
        "a cut-off for no connection is off"
    );
    let each_alone = [
        delayed(ms(1)),
        FaultConfig {
            jitter: ms(1),
            ..FaultConfig::default()
        },
        FaultConfig {
            throttle: Some(1_000),
            ..FaultConfig::default()
        },
        cutoff(Cutoff::CloseAfter(1)),
    ];
    for knob in each_alone {
        assert!(!knob.is_off(), "{knob:?} is a knob set");
    }
    let mut f = factory(FaultConfig::default(), Some(ms(100)));
    let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
    conn.handle_data(b"hi", t0()).unwrap();
    assert_eq!(conn.pending_output(), b"hi", "echoed at once");
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(100)),
        "only the idle timer"
    );
}

#[test]
fn a_connection_holding_bytes_back_is_not_idle() {
    let mut f = factory(delayed(ms(2_000)), Some(ms(1_000)));
    let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
    conn.handle_data(b"late", t0()).unwrap();
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(2_000)),
        "no idle timer while holding"
    );
    conn.handle_timeout(t0() + ms(2_000));
    let mut wire = Vec::new();
    drain(&mut conn, &mut wire, t0() + ms(2_000));
    assert_eq!(wire, b"late");
    assert_eq!(actions(&mut conn), vec![]);
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(3_000)),
        "idle from the echo on"
    );
}

#[test]
fn held_bytes_resume_reading_at_the_low_water_mark() {
    let mut f = factory(delayed(ms(10)), None);
    let mut conn = server_conn(&mut f, marks(10, 4), t0());
    conn.handle_data(&input(12), t0()).unwrap();
    assert!(!conn.wants_read(), "12 held > high 10");
    conn.handle_timeout(t0() + ms(10));
    let mut wire = Vec::new();
    flush_once(&mut conn, &mut wire, 7, t0() + ms(10));
    assert!(!conn.wants_read(), "5 unsent > low 4");
    flush_once(&mut conn, &mut wire, 1, t0() + ms(10));
    assert!(conn.wants_read(), "4 unsent <= low 4: reading resumes");
}

#[test]
fn the_throttle_waits_only_for_the_bytes_its_bucket_lacks() {
    // At 3,001 B/s the bucket holds 300.1 bytes: a tenth of a byte stays
    // in it after each write, and each wait must count it in, so that the
    // echo ends at the first instant the rate allows (300 bytes at once,
    // the last of the other 9,700 once 300.1 + 3,001 B/s x t reaches
    // 10,000).
    let rate = 3_001u64;
    let data = input(10_000);
    let (mut conn, mut wire) = throttled(rate, &data);
    assert_eq!(wire.len(), 300, "one bucketful at once");
    let mut now = t0();
    while wire.len() < data.len() {
        now = conn.poll_timeout().expect("held bytes have a timer");
        conn.handle_timeout(now);
        drain(&mut conn, &mut wire, now);
    }
    assert_eq!(wire, data);
    // (10,000 - 300.1) bytes at 3,001 B/s, in nanoseconds, rounded up.
    let earliest = Duration::from_nanos((96_999u64 * 1_000_000_000).div_ceil(30_010));
    let took = now - t0();
    assert!(
        took >= earliest && took - earliest < Duration::from_micros(1),
        "took {took:?}, the rate allows {earliest:?}"
    );
}

#[test]
fn a_delayed_echo_outlives_the_peers_end_of_file() {
    let mut f = factory(delayed(ms(50)), None);
    let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
    conn.handle_data(b"ab", t0()).unwrap();
    // A client that half-closes after its message (`nc -N`, socat).
    conn.handle_read_closed(t0() + ms(1));
    assert_eq!(actions(&mut conn), vec![], "no close while bytes are held");
    assert!(!conn.is_closed());
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(50)),
        "still on schedule"
    );
    conn.handle_timeout(t0() + ms(49));
    assert_eq!(conn.pending_output(), b"");
    conn.handle_timeout(t0() + ms(50));
    assert_eq!(conn.pending_output(), b"ab");
    assert_eq!(actions(&mut conn), vec![], "no close before the flush");
    let mut wire = Vec::new();
    drain(&mut conn, &mut wire, t0() + ms(50));
    assert_eq!(wire, b"ab");
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    assert_eq!(conn.close_reason(), Some(CloseReason::Done));
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn an_end_of_file_with_nothing_held_closes_at_once() {
    let mut f = factory(delayed(ms(50)), None);
    let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
    conn.handle_read_closed(t0());
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    assert_eq!(conn.close_reason(), Some(CloseReason::Done));
}

#[test]
fn a_shutdown_releases_held_bytes_at_once_and_flushes_them() {
    let mut f = factory(
        FaultConfig {
            delay: Duration::from_secs(10),
            throttle: Some(10),
            ..FaultConfig::default()
        },
        None,
    );
    let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
    conn.handle_data(b"abc", t0()).unwrap();
    conn.handle_data(b"def", t0() + ms(5)).unwrap();
    assert_eq!(conn.pending_output(), b"");
    conn.shut_down(t0() + ms(10), ms(500));
    assert_eq!(
        conn.pending_output(),
        b"abcdef",
        "neither the delay nor the throttle outlasts a shutdown"
    );
    assert_eq!(actions(&mut conn), vec![], "no close before the flush");
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(510)),
        "the flush deadline"
    );
    let mut wire = Vec::new();
    drain(&mut conn, &mut wire, t0() + ms(20));
    assert_eq!(wire, b"abcdef");
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Lost(LostReason::ShutDown))
    );
}

#[test]
fn a_shutdown_still_honours_the_cut_off() {
    let mut f = factory(
        FaultConfig {
            delay: Duration::from_secs(10),
            ..cutoff(Cutoff::CloseAfter(4))
        },
        None,
    );
    let mut conn = server_conn(&mut f, WaterMarks::default(), t0());
    conn.handle_data(b"abcdef", t0()).unwrap();
    conn.shut_down(t0() + ms(10), ms(500));
    assert_eq!(
        conn.pending_output(),
        b"abcd",
        "four bytes, as the cut-off says"
    );
    let mut wire = Vec::new();
    drain(&mut conn, &mut wire, t0() + ms(20));
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    assert_eq!(wire, b"abcd");
}
