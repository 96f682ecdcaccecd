//! The echo client, fed its echo by hand.

#[allow(unused_imports)]
use super::prelude::*;

use bytes::Bytes;

use super::util::*;
use crate::{
    Action, ClientConfig, ClientEvent, CloseReason, Connection, EchoClient, EchoClientConnection,
    EchoError, LostReason, SendError, WaterMarks,
};

fn config(idle_ms: Option<u64>) -> ClientConfig {
    ClientConfig {
        idle_timeout: idle_ms.map(ms),
        ..ClientConfig::default()
    }
}

fn message_client(message: &[u8], marks: WaterMarks) -> EchoClientConnection {
    let client = EchoClient::message(message.to_vec(), config(Some(1_000)));
    Connection::new(client, addr(CLIENT), addr(SERVER), marks, t0())
}

/// A client sending `message` that reads the server's banner line first.
fn banner_client(message: &[u8]) -> EchoClientConnection {
    let config = ClientConfig {
        banner: true,
        ..config(Some(1_000))
    };
    let client = EchoClient::message(message.to_vec(), config);
    Connection::new(
        client,
        addr(CLIENT),
        addr(SERVER),
        WaterMarks::default(),
        t0(),
    )
}

fn streaming_client(marks: WaterMarks) -> EchoClientConnection {
    let client = EchoClient::streaming(config(Some(1_000)));
    Connection::new(client, addr(CLIENT), addr(SERVER), marks, t0())
}

/// Sends everything pending in one write; returns it.
fn send_all(conn: &mut EchoClientConnection) -> Vec<u8> {
    let mut wire = Vec::new();
    flush_once(conn, &mut wire, usize::MAX, t0());
    wire
}

#[test]
fn message_is_sent_then_closed_only_after_the_full_echo() {
    let mut conn = message_client(b"hello server", WaterMarks::default());
    assert_eq!(conn.poll_action(), None, "no FIN before the flush");
    assert_eq!(send_all(&mut conn), b"hello server");
    assert_eq!(
        actions(&mut conn),
        vec![],
        "no FIN while the echo is owed: a server may drop it on EOF"
    );
    assert!(conn.wants_read());
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(1_000)),
        "an echo is owed"
    );
    conn.handle_data(b"hello ", t0()).unwrap();
    assert_eq!(
        events(&mut conn),
        vec![ClientEvent::Echoed(Bytes::from_static(b"hello "))]
    );
    conn.handle_data(b"server", t0()).unwrap();
    assert_eq!(
        events(&mut conn),
        vec![
            ClientEvent::Echoed(Bytes::from_static(b"server")),
            ClientEvent::Done {
                sent: 12,
                received: 12
            },
        ]
    );
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    assert_eq!(conn.poll_timeout(), None);
    assert_eq!(conn.close_reason(), Some(CloseReason::Done));
    conn.handle_connection_lost(CloseReason::Lost(LostReason::Reset), t0());
    assert_eq!(events(&mut conn), vec![], "exactly one terminal event");
}

#[test]
fn half_close_sends_fin_after_the_last_byte_and_still_verifies() {
    let half = ClientConfig {
        half_close: true,
        ..config(Some(1_000))
    };
    let client = EchoClient::message(b"hello".to_vec(), half);
    let mut conn = Connection::new(
        client,
        addr(CLIENT),
        addr(SERVER),
        WaterMarks::default(),
        t0(),
    );
    assert_eq!(conn.poll_action(), None, "no FIN before the flush");
    assert_eq!(send_all(&mut conn), b"hello");
    assert_eq!(actions(&mut conn), vec![Action::ShutdownWrite]);
    assert!(conn.wants_read(), "half-closed, still reading");
    conn.handle_data(b"hel", t0()).unwrap();
    conn.handle_read_closed(t0());
    assert_eq!(
        events(&mut conn),
        vec![
            ClientEvent::Echoed(Bytes::from_static(b"hel")),
            ClientEvent::Failed(EchoError::Truncated {
                sent: 5,
                received: 3
            }),
        ]
    );

    let client = EchoClient::streaming(half);
    let mut conn = Connection::new(
        client,
        addr(CLIENT),
        addr(SERVER),
        WaterMarks::default(),
        t0(),
    );
    assert_eq!(conn.send(b"ab", t0()), Ok(2));
    assert_eq!(send_all(&mut conn), b"ab");
    assert_eq!(actions(&mut conn), vec![], "input not finished: no FIN");
    conn.finish(t0());
    assert_eq!(actions(&mut conn), vec![Action::ShutdownWrite]);
    conn.handle_data(b"ab", t0()).unwrap();
    assert_eq!(
        events(&mut conn).last(),
        Some(&ClientEvent::Done {
            sent: 2,
            received: 2
        })
    );
    assert_eq!(actions(&mut conn), vec![Action::Close]);
}

#[test]
fn empty_message_is_done_at_once() {
    let mut conn = message_client(b"", WaterMarks::default());
    assert_eq!(
        events(&mut conn),
        vec![ClientEvent::Done {
            sent: 0,
            received: 0
        }]
    );
    assert_eq!(actions(&mut conn), vec![Action::Close]);
}

#[test]
fn mismatch_reports_the_offset_and_aborts_after_delivering_the_good_prefix() {
    let mut conn = message_client(b"abcdef", WaterMarks::default());
    send_all(&mut conn);
    let _ = actions(&mut conn);
    conn.handle_data(b"ab", t0()).unwrap();
    assert!(
        !conn.protocol().has_ended(),
        "two good bytes of six: not ended"
    );
    conn.handle_data(b"cX", t0()).unwrap();
    assert_eq!(
        events(&mut conn),
        vec![
            ClientEvent::Echoed(Bytes::from_static(b"ab")),
            ClientEvent::Echoed(Bytes::from_static(b"c")),
            ClientEvent::Failed(EchoError::Mismatch {
                offset: 3,
                expected: b'd',
                found: b'X'
            }),
        ]
    );
    assert_eq!(actions(&mut conn), vec![Action::Abort]);
    let client = conn.protocol();
    assert_eq!(
        (client.sent(), client.received()),
        (6, 3),
        "the good prefix counts"
    );
    assert!(client.has_ended());
    assert_eq!(
        EchoError::Mismatch {
            offset: 3,
            expected: b'd',
            found: b'X'
        }
        .to_string(),
        "echo mismatch at byte offset 3: sent 0x64, received 0x58"
    );
    conn.handle_connection_lost(CloseReason::Lost(LostReason::Aborted), t0());
    assert_eq!(events(&mut conn), vec![]);
}

#[test]
fn bytes_before_they_were_sent_are_unexpected() {
    let mut conn = message_client(b"abc", WaterMarks::default());
    let mut wire = Vec::new();
    flush_once(&mut conn, &mut wire, 2, t0()); // only "ab" went out
    conn.handle_data(b"abc", t0()).unwrap();
    assert_eq!(
        events(&mut conn),
        vec![
            ClientEvent::Echoed(Bytes::from_static(b"ab")),
            ClientEvent::Failed(EchoError::Unexpected { offset: 2 }),
        ]
    );
    assert_eq!(actions(&mut conn), vec![Action::Abort]);
}

#[test]
fn a_read_that_is_wrong_from_its_first_byte_echoes_nothing() {
    let mut conn = message_client(b"abcd", WaterMarks::default());
    send_all(&mut conn);
    conn.handle_data(b"ab", t0()).unwrap();
    conn.handle_data(b"Xd", t0()).unwrap();
    assert_eq!(
        events(&mut conn),
        vec![
            ClientEvent::Echoed(Bytes::from_static(b"ab")),
            ClientEvent::Failed(EchoError::Mismatch {
                offset: 2,
                expected: b'c',
                found: b'X'
            }),
        ],
        "no empty echo event between them"
    );
    assert_eq!(actions(&mut conn), vec![Action::Abort]);

    let mut conn = message_client(b"abc", WaterMarks::default());
    let mut wire = Vec::new();
    flush_once(&mut conn, &mut wire, 2, t0()); // only "ab" went out
    conn.handle_data(b"ab", t0()).unwrap();
    conn.handle_data(b"c", t0()).unwrap();
    assert_eq!(
        events(&mut conn),
        vec![
            ClientEvent::Echoed(Bytes::from_static(b"ab")),
            ClientEvent::Failed(EchoError::Unexpected { offset: 2 }),
        ]
    );
    assert_eq!(actions(&mut conn), vec![Action::Abort]);
}

#[test]
fn server_closing_early_is_truncation() {
    let mut conn = message_client(b"hello", WaterMarks::default());
    send_all(&mut conn);
    assert_eq!(actions(&mut conn), vec![]);
    conn.handle_data(b"hel", t0()).unwrap();
    conn.handle_read_closed(t0());
    assert_eq!(
        events(&mut conn),
        vec![
            ClientEvent::Echoed(Bytes::from_static(b"hel")),
            ClientEvent::Failed(EchoError::Truncated {
                sent: 5,
                received: 3
            }),
        ]
    );
    assert_eq!(
        actions(&mut conn),
        vec![Action::Close],
        "the server is done: close politely"
    );
    assert_eq!(
        EchoError::Truncated {
            sent: 5,
            received: 3
        }
        .to_string(),
        "truncated: sent 5 bytes, received 3 before the server closed"
    );
}

#[test]
fn truncation_with_unsent_input_resets_instead_of_waiting_to_flush() {
    // Found by the simulation: the server bounced while 14 KB were unsent;
    // a polite close would wait forever for a flush nobody reads.
    let mut conn = message_client(&[7u8; 100], WaterMarks::default());
    let mut wire = Vec::new();
    flush_once(&mut conn, &mut wire, 40, t0());
    conn.handle_read_closed(t0());
    assert_eq!(
        events(&mut conn),
        vec![ClientEvent::Failed(EchoError::Truncated {
            sent: 40,
            received: 0
        })]
    );
    assert_eq!(
        actions(&mut conn),
        vec![Action::Abort],
        "60 bytes unsent: reset, do not wait"
    );
    assert!(conn.pending_output().is_empty());
}

#[test]
fn no_progress_times_out() {
    let mut conn = message_client(b"hello", WaterMarks::default());
    send_all(&mut conn);
    let _ = actions(&mut conn);
    conn.handle_data(b"he", t0() + ms(600)).unwrap();
    let _ = events(&mut conn);
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(1_600)),
        "progress moves the deadline"
    );
    conn.handle_timeout(t0() + ms(1_599));
    assert_eq!(events(&mut conn), vec![], "early timeout is a no-op");
    conn.handle_timeout(t0() + ms(1_600));
    assert_eq!(
        events(&mut conn),
        vec![ClientEvent::Failed(EchoError::TimedOut {
            idle: ms(1_000),
            sent: 5,
            received: 2
        })]
    );
    assert_eq!(
        actions(&mut conn),
        vec![Action::Close],
        "nothing unsent: FIN"
    );
    assert_eq!(conn.poll_timeout(), None);
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Lost(LostReason::TimedOut))
    );
    assert_eq!(events(&mut conn), vec![]);
}

#[test]
fn reset_before_done_is_connection_lost() {
    let mut conn = message_client(b"hello", WaterMarks::default());
    send_all(&mut conn);
    conn.handle_connection_lost(CloseReason::Lost(LostReason::Reset), t0());
    let expected = EchoError::ConnectionLost {
        reason: CloseReason::Lost(LostReason::Reset),
        sent: 5,
        received: 0,
    };
    assert_eq!(events(&mut conn), vec![ClientEvent::Failed(expected)]);
    assert_eq!(
        expected.to_string(),
        "connection lost: reset by peer (sent 5 bytes, received 0)"
    );
}

#[test]
fn a_message_larger_than_the_window_is_fed_as_echoes_return() {
    let message: Vec<u8> = (0..100u8).collect();
    let mut conn = message_client(&message, marks(16, 0));
    assert_eq!(conn.buffered(), 16, "at most `high` bytes unverified");
    assert!(conn.wants_read(), "the client never pauses its own reading");
    let mut echoed = Vec::new();
    let mut guard = 0;
    while !conn.is_closed() {
        guard += 1;
        assert!(guard < 1_000);
        let sent = send_all(&mut conn);
        for b in sent.chunks(3) {
            conn.handle_data(b, t0()).unwrap();
        }
        let _ = actions(&mut conn); // Close completes itself
        for event in events(&mut conn) {
            match event {
                ClientEvent::Echoed(bytes) => echoed.extend_from_slice(&bytes),
                ClientEvent::Done { sent, received } => assert_eq!((sent, received), (100, 100)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(echoed, message);
}

#[test]
fn streaming_input_is_bounded_and_closes_after_the_echo() {
    let mut conn = streaming_client(marks(8, 0));
    assert!(conn.wants_input());
    assert_eq!(conn.input_room(), 8);
    assert_eq!(
        conn.poll_timeout(),
        None,
        "nothing owed yet: no timer while waiting for input"
    );
    assert_eq!(
        conn.send(b"0123456789", t0()),
        Ok(8),
        "takes only the window"
    );
    assert!(!conn.wants_input());
    assert_eq!(conn.send(b"89", t0()), Ok(0));
    assert_eq!(send_all(&mut conn), b"01234567");
    conn.handle_data(b"0123", t0()).unwrap();
    assert!(conn.wants_input(), "verified echoes free the window");
    assert_eq!(conn.input_room(), 4);
    assert_eq!(conn.send(b"89", t0()), Ok(2));
    conn.finish(t0());
    assert!(!conn.wants_input());
    assert_eq!(conn.send(b"x", t0()), Err(SendError::Finished));
    assert_eq!(conn.poll_action(), None);
    assert_eq!(send_all(&mut conn), b"89");
    assert_eq!(actions(&mut conn), vec![], "no FIN before the echo is back");
    conn.handle_data(b"456789", t0()).unwrap();
    let got = events(&mut conn);
    assert_eq!(
        got.last(),
        Some(&ClientEvent::Done {
            sent: 10,
            received: 10
        })
    );
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    assert_eq!(conn.send(b"x", t0()), Err(SendError::Ended));
}

#[test]
fn the_window_refills_only_once_half_of_it_is_free() {
    // Message mode: echoes trickling back one byte at a time must not turn
    // into one-byte writes.
    let message: Vec<u8> = (0..20u8).collect();
    let mut conn = message_client(&message, marks(8, 0));
    assert_eq!(send_all(&mut conn), &message[..8]);
    conn.handle_data(&message[..1], t0()).unwrap();
    conn.handle_data(&message[1..3], t0()).unwrap();
    assert_eq!(conn.pending_output(), b"", "3 of 8 free: wait for more");
    conn.handle_data(&message[3..4], t0()).unwrap();
    assert_eq!(
        conn.pending_output(),
        &message[8..12],
        "half free: refill it all"
    );

    // Streaming: the same rule, as the room offered for input.
    let mut conn = streaming_client(marks(8, 0));
    assert_eq!(conn.send(b"01234567", t0()), Ok(8));
    send_all(&mut conn);
    conn.handle_data(b"012", t0()).unwrap();
    assert_eq!(conn.input_room(), 0);
    assert!(!conn.wants_input());
    conn.handle_data(b"3", t0()).unwrap();
    assert_eq!(conn.input_room(), 4);
}

/// A streaming client that sent `abcdef` and pauses reading while 4 echoed
/// bytes wait for the application.
fn six_bytes_sent_at_most_four_undelivered(
    idle_timeout: Option<core::time::Duration>,
) -> EchoClientConnection {
    let config = ClientConfig {
        idle_timeout,
        max_undelivered: 4,
        half_close: false,
        banner: false,
    };
    let client = EchoClient::streaming(config);
    let mut conn = Connection::new(
        client,
        addr(CLIENT),
        addr(SERVER),
        WaterMarks::default(),
        t0(),
    );
    conn.send(b"abcdef", t0()).unwrap();
    send_all(&mut conn);
    conn
}

#[test]
fn no_timeout_while_the_application_holds_the_echo() {
    let mut conn = six_bytes_sent_at_most_four_undelivered(Some(ms(100)));
    conn.handle_data(b"abcd", t0() + ms(10)).unwrap();
    assert!(!conn.wants_read(), "the application has not taken the echo");
    assert_eq!(
        conn.poll_timeout(),
        None,
        "the silence is ours, not the server's: no timer"
    );
    // The application takes it a long while later: the timer restarts then,
    // and the server gets its full timeout from that moment.
    assert_eq!(events(&mut conn).len(), 1);
    let later = t0() + ms(5_000);
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(10)),
        "due at once, to restart"
    );
    conn.handle_timeout(later);
    assert_eq!(events(&mut conn), vec![], "not a failure");
    assert_eq!(conn.poll_timeout(), Some(later + ms(100)));
    conn.handle_timeout(later + ms(100));
    assert!(
        matches!(
            events(&mut conn).as_slice(),
            [ClientEvent::Failed(EchoError::TimedOut {
                sent: 6,
                received: 4,
                ..
            })]
        ),
        "a silent server still times out"
    );
}

#[test]
fn input_after_a_quiet_spell_gets_the_whole_timeout() {
    // Found by the simulation (an input quiet for longer than the timeout,
    // with everything echoed): the next input was given a deadline counted
    // from the last echo, already past, and the client timed out before its
    // write could even go.
    let mut conn = streaming_client(WaterMarks::default());
    assert_eq!(conn.send(b"ab", t0()), Ok(2));
    send_all(&mut conn);
    conn.handle_data(b"ab", t0() + ms(10)).unwrap();
    assert_eq!(events(&mut conn).len(), 1);
    assert_eq!(conn.poll_timeout(), None, "nothing owed: no timer");
    let later = t0() + ms(5_000);
    assert_eq!(conn.send(b"cd", later), Ok(2));
    assert_eq!(
        conn.poll_timeout(),
        Some(later + ms(1_000)),
        "the timeout counts from the input that made an echo owed"
    );
    conn.handle_timeout(later + ms(999));
    assert_eq!(events(&mut conn), vec![], "not timed out");
    conn.handle_timeout(later + ms(1_000));
    assert!(
        matches!(
            events(&mut conn).as_slice(),
            [ClientEvent::Failed(EchoError::TimedOut { received: 2, .. })]
        ),
        "a server silent for the whole timeout still fails it"
    );
}

#[test]
fn a_message_client_takes_no_streamed_input() {
    let mut conn = message_client(b"m", WaterMarks::default());
    assert!(!conn.wants_input());
    assert_eq!(conn.send(b"x", t0()), Err(SendError::Finished));
}

#[test]
fn undelivered_echoes_pause_reading() {
    let mut conn = six_bytes_sent_at_most_four_undelivered(None);
    conn.handle_data(b"abcd", t0()).unwrap();
    assert!(
        !conn.wants_read(),
        "4 echoed bytes wait for the application"
    );
    assert_eq!(
        events(&mut conn),
        vec![ClientEvent::Echoed(Bytes::from_static(b"abcd"))]
    );
    assert!(conn.wants_read());
    assert_eq!(conn.poll_timeout(), None, "no idle timeout configured");
}

#[test]
fn a_banner_line_is_reported_then_the_echo_after_it_is_verified_at_any_split() {
    let stream = b"pod-a\r\nhello";
    for chunk in 1..=stream.len() {
        let mut conn = banner_client(b"hello");
        send_all(&mut conn);
        for piece in stream.chunks(chunk) {
            conn.handle_data(piece, t0()).unwrap();
        }
        let got = events(&mut conn);
        assert_eq!(
            got[0],
            ClientEvent::Banner(Bytes::from_static(b"pod-a")),
            "chunk {chunk}"
        );
        let echoed: Vec<u8> = got
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Echoed(b) => Some(b.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(echoed, b"hello");
        assert!(matches!(
            got.last(),
            Some(ClientEvent::Done {
                sent: 5,
                received: 5
            })
        ));
    }
}

/// A banner of exactly [`crate::MAX_BANNER`] bytes is taken whole, even when
/// all of it arrives before its newline; one byte more is no banner, at any
/// split.
#[test]
fn the_longest_banner_is_taken_at_any_split_and_one_byte_more_is_refused() {
    for (len, taken) in [(crate::MAX_BANNER, true), (crate::MAX_BANNER + 1, false)] {
        let mut stream = vec![b'b'; len];
        stream.extend_from_slice(b"\nhi");
        for chunk in [1, 2, 7, len - 1, len, len + 1, stream.len()] {
            let mut conn = banner_client(b"hi");
            send_all(&mut conn);
            for piece in stream.chunks(chunk) {
                // Once refused, the connection is closed to further data.
                if conn.handle_data(piece, t0()).is_err() {
                    assert!(!taken, "{len} bytes, chunk {chunk}: closed early");
                    break;
                }
            }
            let got = events(&mut conn);
            if taken {
                assert_eq!(
                    got[0],
                    ClientEvent::Banner(Bytes::from(vec![b'b'; len])),
                    "{len} bytes, chunk {chunk}"
                );
                assert!(
                    matches!(got.last(), Some(ClientEvent::Done { received: 2, .. })),
                    "{len} bytes, chunk {chunk}: {got:?}"
                );
            } else {
                assert_eq!(
                    got,
                    vec![ClientEvent::Failed(EchoError::NoBanner)],
                    "{len} bytes, chunk {chunk}"
                );
            }
        }
    }
}

/// `echo-client --banner -m ""`: the back end names itself first, so even
/// an empty echo is done only after its banner line, and a server that
/// sends none is timed out, not taken for done.
#[test]
fn an_empty_echo_with_a_banner_waits_for_the_banner() {
    let mut conn = banner_client(b"");
    assert_eq!(events(&mut conn), vec![], "not done before the banner");
    assert_eq!(actions(&mut conn), vec![]);
    assert_eq!(
        conn.poll_timeout(),
        Some(t0() + ms(1_000)),
        "the banner is owed"
    );
    conn.handle_data(b"pod-b", t0()).unwrap();
    assert_eq!(events(&mut conn), vec![]);
    conn.handle_data(b"\n", t0()).unwrap();
    assert_eq!(
        events(&mut conn),
        vec![
            ClientEvent::Banner(Bytes::from_static(b"pod-b")),
            ClientEvent::Done {
                sent: 0,
                received: 0
            },
        ]
    );
    assert_eq!(actions(&mut conn), vec![Action::Close]);

    let mut silent = banner_client(b"");
    silent.handle_timeout(t0() + ms(1_000));
    assert!(matches!(
        events(&mut silent).as_slice(),
        [ClientEvent::Failed(EchoError::TimedOut { .. })]
    ));
}

#[test]
fn a_missing_banner_fails_clearly() {
    let mut conn = banner_client(b"x");
    send_all(&mut conn);
    conn.handle_data(&[b'x'; 300], t0()).unwrap();
    assert_eq!(
        events(&mut conn),
        vec![ClientEvent::Failed(EchoError::NoBanner)]
    );
    assert_eq!(actions(&mut conn), vec![Action::Abort]);
    assert_eq!(
        EchoError::NoBanner.to_string(),
        "no banner line in the server's first 256 bytes (does the server send one?)"
    );
}

#[test]
fn nothing_more_can_be_sent_once_the_connection_is_closing() {
    let client = EchoClient::streaming(config(Some(1_000)));
    let mut conn = Connection::new(
        client,
        addr(CLIENT),
        addr(SERVER),
        WaterMarks::default(),
        t0(),
    );
    assert_eq!(conn.send(b"ab", t0()), Ok(2));
    conn.close(t0()); // the application gave up, say
    assert_eq!(conn.send(b"cd", t0()), Err(SendError::Ended));
    assert_eq!(
        conn.pending_output(),
        b"ab",
        "nothing queued after the close"
    );
}
