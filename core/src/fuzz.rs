//! Arbitrary input sequences for the state machines, with their invariants
//! checked by `assert!`: shared by the `cargo fuzz` target (`fuzz/`) and a
//! property test, so both check the same thing. Not part of the API.
//!
//! Each input byte string is read as a script of operations (data of any
//! size, end-of-file, written counts, including too-large ones, timeouts,
//! connection loss, close) fed to an echo server connection and to an echo
//! client connection.

use core::time::Duration;

use crate::time::Instant;

use crate::{
    Action, ClientConfig, ClientEvent, CloseReason, Connection, EchoClient, EchoFactory, Factory,
    LostReason, Received, ServerConfig, WaterMarks,
};

/// Reads the script.
struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn num(&mut self) -> usize {
        usize::from(self.byte().unwrap_or(0))
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken
    }
}

fn reason(b: usize) -> CloseReason {
    match b % 4 {
        0 => CloseReason::Done,
        1 => CloseReason::Lost(LostReason::Reset),
        2 => CloseReason::Lost(LostReason::TimedOut),
        _ => CloseReason::Lost(LostReason::Io(std::io::ErrorKind::Other)),
    }
}

/// Checks the action contract: no FIN or close before the flush, nothing
/// after a terminal action. Returns whether a terminal action was seen.
fn drain_actions<P: crate::Protocol>(conn: &mut Connection<P>, mut terminal: bool) -> (bool, bool) {
    let mut aborted = false;
    while let Some(action) = conn.poll_action() {
        assert!(!terminal, "action {action:?} after a terminal action");
        match action {
            Action::ShutdownWrite | Action::Close => {
                assert!(
                    conn.pending_output().is_empty(),
                    "{action:?} before the flush"
                );
            }
            Action::Abort => aborted = true,
        }
        terminal |= matches!(action, Action::Close | Action::Abort);
    }
    (terminal, aborted)
}

/// Runs `data` as a script against an echo server connection.
///
/// Invariants: what the socket took is always a prefix of what was read,
/// and, unless the connection aborted, what was taken plus what is pending
/// is exactly what was read; the buffer stays within high plus one read
/// while the adapter honours `wants_read`; rejected inputs change nothing;
/// the close reason, once set, never changes; timers move forward.
pub fn server_script(data: &[u8], t0: Instant) {
    const MAX_READ: usize = 64;
    let mut s = Script { data };
    let high = 1 + s.num() * 2;
    let low = high * s.num() / 256;
    let idle = match s.num() {
        0..=127 => None,
        n => Some(Duration::from_millis(n as u64)),
    };
    let marks = WaterMarks::new(high, low).expect("low <= high");
    let mut factory = EchoFactory::new(ServerConfig {
        max_connections: None,
        idle_timeout: idle,
        ..ServerConfig::default()
    });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 7));
    let echo = factory
        .build_protocol(&addr.into(), &addr.into())
        .expect("no limit");
    let mut conn = Connection::new(echo, addr, addr, marks, t0);
    let (mut now, mut fed, mut wire) = (t0, Vec::new(), Vec::new());
    let (mut terminal, mut aborted, mut reason_seen) = (false, false, None);
    while let Some(op) = s.byte() {
        match op % 8 {
            0 | 1 => {
                let n = s.num() % (MAX_READ + 1);
                let chunk = s.bytes(n);
                let (wanted, before) = (conn.wants_read(), conn.buffered());
                match conn.handle_data(chunk, now) {
                    Ok(Received::Delivered) => {
                        fed.extend_from_slice(chunk);
                        if wanted {
                            assert!(conn.buffered() <= high + MAX_READ, "buffer bound broken");
                        }
                    }
                    Ok(_) | Err(_) => assert_eq!(
                        conn.buffered(),
                        before,
                        "a discarded or rejected input changed the buffer"
                    ),
                }
            }
            2 => conn.handle_read_closed(now),
            3 => {
                let pending = conn.pending_output().len();
                let k = s.num() % (pending + 2);
                let taken = conn.pending_output()[..k.min(pending)].to_vec();
                match conn.handle_written(k, now) {
                    Ok(()) => wire.extend_from_slice(&taken),
                    Err(_) => assert!(k > pending, "a valid written count was rejected"),
                }
            }
            4 => {
                now += Duration::from_millis(s.num() as u64);
                conn.handle_timeout(now);
                if let Some(next) = conn.poll_timeout() {
                    assert!(next > now, "the timer did not move past now");
                }
            }
            5 => conn.handle_connection_lost(reason(s.num()), now),
            6 => conn.close(now),
            _ => now += Duration::from_millis(s.num() as u64 * 16),
        }
        let (t, a) = drain_actions(&mut conn, terminal);
        terminal |= t;
        aborted |= a;
        assert!(
            fed.starts_with(&wire),
            "sent bytes that were never received"
        );
        if !aborted {
            assert_eq!(
                wire.len() + conn.pending_output().len(),
                fed.len(),
                "an echoed byte went missing"
            );
            assert!(
                fed[wire.len()..] == *conn.pending_output(),
                "pending output differs from what is owed"
            );
        }
        match (reason_seen, conn.close_reason()) {
            (Some(first), now_reason) => {
                assert_eq!(now_reason, Some(first), "the close reason changed")
            }
            (None, r) => reason_seen = r,
        }
    }
}

/// Runs `data` as a script against an echo client connection, with the
/// "server" answering either the true echo or arbitrary bytes.
///
/// Invariants: delivered echoes are always a prefix of what was sent; at
/// most one terminal event; Done only when every byte came back.
pub fn client_script(data: &[u8], t0: Instant) {
    let mut s = Script { data };
    let high = 1 + s.num() * 4;
    let streaming = s.num().is_multiple_of(2);
    // One number picks both, so committed corpus entries keep their meaning.
    let undelivered = s.num();
    let config = ClientConfig {
        idle_timeout: Some(Duration::from_millis(100)),
        max_undelivered: 1 + undelivered * 8,
        half_close: undelivered % 2 == 1,
        ..ClientConfig::default()
    };
    let (client, mut input) = if streaming {
        (EchoClient::streaming(config), Vec::new())
    } else {
        let n = s.num() * 4;
        let message = s.bytes(n).to_vec();
        (EchoClient::message(message.clone(), config), message)
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let marks = WaterMarks::new(high, 0).expect("high > 0");
    let mut conn = Connection::new(client, addr, addr, marks, t0);
    let (mut now, mut sent, mut echoed, mut answered) = (t0, Vec::new(), Vec::new(), 0usize);
    let (mut terminal_actions, mut terminal_events) = (false, 0);
    while let Some(op) = s.byte() {
        match op % 8 {
            0 => {
                // The true echo of some of what went out.
                let k = s.num().min(sent.len() - answered);
                let _ = conn.handle_data(&sent[answered..answered + k], now);
                answered += k;
            }
            1 => {
                let n = s.num() % 16;
                let garbage = s.bytes(n).to_vec();
                let _ = conn.handle_data(&garbage, now);
                answered = usize::MAX / 2; // the stream is corrupt from here on
            }
            2 => {
                let pending = conn.pending_output().len();
                let k = s.num() % (pending + 2);
                let taken = conn.pending_output()[..k.min(pending)].to_vec();
                if conn.handle_written(k, now).is_ok() {
                    sent.extend_from_slice(&taken);
                }
            }
            3 => {
                now += Duration::from_millis(s.num() as u64);
                conn.handle_timeout(now);
                if let Some(next) = conn.poll_timeout() {
                    assert!(next > now, "the timer did not move past now");
                }
            }
            4 => conn.handle_read_closed(now),
            5 => {
                let n = s.num();
                let chunk = s.bytes(n).to_vec();
                if let Ok(taken) = conn.send(&chunk, now) {
                    input.extend_from_slice(&chunk[..taken]);
                }
            }
            6 => conn.finish(now),
            _ => conn.handle_connection_lost(reason(s.num()), now),
        }
        if answered > sent.len() {
            answered = sent.len(); // after garbage, "true" echoes resume at the end
        }
        terminal_actions = drain_actions(&mut conn, terminal_actions).0;
        while let Some(event) = conn.poll_event() {
            match event {
                ClientEvent::Echoed(bytes) => echoed.extend_from_slice(&bytes),
                ClientEvent::Done {
                    sent: s_count,
                    received,
                } => {
                    terminal_events += 1;
                    assert_eq!(
                        (s_count, received),
                        (input.len() as u64, input.len() as u64)
                    );
                    assert!(echoed == input, "done without the whole echo");
                }
                ClientEvent::Failed(_) => terminal_events += 1,
                // No banner is asked for here, so none is reported.
                ClientEvent::Banner(_) => panic!("a banner nobody asked for"),
            }
        }
        assert!(terminal_events <= 1, "more than one terminal event");
        assert!(
            sent.starts_with(&echoed),
            "delivered bytes that were never sent"
        );
        assert!(input.starts_with(&sent), "sent bytes that were never given");
    }
}

/// Feeds `data` (after its first byte, which picks the split sizes) to a
/// PROXY header decoder whole and in pieces.
///
/// Invariants: no panic; the same result however the bytes are cut; the
/// header never takes more bytes than were fed, and what follows it is
/// exactly the rest of the input.
pub fn proxy_script(data: &[u8]) {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let sizes = [1 + usize::from(pick % 7), 1 + usize::from(pick / 7 % 13), 1];
    let decode = |sizes: &[usize]| {
        let mut decoder = crate::ProxyDecoder::new();
        let (mut at, mut i) = (0, 0);
        while at < input.len() {
            let n = sizes[i % sizes.len()].min(input.len() - at);
            i += 1;
            match decoder.feed(&input[at..at + n]) {
                Ok(None) => at += n,
                Ok(Some((header, used))) => {
                    assert!(used <= n, "the header took more than was fed");
                    return Some(Ok((header, at + used)));
                }
                Err(e) => return Some(Err(e)),
            }
        }
        None
    };
    let whole = decode(&[input.len().max(1)]);
    assert_eq!(whole, decode(&sizes), "the result depends on the split");
    assert_eq!(whole, decode(&[1]), "one byte at a time differs");
}
