//! The generic `Connection` contract, observed through a protocol that
//! records every call it gets (a transcript, after rustls's unbuffered tests).

#[allow(unused_imports)]
use super::prelude::*;

use crate::Instant;

use super::util::*;
use crate::{Action, CloseReason, Connection, LostReason, Protocol, State, Transport, WaterMarks};

/// Records each callback; reacts to a few scripted inputs.
#[derive(Debug, Default)]
struct Recorder {
    calls: Vec<String>,
}

impl Protocol for Recorder {
    type Event = String;

    fn connection_made(&mut self, t: &mut Transport, _now: Instant) {
        self.calls
            .push(format!("made host={} peer={}", t.host(), t.peer()));
        t.write(b"greeting");
    }

    fn data_received(&mut self, data: &[u8], t: &mut Transport, _now: Instant) {
        self.calls
            .push(format!("data {:?}", String::from_utf8_lossy(data)));
        match data {
            b"half" => t.lose_write_connection(),
            b"abort" => t.abort_connection(),
            b"pause" => t.pause_producing(),
            b"resume" => t.resume_producing(),
            _ => {}
        }
    }

    fn data_written(&mut self, n: usize, _t: &mut Transport, _now: Instant) {
        self.calls.push(format!("written {n}"));
    }

    fn read_connection_lost(&mut self, t: &mut Transport, _now: Instant) {
        self.calls.push("read lost".into());
        t.lose_connection();
    }

    fn connection_lost(&mut self, reason: &CloseReason, _now: Instant) {
        self.calls.push(format!("lost {reason}"));
    }

    fn poll_event(&mut self) -> Option<String> {
        if self.calls.is_empty() {
            None
        } else {
            Some(self.calls.remove(0))
        }
    }
}

fn conn() -> Connection<Recorder> {
    Connection::new(
        Recorder::default(),
        addr(SERVER),
        addr(CLIENT),
        WaterMarks::default(),
        t0(),
    )
}

#[test]
fn callbacks_arrive_in_twisted_order_and_connection_lost_once() {
    let mut c = conn();
    assert_eq!(c.pending_output(), b"greeting", "connection_made may write");
    c.handle_written(8, t0()).unwrap();
    c.handle_data(b"hi", t0()).unwrap();
    c.handle_read_closed(t0());
    assert_eq!(actions(&mut c), vec![Action::Close]);
    assert_eq!(
        c.close_reason(),
        Some(CloseReason::Done),
        "Close completes itself"
    );
    c.handle_connection_lost(CloseReason::Lost(LostReason::Reset), t0());
    c.handle_read_closed(t0());
    c.handle_timeout(t0());
    assert_eq!(
        events(&mut c),
        vec![
            "made host=127.0.0.1:7 peer=127.0.0.1:40000",
            "written 8",
            "data \"hi\"",
            "read lost",
            "lost closed cleanly",
        ]
    );
}

#[test]
fn half_close_waits_for_the_flush_and_keeps_reading() {
    let mut c = conn();
    c.handle_data(b"half", t0()).unwrap();
    assert_eq!(c.poll_action(), None, "greeting still unsent");
    c.handle_written(5, t0()).unwrap();
    assert_eq!(c.poll_action(), None);
    c.handle_written(3, t0()).unwrap();
    assert_eq!(actions(&mut c), vec![Action::ShutdownWrite]);
    assert_eq!(c.poll_action(), None, "FIN is sent once");
    assert!(c.wants_read(), "the read side stays open");
    c.handle_data(b"more", t0()).unwrap();
    c.act(t0(), |_, t, _| t.write(b"dropped"));
    assert_eq!(c.buffered(), 0, "writes after the half-close are discarded");
}

#[test]
fn abort_discards_output_and_is_immediate() {
    let mut c = conn();
    c.handle_data(b"abort", t0()).unwrap();
    assert!(c.pending_output().is_empty());
    assert!(!c.wants_read());
    assert_eq!(actions(&mut c), vec![Action::Abort]);
    assert_eq!(c.poll_action(), None, "one terminal action");
    c.handle_connection_lost(CloseReason::Lost(LostReason::Reset), t0());
    assert_eq!(
        c.close_reason(),
        Some(CloseReason::Lost(LostReason::Aborted))
    );
}

#[test]
fn manual_pause_and_resume_gate_reading() {
    let mut c = conn();
    c.handle_data(b"pause", t0()).unwrap();
    assert!(!c.wants_read());
    c.act(t0(), |_, t, _| t.resume_producing());
    assert!(c.wants_read());
}

#[test]
fn close_reasons_read_well() {
    assert_eq!(CloseReason::Done.to_string(), "closed cleanly");
    assert!(CloseReason::Done.is_clean());
    assert!(!CloseReason::Lost(LostReason::Reset).is_clean());
    assert_eq!(
        CloseReason::Lost(LostReason::TimedOut).to_string(),
        "lost: timed out"
    );
}

#[cfg(feature = "std")]
#[test]
fn socket_errors_are_classified() {
    assert_eq!(
        LostReason::from_io(std::io::ErrorKind::ConnectionReset),
        LostReason::Reset
    );
    assert_eq!(
        LostReason::from_io(std::io::ErrorKind::BrokenPipe),
        LostReason::Reset
    );
    assert_eq!(
        LostReason::from_io(std::io::ErrorKind::PermissionDenied).to_string(),
        "I/O error: permission denied"
    );
}

#[test]
fn a_close_flushes_first_and_the_first_close_keeps_its_reason() {
    let mut c = conn(); // the greeting (8 bytes) is unsent
    assert_eq!(c.state(), State::Open);
    c.close(t0());
    let closing = State::Closing {
        reason: CloseReason::Done,
        flush_deadline: None,
    };
    assert_eq!(c.state(), closing);
    assert!(!c.wants_read(), "reading stops at once");
    c.act(t0(), |_, t, _| {
        t.lose_connection_because(LostReason::TimedOut)
    });
    assert_eq!(c.state(), closing, "a second close changes nothing");
    assert_eq!(c.poll_action(), None);
    c.handle_written(8, t0()).unwrap();
    assert_eq!(c.state(), State::Closed(CloseReason::Done));
    assert_eq!(actions(&mut c), vec![Action::Close]);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn an_abort_overrides_a_close_in_progress() {
    let mut c = conn();
    c.close(t0());
    c.abort(t0());
    assert_eq!(
        c.state(),
        State::Closed(CloseReason::Lost(LostReason::Aborted))
    );
    assert_eq!(c.pending_output(), b"", "unsent output is discarded");
    assert_eq!(actions(&mut c), vec![Action::Abort]);
    assert_eq!(events(&mut c).last().unwrap(), "lost lost: aborted");
}

#[test]
fn close_because_is_polite_when_flushed_and_a_reset_otherwise() {
    let mut c = conn();
    c.close_because(LostReason::TimedOut, t0());
    assert_eq!(
        actions(&mut c),
        vec![Action::Abort],
        "8 bytes unsent: reset"
    );
    let mut c = conn();
    c.handle_written(8, t0()).unwrap();
    c.close_because(LostReason::TimedOut, t0());
    assert_eq!(actions(&mut c), vec![Action::Close], "nothing unsent: FIN");
    assert_eq!(
        c.close_reason(),
        Some(CloseReason::Lost(LostReason::TimedOut))
    );
}

#[test]
fn a_socket_loss_while_closing_for_a_cause_of_our_own_reports_that_cause() {
    let mut c = conn();
    c.shut_down(t0(), ms(100));
    c.handle_connection_lost(CloseReason::Lost(LostReason::Reset), t0());
    assert_eq!(
        c.state(),
        State::Closed(CloseReason::Lost(LostReason::ShutDown))
    );
    assert_eq!(c.poll_action(), None, "the socket is gone: nothing to do");
    let mut c = conn();
    c.close(t0());
    c.handle_connection_lost(CloseReason::Lost(LostReason::Reset), t0());
    assert_eq!(
        c.close_reason(),
        Some(CloseReason::Lost(LostReason::Reset)),
        "a clean close cut short is the socket's doing"
    );
}

#[test]
fn a_half_close_is_not_sent_once_the_connection_closes() {
    let mut c = conn();
    c.handle_data(b"half", t0()).unwrap();
    c.close(t0());
    c.handle_written(8, t0()).unwrap();
    assert_eq!(
        actions(&mut c),
        vec![Action::Close],
        "Close includes the FIN"
    );
}

#[test]
fn addresses_say_what_they_are() {
    use crate::Address;
    assert_eq!(Address::from(addr(SERVER)).to_string(), "127.0.0.1:7");
    assert_eq!(
        Address::unix("/run/echo.sock").to_string(),
        "unix:/run/echo.sock"
    );
    assert_eq!(Address::unnamed_unix().to_string(), "unix:(unnamed)");
    assert_eq!(Address::unix("/x").ip(), None);
    let c = Connection::new(
        Recorder::default(),
        Address::unix("/run/echo.sock"),
        Address::unnamed_unix(),
        WaterMarks::default(),
        t0(),
    );
    assert_eq!(c.host().to_string(), "unix:/run/echo.sock");
    assert_eq!(c.peer(), &Address::unnamed_unix());
}

#[test]
fn a_closed_connection_hears_nothing_more_and_empty_writes_are_no_ops() {
    let mut c = conn();
    c.handle_written(0, t0()).unwrap();
    c.handle_written(8, t0()).unwrap();
    c.close(t0());
    assert_eq!(actions(&mut c), vec![Action::Close]);
    assert!(c.is_read_open(), "the peer has not sent FIN");
    c.handle_read_closed(t0()); // FIN after our close: no callback
    c.handle_written(0, t0()).unwrap();
    assert_eq!(
        events(&mut c),
        vec![
            "made host=127.0.0.1:7 peer=127.0.0.1:40000",
            "written 8",
            "lost closed cleanly",
        ],
        "no `written 0`, no `read lost` after the end"
    );
    let mut c = conn();
    c.handle_read_closed(t0());
    assert!(!c.is_read_open());
}

/// Each kind of end has its own label, and `LABELS` lists them all, once:
/// a simulation's coverage gate reads it.
#[test]
fn every_close_reason_has_a_label_of_its_own_listed_once() {
    #[cfg(feature = "std")]
    let io = crate::IoErrorKind::BrokenPipe;
    #[cfg(not(feature = "std"))]
    let io = crate::IoErrorKind(32);
    let all = [
        CloseReason::Done,
        CloseReason::Lost(LostReason::Reset),
        CloseReason::Lost(LostReason::Aborted),
        CloseReason::Lost(LostReason::TimedOut),
        CloseReason::Lost(LostReason::ShutDown),
        CloseReason::Lost(LostReason::Io(io)),
        CloseReason::Lost(LostReason::TlsAlert(40)),
        CloseReason::Lost(LostReason::Tls),
    ];
    let labels: alloc::vec::Vec<&str> = all.iter().map(CloseReason::label).collect();
    assert_eq!(labels, CloseReason::LABELS);
}
