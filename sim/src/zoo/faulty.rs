//! Our own server misbehaving on purpose (`echo-server --delay`,
//! `--throttle`, `--close-after`, `--reset-after`, `--stall-after`), one
//! knob at a time: the knob, the server that has it, the verdict the
//! client earns, and the server's books afterwards.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use echo_core::{Cutoff, FaultConfig, ServerConfig};
use echo_net::{ClientError, EchoServer, ServerOptions};
use proptest::prelude::*;

use super::{Judging, PEER, PORT};
use crate::io::{IoKnobs, LocalSpawner, SimListener};
use crate::world::Shared;

/// One fault knob of our server (per mille for the cut-offs, fixed up by
/// the message's length).
pub(super) fn knob() -> impl Strategy<Value = FaultConfig> {
    let every = FaultConfig::EVERY_CONNECTION;
    let cut = move |c: Cutoff| FaultConfig {
        cutoff: Some(c),
        cutoff_per_million: every,
        ..FaultConfig::default()
    };
    prop_oneof![
        (10u64..200, 0u64..50).prop_map(|(d, j)| FaultConfig {
            delay: Duration::from_millis(d),
            jitter: Duration::from_millis(j),
            seed: d,
            ..FaultConfig::default()
        }),
        (20_000u64..200_000).prop_map(|rate| FaultConfig {
            throttle: Some(rate),
            ..FaultConfig::default()
        }),
        (0u64..1_100).prop_map(move |n| cut(Cutoff::CloseAfter(n))),
        (0u64..1_100).prop_map(move |n| cut(Cutoff::ResetAfter(n))),
        (0u64..1_100).prop_map(move |n| cut(Cutoff::StallAfter(n))),
    ]
}

/// Our server with `faults` on the peer's host; `slot` gets it, for its
/// books. Its high-water mark follows the client's window (from a few
/// bytes to 70 KB): delayed and throttled bytes held past it must pause
/// reading, and resume it once they drain.
pub(super) fn host_server(
    sim: &mut turmoil::Sim<'_>,
    faults: FaultConfig,
    client_high: usize,
    shared: &Shared,
    slot: &Rc<RefCell<Option<EchoServer>>>,
) {
    let high = (client_high / 2).max(1);
    let (panics, slot) = (Rc::clone(&shared.panics), Rc::clone(slot));
    sim.host(PEER, move || {
        let (panics, slot) = (Rc::clone(&panics), Rc::clone(&slot));
        async move {
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
            let server = EchoServer::new(ServerOptions {
                config: ServerConfig {
                    idle_timeout: Some(Duration::from_secs(10)),
                    faults,
                    ..ServerConfig::default()
                },
                marks: echo_core::WaterMarks::new(high, high / 4).expect("high > 0"),
                count_traffic: true,
                ..ServerOptions::default()
            });
            *slot.borrow_mut() = Some(server.clone());
            let listener = SimListener::new(listener, IoKnobs::PLAIN, 1);
            let spawner = LocalSpawner {
                panics,
                quantum: None,
            };
            server.serve(listener, spawner).await;
            Ok(())
        }
    });
}

/// The verdict a client must give our misbehaving server: a delayed or
/// throttled echo completes, but no sooner than the knob allows; a cut-off
/// at `n` bytes ends the echo with exactly what the knob says.
pub(super) fn earned(j: &Judging<'_>, faults: &FaultConfig) -> bool {
    let len = j.case.len as u64;
    let done = matches!(j.verdict, Ok(s) if s.sent == len && s.received == len);
    match (faults.cutoff, j.verdict) {
        (Some(cutoff), _) if crate::knobs::cut_bytes(cutoff) >= len => done,
        (Some(cutoff), Err(ClientError::Echo(error))) => {
            crate::knobs::cut_off_as_told(cutoff, error)
        }
        (Some(_), _) => false,
        (None, _) => {
            let rtt = Duration::from_millis(2 * j.case.min_latency_ms);
            done && j.at >= crate::knobs::earliest_done(faults, len, rtt)
        }
    }
}

/// Its books once its connection has ended (a stalled one at its 10 s idle
/// timeout): nothing open, the one connection counted lost, its counters
/// agreeing with what the peer sent, and a cut-off counted as the knob's.
pub(super) fn books(server: &EchoServer, faults: &FaultConfig, len: usize) -> Result<(), String> {
    let t = server.traffic();
    let lost = t.lost.clean + t.lost.reset + t.lost.timed_out + t.lost.aborted + t.lost.io;
    if t.accepted != 1 || lost != 1 || t.bytes_in > len as u64 {
        return Err(format!(
            "the misbehaving server's books do not balance: {t:?}"
        ));
    }
    // A cut-off short of the message is reached, and counted as its kind;
    // one at the message's length may be reached as the last byte goes.
    let (kind, short) = match faults.cutoff {
        Some(cutoff) => (
            Some(cutoff.index()),
            crate::knobs::cut_bytes(cutoff) < len as u64,
        ),
        None => (None, false),
    };
    let right = t.cut_offs.iter().enumerate().all(|(i, &n)| match kind {
        Some(k) if k == i && short => n == 1,
        Some(k) if k == i => n <= 1,
        _ => n == 0,
    });
    if !right {
        return Err(format!(
            "the server counted cut-offs {:?} (close, reset, stall) for {:?} on a {len}-byte echo",
            t.cut_offs, faults.cutoff
        ));
    }
    Ok(())
}
