//! The contract for completion runtimes (io_uring and its kind): output
//! moved into a buffer the caller owns and acknowledged when the kernel is
//! done with it, completions that arrive after an abort, reads posted ahead
//! of a pause or a close. Unit cases first, then a model the connection
//! must agree with under any interleaving.

#[allow(unused_imports)]
use super::prelude::*;

use proptest::prelude::*;

use super::util::*;
use crate::{
    Action, CloseReason, EchoFactory, LostReason, Received, ServerConfig, UsageError, WaterMarks,
};

fn actions(conn: &mut crate::EchoServerConnection) -> Vec<Action> {
    core::iter::from_fn(|| conn.poll_action()).collect()
}

#[test]
fn transmitted_bytes_are_in_flight_until_acknowledged_and_still_count_as_unsent() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"hello", t0()).unwrap();
    let mut kernel = Vec::new();
    assert_eq!(conn.poll_transmit(3, &mut kernel), 3);
    assert_eq!(kernel, b"hel");
    assert_eq!((conn.in_flight(), conn.buffered()), (3, 5));
    assert_eq!(
        conn.pending_output(),
        b"lo",
        "the queue is what comes after"
    );
    conn.handle_data(b"!", t0()).unwrap();
    assert_eq!(
        kernel, b"hel",
        "new input never touches a buffer the kernel holds"
    );
    assert_eq!(
        conn.handle_written(4, t0()),
        Err(UsageError::WrittenTooMuch {
            written: 4,
            pending: 3
        }),
        "a completion reports on what was submitted, no more"
    );
    conn.handle_written(2, t0()).unwrap(); // a short write: resubmit "l"
    assert_eq!((conn.in_flight(), conn.buffered()), (1, 4));
    conn.handle_written(1, t0()).unwrap();
    assert_eq!(conn.in_flight(), 0);
    assert_eq!(conn.pending_output(), b"lo!");
    conn.handle_written(3, t0()).unwrap();
    assert_eq!(conn.buffered(), 0);
}

#[test]
fn an_empty_buffer_taking_the_whole_queue_swaps_allocations_instead_of_copying() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(&[7; 1000], t0()).unwrap();
    let queued_at = conn.pending_output().as_ptr();
    let mut kernel = Vec::new();
    assert_eq!(conn.poll_transmit(usize::MAX, &mut kernel), 1000);
    assert_eq!(
        kernel.as_ptr(),
        queued_at,
        "the same allocation, not a copy"
    );
    assert_eq!(kernel, vec![7; 1000]);
}

#[test]
fn a_close_waits_for_the_bytes_in_flight() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"bye", t0()).unwrap();
    let mut kernel = Vec::new();
    conn.poll_transmit(usize::MAX, &mut kernel);
    conn.handle_read_closed(t0());
    assert_eq!(actions(&mut conn), vec![], "the socket still owes 3 bytes");
    assert!(!conn.is_closed());
    conn.handle_written(3, t0()).unwrap();
    assert_eq!(actions(&mut conn), vec![Action::Close]);
    assert_eq!(conn.close_reason(), Some(CloseReason::Done));
}

#[test]
fn an_abort_drops_the_queue_but_accepts_the_completions_still_to_come() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"abcdef", t0()).unwrap();
    let mut kernel = Vec::new();
    conn.poll_transmit(4, &mut kernel);
    conn.abort(t0());
    assert_eq!(actions(&mut conn), vec![Action::Abort]);
    assert!(conn.pending_output().is_empty(), "the queue is gone");
    assert_eq!(conn.in_flight(), 4, "the kernel's bytes are not");
    assert_eq!(conn.handle_written(4, t0()), Ok(()), "a late completion");
    assert_eq!(conn.in_flight(), 0);
    assert_eq!(
        conn.close_reason(),
        Some(CloseReason::Lost(LostReason::Aborted))
    );
    assert!(matches!(
        conn.handle_written(1, t0()),
        Err(UsageError::WrittenTooMuch { .. })
    ));
}

#[test]
fn a_read_that_completes_after_a_close_is_discarded_but_one_after_end_of_file_is_misuse() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"x", t0()).unwrap();
    conn.close(t0());
    assert_eq!(conn.handle_data(b"late", t0()), Ok(Received::Discarded));
    assert_eq!(conn.pending_output(), b"x", "nothing of it is echoed");

    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.abort(t0());
    assert_eq!(conn.handle_data(b"late", t0()), Ok(Received::Discarded));

    let mut conn = server_conn(&mut factory, WaterMarks::default(), t0());
    conn.handle_data(b"x", t0()).unwrap(); // keeps it open past the EOF
    conn.handle_read_closed(t0());
    assert_eq!(
        conn.handle_data(b"y", t0()),
        Err(UsageError::AfterReadClosed),
        "no socket delivers bytes after its end-of-file"
    );
}

#[test]
fn reads_posted_ahead_of_a_pause_are_delivered_within_the_restated_bound() {
    let (high, read, ahead) = (100, 30, 4);
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, marks(high, 0), t0());
    while conn.wants_read() {
        conn.handle_data(&[1; 30], t0()).unwrap();
    }
    for _ in 1..ahead {
        assert_eq!(conn.handle_data(&[2; 30], t0()), Ok(Received::Delivered));
    }
    assert!(conn.buffered() <= high + ahead * read);
    assert!(conn.buffered() > high + read, "the reads ahead were kept");
}

#[test]
fn bytes_in_flight_hold_reading_back_as_queued_ones_do() {
    let mut factory = EchoFactory::default();
    let mut conn = server_conn(&mut factory, marks(100, 10), t0());
    let mut kernel = Vec::new();
    let mut reads = 0;
    while conn.wants_read() && reads < 100 {
        conn.handle_data(&[1; 30], t0()).unwrap();
        conn.poll_transmit(usize::MAX, &mut kernel); // a peer that never reads
        reads += 1;
    }
    assert_eq!(reads, 4, "paused once more than 100 bytes were unsent");
    assert_eq!(conn.buffered(), 120);
    conn.handle_written(109, t0()).unwrap();
    assert!(!conn.wants_read(), "11 unsent, above the low mark");
    conn.handle_written(1, t0()).unwrap();
    assert!(conn.wants_read(), "resumed at the low mark");
}

/// One step of a completion adapter, or of its peer.
#[derive(Debug, Clone)]
enum Op {
    /// A read completes with this many bytes (posted ahead if reading is
    /// paused, up to `AHEAD` reads).
    Read(usize),
    /// The peer's end-of-file.
    ReadClosed,
    /// Submit up to this many queued bytes.
    Transmit(usize),
    /// This many of the submitted bytes complete (a share of them).
    Complete(u8),
    /// A completion reports more than was submitted.
    Overreport(u8),
    /// A readiness write straight from the queue (nothing in flight).
    WriteQueued(u8),
    Close,
    Abort,
    ShutDown,
    Tick(u16),
}

const AHEAD: usize = 3;
const MAX_READ: usize = 64;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..=MAX_READ).prop_map(Op::Read),
        1 => Just(Op::ReadClosed),
        4 => (1usize..200).prop_map(Op::Transmit),
        5 => any::<u8>().prop_map(Op::Complete),
        1 => any::<u8>().prop_map(Op::Overreport),
        2 => any::<u8>().prop_map(Op::WriteQueued),
        1 => Just(Op::Close),
        1 => Just(Op::Abort),
        1 => Just(Op::ShutDown),
        1 => (0u16..2000).prop_map(Op::Tick),
    ]
}

/// Runs `ops` against an echo server connection driven the completion way,
/// checking after every step what the model says.
fn check(high: usize, idle_ms: Option<u64>, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut factory = EchoFactory::new(ServerConfig {
        idle_timeout: idle_ms.map(ms),
        ..ServerConfig::default()
    });
    let mut conn = server_conn(&mut factory, marks(high, 0), t0());
    let mut now = t0();
    // What the echo took in; what the kernel holds (submitted, not yet
    // complete); what completed, in order.
    let (mut fed, mut kernel, mut wire) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ahead, mut aborted) = (0, false);
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Read(n) => {
                if conn.wants_read() {
                    ahead = 0;
                } else if ahead < AHEAD - 1 {
                    ahead += 1;
                } else {
                    continue;
                }
                let chunk: Vec<u8> = (0..n).map(|i| (fed.len() + i) as u8).collect();
                let before = conn.buffered();
                match conn.handle_data(&chunk, now) {
                    Ok(Received::Delivered) => fed.extend_from_slice(&chunk),
                    Ok(_) => prop_assert_eq!(conn.buffered(), before, "a discarded read echoed"),
                    Err(UsageError::AfterReadClosed) => {
                        prop_assert!(!conn.is_read_open());
                        prop_assert_eq!(conn.buffered(), before);
                    }
                    Err(e) => prop_assert!(false, "step {step}: {e}"),
                }
                prop_assert!(
                    conn.buffered() <= high + AHEAD * MAX_READ,
                    "step {step}: {} unsent, above high plus {AHEAD} reads",
                    conn.buffered()
                );
            }
            Op::ReadClosed => conn.handle_read_closed(now),
            Op::Transmit(max) => {
                let queued = conn.pending_output().len();
                let moved = conn.poll_transmit(max, &mut kernel);
                prop_assert_eq!(moved, max.min(queued));
            }
            Op::Complete(share) => {
                let n = kernel.len() * usize::from(share) / 255;
                prop_assert_eq!(conn.handle_written(n, now), Ok(()), "step {}", step);
                wire.extend(kernel.drain(..n));
            }
            Op::Overreport(extra) => {
                if !kernel.is_empty() {
                    let n = kernel.len() + 1 + usize::from(extra);
                    let before = (conn.in_flight(), conn.buffered());
                    prop_assert!(conn.handle_written(n, now).is_err());
                    prop_assert_eq!((conn.in_flight(), conn.buffered()), before);
                }
            }
            Op::WriteQueued(share) => {
                if kernel.is_empty() {
                    let n = conn.pending_output().len() * usize::from(share) / 255;
                    let bytes = conn.pending_output()[..n].to_vec();
                    prop_assert_eq!(conn.handle_written(n, now), Ok(()));
                    wire.extend(bytes);
                }
            }
            Op::Close => conn.close(now),
            Op::Abort => conn.abort(now),
            Op::ShutDown => conn.shut_down(now, ms(500)),
            Op::Tick(d) => {
                now += ms(u64::from(d));
                conn.handle_timeout(now);
            }
        }
        while let Some(action) = conn.poll_action() {
            match action {
                Action::Abort => aborted = true,
                Action::Close | Action::ShutdownWrite => prop_assert!(
                    kernel.is_empty() && conn.pending_output().is_empty(),
                    "step {step}: {action:?} with {} bytes in flight and {} queued",
                    kernel.len(),
                    conn.pending_output().len()
                ),
            }
        }
        prop_assert_eq!(conn.in_flight(), kernel.len(), "step {}", step);
        prop_assert_eq!(
            conn.buffered(),
            kernel.len() + conn.pending_output().len(),
            "step {}",
            step
        );
        let mut sent = wire.clone();
        sent.extend_from_slice(&kernel);
        prop_assert!(fed.starts_with(&sent), "step {step}: bytes out of order");
        if !aborted {
            sent.extend_from_slice(conn.pending_output());
            prop_assert!(sent == fed, "step {step}: an echoed byte went missing");
        }
    }
    // However it ended, every completion the kernel still owes is taken.
    prop_assert_eq!(conn.handle_written(kernel.len(), now), Ok(()));
    prop_assert_eq!(conn.in_flight(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(super::pair::cases()))]

    #[test]
    fn a_completion_adapter_echoes_exactly_in_any_interleaving(
        high in 1usize..300,
        idle in proptest::option::of(100u64..3000),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        check(high, idle, &ops)?;
    }
}
