//! The echo server connection, fed bytes directly.

#[allow(unused_imports)]
use super::prelude::*;

use super::util::*;
use crate::{
    Action, CloseReason, EchoFactory, Factory, FaultConfig, LostReason, ProducerState, Received,
    ServerConfig, ServerEvent, State, UsageError, WaterMarks,
};

fn input(len: usize) -> Vec<u8> {
    (0..=255u8).cycle().take(len).collect()
}

#[test]
fn echo_is_invariant_under_read_chunking_and_partial_writes() {
    let data = input(3_000);
    for read_chunk in 1..=17 {
        for write_budget in 1..=17 {
            let mut factory = EchoFactory::default();
            let mut conn = server_conn(&mut factory, marks(64, 0), t0());
            let mut wire = Vec::new();
            for piece in data.chunks(read_chunk) {
                // Behave like the adapter: read only while the core wants input.
                while !conn.wants_read() {
                    assert!(
                        flush_once(&mut conn, &mut wire, write_budget, t0()) > 0,
                        "paused with nothing to flush"
                    );
                }
                assert_eq!(conn.poll_action(), None, "nothing terminal mid-stream");
                conn.handle_data(piece, t0()).unwrap();
                assert!(conn.buffered() <= 64 + read_chunk, "buffer bound");
            }
            conn.handle_read_closed(t0());
            while !conn.pending_output().is_empty() {
                assert_eq!(conn.poll_action(), None, "no close before the flush ends");
                flush_once(&mut conn, &mut wire, write_budget, t0());
            }
            assert_eq!(
                wire, data,
                "read_chunk={read_chunk} write_budget={write_budget}"
            );
            assert_eq!(actions(&mut conn), vec![Action::Close]);
            assert_eq!(conn.close_reason(), Some(CloseReason::Done));
            assert_eq!(conn.protocol().received(), data.len() as u64);
            assert_eq!(conn.poll_timeout(), None);
        }
    }
}

#[test]
fn one_byte_at_a_time_and_all_at_once_give_the_same_bytes() {
    let data = input(1_000);
    let mut outputs = Vec::new();
    for chunk in [1, data.len()] {
        let mut factory = EchoFactory::default();
        let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
        let mut wire = Vec::new();
        for piece in data.chunks(chunk) {
            conn.handle_data(piece, t0()).unwrap();
        }
        while flush_once(&mut conn, &mut wire, usize::MAX, t0()) > 0 {}
        outputs.push(wire);
    }
    assert_eq!(outputs[0], data);
    assert_eq!(outputs[1], data);
}

#[test]
fn reading_pauses_above_high_and_resumes_at_low() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, marks(8, 2), t0());
    conn.handle_data(&[1; 8], t0()).unwrap();
    assert!(conn.wants_read(), "pause is > high, not >= high");
    assert_eq!(conn.producer_state(), ProducerState::Producing);
    conn.handle_data(&[2], t0()).unwrap();
    assert_eq!(conn.producer_state(), ProducerState::Paused);
    assert!(!conn.wants_read());
    conn.handle_written(6, t0()).unwrap(); // 3 left: still above low
    assert_eq!(conn.producer_state(), ProducerState::Paused);
    assert!(!conn.wants_read());
    conn.handle_written(1, t0()).unwrap(); // 2 left: at low
    assert_eq!(conn.producer_state(), ProducerState::Producing);
    assert!(conn.wants_read());
    assert_eq!(conn.pending_output(), &[1, 2]);
    assert_eq!(conn.poll_action(), None);
}

#[test]
fn default_water_marks_are_twisteds() {
    let m = WaterMarks::default();
    assert_eq!((m.high(), m.low()), (64 * 1024, 0));
    assert!(WaterMarks::new(0, 0).is_err());
    assert!(WaterMarks::new(4, 5).is_err());
    assert_eq!(
        WaterMarks::new(4, 5).unwrap_err().to_string(),
        "invalid water marks high=4 low=5: need 0 < high and low <= high"
    );
}

#[test]
fn a_peer_that_never_reads_is_held_to_high_plus_one_read() {
    const READ: usize = 16 * 1024;
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    let chunk = vec![7u8; READ];
    let mut reads = 0;
    // The adapter reads while wanted; the peer never takes a byte.
    while conn.wants_read() {
        conn.handle_data(&chunk, t0()).unwrap();
        reads += 1;
        assert!(reads < 100, "reading never paused");
    }
    assert!(conn.buffered() <= WaterMarks::DEFAULT_HIGH + READ);
    assert_eq!(
        conn.buffered(),
        5 * READ,
        "paused on the first read past 64 KiB"
    );
    assert_eq!(conn.poll_action(), None);
}

#[test]
fn peer_eof_flushes_what_is_owed_then_closes() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"hello", t0()).unwrap();
    conn.handle_read_closed(t0());
    assert!(!conn.wants_read());
    assert_eq!(conn.poll_action(), None, "close waits for the flush");
    assert_eq!(conn.pending_output(), b"hello");
    conn.handle_written(3, t0()).unwrap();
    assert_eq!(conn.poll_action(), None);
    assert_eq!(conn.pending_output(), b"lo");
    conn.handle_written(2, t0()).unwrap();
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    assert!(conn.is_closed());
    assert_eq!(conn.poll_action(), None);
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn idle_timeout_closes_a_silent_connection_politely() {
    let mut factory = EchoFactory::new(ServerConfig {
        idle_timeout: Some(ms(1_000)),
        ..ServerConfig::default()
    });
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    assert_eq!(conn.poll_timeout(), Some(t0() + ms(1_000)));
    conn.handle_data(b"x", t0() + ms(400)).unwrap();
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(1_400)),
        "data resets the timer"
    );
    conn.handle_written(1, t0() + ms(500)).unwrap();
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(1_500)),
        "writes reset the timer"
    );
    conn.handle_timeout(t0() + ms(1_499)); // early: a no-op
    assert_eq!(conn.poll_action(), None);
    conn.handle_timeout(t0() + ms(1_500));
    assert_eq!(conn.poll_timeout(), None, "the timer does not fire twice");
    assert_eq!(
        actions(&mut conn),
        vec![Action::Close],
        "nothing unsent: FIN, not RST"
    );
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Lost(LostReason::TimedOut))
    );
}

#[test]
fn idle_timeout_with_unsent_output_aborts() {
    let mut factory = EchoFactory::new(ServerConfig {
        idle_timeout: Some(ms(100)),
        ..ServerConfig::default()
    });
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"stuck", t0()).unwrap();
    conn.handle_timeout(t0() + ms(100));
    assert_eq!(actions(&mut conn), vec![Action::Abort]);
    assert!(
        conn.pending_output().is_empty(),
        "abort discards unsent output"
    );
    conn.handle_connection_lost(CloseReason::Lost(LostReason::Reset), t0() + ms(100));
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Lost(LostReason::TimedOut)),
        "our cause wins"
    );
}

#[test]
fn no_timer_without_idle_timeout() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(t0() + ms(1_000_000)); // spurious
    assert_eq!(conn.poll_action(), None);
    assert!(conn.wants_read());
}

#[test]
fn factory_counts_admits_refuses_and_reports() {
    let mut factory = EchoFactory::new(ServerConfig {
        max_connections: Some(2),
        ..ServerConfig::default()
    });
    factory.do_start();
    assert_eq!(factory.poll_event(), Some(ServerEvent::Started));
    let a = factory
        .build_protocol(&addr(1).into(), &addr(SERVER).into())
        .unwrap();
    let b = factory
        .build_protocol(&addr(2).into(), &addr(SERVER).into())
        .unwrap();
    assert!(
        factory
            .build_protocol(&addr(3).into(), &addr(SERVER).into())
            .is_none(),
        "third refused"
    );
    assert_eq!(factory.open_connections(), 2);
    let made = |id, port, open| ServerEvent::ConnectionMade {
        id,
        peer: addr(port).into(),
        host: addr(SERVER).into(),
        via: None,
        health_check: false,
        client_subject: None,
        open,
    };
    assert_eq!(factory.poll_event(), Some(made(a.id(), 1, 1)));
    assert_eq!(factory.poll_event(), Some(made(b.id(), 2, 2)));
    assert_eq!(
        factory.poll_event(),
        Some(ServerEvent::ConnectionRefused {
            peer: addr(3).into(),
            open: 2,
            limit: 2
        })
    );
    assert!(factory.handle_connection_lost(a.id(), CloseReason::Done, 12));
    assert!(
        !factory.handle_connection_lost(a.id(), CloseReason::Done, 12),
        "a second report is ignored"
    );
    assert_eq!(
        factory.poll_event(),
        Some(ServerEvent::ConnectionLost {
            id: a.id(),
            peer: addr(1).into(),
            reason: CloseReason::Done,
            received: 12,
            open: 1,
            health_check: false,
        })
    );
    assert_eq!(factory.poll_event(), None);
    let c = factory
        .build_protocol(&addr(4).into(), &addr(SERVER).into())
        .expect("a slot freed up");
    assert_ne!(c.id(), a.id(), "ids are never reused");
    assert_eq!(factory.open_connections(), 2);
    assert_eq!((factory.accepted(), factory.refused()), (3, 1));
    factory.do_stop();
    assert_eq!(
        factory
            .poll_event()
            .map(|e| matches!(e, ServerEvent::ConnectionMade { .. })),
        Some(true)
    );
    assert_eq!(factory.poll_event(), Some(ServerEvent::Stopped));
    assert_eq!(factory.poll_event(), None);
}

#[test]
fn factory_start_and_stop_follow_the_port_count() {
    let mut factory = EchoFactory::default();
    factory.do_start();
    factory.do_start();
    factory.do_stop();
    assert_eq!(factory.poll_event(), Some(ServerEvent::Started));
    assert_eq!(factory.poll_event(), None, "one port still up");
    factory.do_stop();
    assert_eq!(factory.poll_event(), Some(ServerEvent::Stopped));
    factory.do_stop();
    assert_eq!(factory.poll_event(), None, "extra stops are harmless");
}

#[test]
fn unknown_connection_reports_do_not_change_the_count() {
    let mut factory = EchoFactory::default();
    let a = factory
        .build_protocol(&addr(1).into(), &addr(SERVER).into())
        .unwrap();
    let mut other = EchoFactory::default();
    let _ = other
        .build_protocol(&addr(1).into(), &addr(SERVER).into())
        .unwrap();
    let foreign = other
        .build_protocol(&addr(2).into(), &addr(SERVER).into())
        .unwrap();
    assert!(!factory.handle_connection_lost(foreign.id(), CloseReason::Done, 0));
    assert_eq!(factory.open_connections(), 1);
    assert!(factory.handle_connection_lost(a.id(), CloseReason::Done, 0));
    assert_eq!(factory.open_connections(), 0);
}

#[test]
fn edge_inputs_are_typed_errors_not_corruption() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"", t0()).unwrap();
    assert_eq!(conn.buffered(), 0, "empty data is a no-op");
    conn.handle_data(b"abc", t0()).unwrap();
    assert_eq!(conn.handle_written(0, t0()), Ok(()));
    assert_eq!(
        conn.handle_written(4, t0()),
        Err(UsageError::WrittenTooMuch {
            written: 4,
            pending: 3
        })
    );
    assert_eq!(
        conn.pending_output(),
        b"abc",
        "a rejected report changes nothing"
    );
    conn.handle_read_closed(t0());
    conn.handle_read_closed(t0()); // idempotent
    assert_eq!(
        conn.handle_data(b"late", t0()),
        Err(UsageError::AfterReadClosed)
    );
    assert_eq!(conn.pending_output(), b"abc");
    conn.handle_written(3, t0()).unwrap();
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    conn.handle_connection_lost(CloseReason::Lost(LostReason::Reset), t0());
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Done),
        "the first report stands"
    );
    assert_eq!(
        conn.handle_data(b"x", t0()),
        Ok(Received::Discarded),
        "a read completing after the close is dropped, not misuse"
    );
    assert_eq!(
        UsageError::WrittenTooMuch {
            written: 4,
            pending: 3
        }
        .to_string(),
        "reported 4 bytes written but only 3 were pending"
    );
}

#[test]
fn data_while_closing_is_discarded_and_not_echoed() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"ab", t0()).unwrap();
    conn.close(t0());
    assert!(!conn.wants_read());
    assert_eq!(conn.handle_data(b"c", t0()), Ok(Received::Discarded));
    assert_eq!(
        conn.pending_output(),
        b"ab",
        "what was owed is still flushed"
    );
    conn.handle_written(2, t0()).unwrap();
    assert_eq!(actions(&mut conn), vec![Action::Close]);
}

#[test]
fn a_drained_burst_gives_its_buffer_back() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(&[7u8; 100], t0()).unwrap();
    conn.handle_written(100, t0()).unwrap();
    let small = conn.transport().peak_idle_capacity();
    assert!(small > 0, "a small buffer is kept for the next read");
    conn.handle_data(&vec![7u8; 40_000], t0()).unwrap();
    conn.handle_written(40_000, t0()).unwrap();
    assert_eq!(conn.pending_output(), b"");
    assert!(
        conn.transport().peak_idle_capacity() <= crate::KEEP_DRAINED_CAPACITY,
        "an idle connection keeps {} bytes after a 40 KB burst",
        conn.transport().peak_idle_capacity()
    );
}

#[test]
fn an_echo_of_the_kept_size_keeps_its_buffer_for_the_next_one() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    let echo = vec![7u8; crate::KEEP_DRAINED_CAPACITY];
    conn.handle_data(&echo, t0()).unwrap();
    conn.handle_written(1000, t0()).unwrap();
    conn.handle_written(echo.len() - 1000, t0()).unwrap();
    assert_eq!(conn.pending_output(), b"");
    assert_eq!(
        conn.transport().peak_idle_capacity(),
        crate::KEEP_DRAINED_CAPACITY,
        "a 4 KiB buffer is kept whole, not freed and allocated again per echo"
    );
}

#[test]
fn a_partly_written_buffer_refilled_reuses_its_front_in_order() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    let first: Vec<u8> = (0..64).collect();
    conn.handle_data(&first, t0()).unwrap();
    conn.handle_written(60, t0()).unwrap();
    let second: Vec<u8> = (100..160).collect();
    conn.handle_data(&second, t0()).unwrap();
    let mut owed = first[60..].to_vec();
    owed.extend_from_slice(&second);
    assert_eq!(
        conn.pending_output(),
        owed,
        "the unsent tail, then the new echo"
    );
    conn.handle_written(owed.len(), t0()).unwrap();
    assert_eq!(conn.pending_output(), b"");
    // 64 bytes were unsent at most; kept apart from the 60 written, they
    // would have needed 124.
    assert!(
        conn.transport().peak_idle_capacity() < 124,
        "the buffer grew to {} bytes instead of reusing the written front",
        conn.transport().peak_idle_capacity()
    );
}

#[test]
fn shutting_down_flushes_then_reports_server_shut_down() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"ab", t0()).unwrap();
    conn.shut_down(t0(), ms(500));
    assert!(!conn.wants_read());
    assert_eq!(
        conn.pending_output(),
        b"ab",
        "what was owed is still flushed"
    );
    assert_eq!(actions(&mut conn), vec![], "no close before the flush");
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(500)),
        "the flush deadline"
    );
    conn.handle_written(2, t0() + ms(10)).unwrap();
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Lost(LostReason::ShutDown)),
        "ended by the server, not by its peer"
    );
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn a_shutdown_flush_that_outlasts_its_timeout_is_reset() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"abcd", t0()).unwrap();
    conn.shut_down(t0(), ms(500));
    conn.handle_written(1, t0() + ms(100)).unwrap();
    conn.handle_timeout(t0() + ms(499));
    assert_eq!(actions(&mut conn), vec![], "not yet");
    conn.handle_timeout(t0() + ms(500));
    assert_eq!(actions(&mut conn), vec![Action::Abort]);
    assert_eq!(conn.pending_output(), b"", "the unsent rest is discarded");
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Lost(LostReason::ShutDown))
    );
    assert_eq!(conn.poll_timeout(), None);
    assert_eq!(conn.poll_action(), None);
    assert!(factory.connection_ended(&conn));
}

#[test]
fn a_shutdown_deadline_holds_for_a_connection_already_closing() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"abcd", t0()).unwrap();
    conn.handle_read_closed(t0());
    assert!(
        matches!(conn.state(), State::Closing { .. }),
        "EOF: flushing"
    );
    assert_eq!(
        conn.poll_timeout(),
        None,
        "a plain close waits for the peer"
    );
    conn.shut_down(t0() + ms(10), ms(200));
    conn.shut_down(t0() + ms(20), ms(900)); // a later deadline does not move it
    assert_eq!(conn.poll_timeout(), Some(t0() + ms(210)));
    conn.handle_timeout(t0() + ms(210));
    assert_eq!(actions(&mut conn), vec![Action::Abort]);
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Lost(LostReason::ShutDown))
    );
}

#[test]
fn shutting_down_an_idle_connection_closes_at_once() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.shut_down(t0(), ms(500));
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    assert_eq!(
        conn.state(),
        State::Closed(CloseReason::Lost(LostReason::ShutDown))
    );
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn time_going_backwards_is_clamped() {
    let mut factory = EchoFactory::new(ServerConfig {
        idle_timeout: Some(ms(100)),
        ..ServerConfig::default()
    });
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"a", t0() + ms(50)).unwrap();
    conn.handle_data(b"b", t0() + ms(10)).unwrap(); // earlier: treated as +50
    assert_eq!(conn.poll_timeout(), Some(t0() + ms(150)));
}

#[test]
fn the_latest_time_is_the_latest_now_given() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    assert_eq!(conn.latest_time(), t0());
    conn.handle_data(b"a", t0() + ms(50)).unwrap();
    assert_eq!(conn.latest_time(), t0() + ms(50));
    conn.handle_written(1, t0() + ms(10)).unwrap(); // earlier: not taken
    assert_eq!(conn.latest_time(), t0() + ms(50));
    assert!(conn.pending_output().is_empty());
}

#[test]
fn a_plain_echo_wants_no_clock_per_read() {
    // An adapter that then passes the latest time it gave gets the same
    // echo as one that reads its clock.
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    assert!(!conn.wants_time());
    let at = conn.latest_time();
    conn.handle_data(b"hello", at).unwrap();
    assert_eq!(conn.pending_output(), b"hello");
    conn.handle_written(5, at).unwrap();
    assert!(conn.pending_output().is_empty());
    assert_eq!(conn.poll_timeout(), None);
    assert_eq!(conn.poll_action(), None);
    assert!(conn.wants_read());
    assert!(!conn.wants_time(), "still none after traffic");
}

#[test]
fn an_idle_timer_or_a_fault_knob_wants_the_time() {
    let mut idle = EchoFactory::new(ServerConfig {
        idle_timeout: Some(ms(100)),
        ..ServerConfig::default()
    });
    let conn = server_conn(&mut idle, WaterMarks::default(), t0());
    assert!(conn.wants_time(), "the idle timer restarts on every read");
    let mut delayed = EchoFactory::new(ServerConfig {
        faults: FaultConfig {
            delay: ms(10),
            ..FaultConfig::default()
        },
        ..ServerConfig::default()
    });
    let conn = server_conn(&mut delayed, WaterMarks::default(), t0());
    assert!(conn.wants_time(), "a delay counts from each read");
}

#[test]
fn loss_without_close_reports_the_sockets_reason() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"abc", t0()).unwrap();
    conn.handle_connection_lost(CloseReason::Lost(LostReason::Reset), t0());
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Lost(LostReason::Reset))
    );
    assert!(!conn.wants_read());
    assert_eq!(conn.poll_action(), None, "no actions after loss");
    assert_eq!(conn.poll_timeout(), None);
    assert!(factory.connection_ended(&conn));
    assert!(!factory.connection_ended(&conn), "booked once");
    assert_eq!(factory.open_connections(), 0);
}

#[test]
fn the_transport_counts_what_it_moved_and_what_it_kept() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, marks(64, 16), t0());
    assert_eq!(conn.transport().water_marks().low(), 16);
    conn.handle_data(&input(100), t0()).unwrap();
    conn.handle_written(30, t0()).unwrap();
    assert!(!conn.wants_read(), "paused above 64");
    assert_eq!(conn.transport().peak_buffered(), 100);
    assert_eq!(conn.transport().bytes_written(), 30);
    conn.handle_written(70, t0()).unwrap();
    assert_eq!(conn.transport().bytes_written(), 100);
    // A small drained buffer is kept for the next read (its capacity is
    // what an idle connection costs).
    assert!((100..=crate::KEEP_DRAINED_CAPACITY).contains(&conn.transport().peak_idle_capacity()));
}

#[test]
fn a_banner_goes_out_first_then_the_echo() {
    let mut factory = EchoFactory::new(ServerConfig {
        banner: Some("pod-a"),
        ..ServerConfig::default()
    });
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    assert_eq!(conn.pending_output(), b"pod-a\n");
    conn.handle_data(b"hi", t0()).unwrap();
    assert_eq!(conn.pending_output(), b"pod-a\nhi");
    assert_eq!(conn.protocol().received(), 2, "the banner is not an echo");
}
