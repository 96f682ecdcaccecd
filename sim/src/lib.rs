//! Deterministic simulation of the echo pair: the real `echo-net` server and
//! clients, driving the real `echo-core` state machines, on turmoil's
//! simulated network, with proptest choosing message sizes, chunking, short
//! writes, latency, water marks, timeouts and a fault schedule.
//!
//! * `vocab`: the shared words (host names, port, liveness bound,
//!   the seed mixer, the network builder), a leaf every module may import.
//! * [`io`]: turmoil sockets in `echo-net`'s `Listener`/`Stream`/`Spawner`
//!   traits, with merged reads, short writes, random read sizes and fault
//!   points (`Interrupted`, `WouldBlock`, spurious wake-ups, one-byte
//!   writes, an early accept `Pending`); the spawner stops a task that
//!   reads past its budget in one turn (unfair) or spins (a busy loop).
//! * [`case`]: one scenario ([`Case`]) and the strategies that draw it.
//! * [`mod@run`]: runs a TCP case: the server host, the clients (`client`:
//!   connect, echo, verify, retry), faults, then every property of the
//!   finished run (`invariants`: buffers, memory, books, log; one file each,
//!   listed in one place).
//! * `world`: the trace, panics, counters and coverage every run shares,
//!   and the TCP run's world.
//! * `logs`: the server's log, captured per case (with the core's
//!   state-table events counted).
//! * `tls`: the same cases over TLS (`Case::tls`), on fixed-size Ed25519
//!   certificates so that replays stay exact.
//! * [`udp`]: UDP echo cases (loss, duplication, reordering, rate limits)
//!   and their invariants.
//! * [`zoo`]: the client against peers that are not our server (Twisted's
//!   close-on-EOF, the seed's first-chunk server, trickling, corrupting
//!   (on read seams), over-sending, short, resetting and silent servers, a
//!   re-chunking relay).
//! * [`hostile`]: the server against peers that attack its front door:
//!   PROXY headers built from the spec's bytes (malformed, overlong, wrong
//!   version, stalled, IPv6 and IPv4-mapped clients behind deny blocks),
//!   TLS garbage, truncated records and stalled handshakes; each attack's
//!   bytes and its oracle side by side.
//! * `knobs`: what a client must see of our server's fault knobs (the
//!   zoo's and the misbehaving cases' verdicts).
//! * [`coverage`]: what the cases reached, and the gate that fails a
//!   property whose run never reached what it must (`SIM_COVERAGE=1`
//!   prints the tables).
//! * [`mod@check`]: runs a property over seeded cases with regression seeds,
//!   a determinism self-check, shrinking and replay (`SIM_SEED`).
//!
//! One case, by hand:
//!
//! ```
//! let case = sim::case_for(&sim::no_fault_case(), 42);
//! let report = sim::run_case(&case);
//! assert!(report.result.is_ok(), "{:?}\n{}", report.result, report.trace.join("\n"));
//! assert_eq!(report.stats.done, case.connections() as u64);
//! ```

#![forbid(unsafe_code)]

pub mod case;
pub mod check;
mod client;
pub mod coverage;
pub mod hostile;
mod invariants;
pub mod io;
mod knobs;
mod logs;
pub mod run;
mod tls;
pub mod udp;
mod vocab;
mod world;
pub mod zoo;

pub use case::{
    Access, Break, Case, ClientSide, ConnPlan, Fault, Message, Network, ServerSide, Shutdown,
    Stall, access_case, broken_app_case, fault_case, held_back_case, misbehaving_case,
    no_fault_case, shutdown_case, shutdown_fault_case, slow_reader_case, tls_case, tls_fault_case,
    tls_shutdown_case,
};
pub use check::{Scenario, Summary, case_for, check};
pub use hostile::{Attack, HostileCase, hostile_case};
pub use run::run_case;
pub use udp::{UdpCase, UdpPlan, udp_case};
pub use vocab::LIVENESS_BOUND;
pub use world::{Report, Stats, Trace};
pub use zoo::{Peer, Seam, ZooCase, zoo_case};
