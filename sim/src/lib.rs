//! Deterministic simulation of the echo pair: the real `echo-net` server and
//! clients, driving the real `echo-core` state machines, on turmoil's
//! simulated network, with proptest choosing message sizes, chunking, short
//! writes, latency, water marks, timeouts and a fault schedule.
//!
//! * [`io`]: turmoil sockets in `echo-net`'s `Listener`/`Stream`/`Spawner`
//!   traits, with merged reads, short writes and random read sizes.
//! * [`case`]: one scenario ([`Case`]) and the strategies that draw it.
//! * [`mod@run`]: runs a TCP case: the server host, the clients (`client`:
//!   connect, echo, verify, retry), faults, then the server's books checked
//!   (`books`).
//! * `world`: the trace, panics and counters every run shares.
//! * `logs`: the server's log, captured per case and checked against its
//!   books.
//! * `tls`: the same cases over TLS (`Case::tls`), on fixed-size Ed25519
//!   certificates so that replays stay exact.
//! * [`udp`]: UDP echo cases (loss, duplication, reordering, rate limits)
//!   and their invariants.
//! * [`zoo`]: the client against peers that are not our server (Twisted's
//!   close-on-EOF, the seed's first-chunk server, trickling, corrupting,
//!   over-sending, short, resetting and silent servers, a re-chunking relay).
//! * `knobs`: what a client must see of our server's fault knobs (the
//!   zoo's and the misbehaving cases' verdicts).
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

mod books;
pub mod case;
pub mod check;
mod client;
pub mod coverage;
pub mod hostile;
pub mod io;
mod knobs;
mod logs;
pub mod run;
mod tls;
pub mod udp;
mod world;
pub mod zoo;

pub use case::{
    Access, Break, Case, ConnPlan, Fault, Message, Shutdown, Stall, access_case, broken_app_case,
    fault_case, held_back_case, misbehaving_case, no_fault_case, shutdown_case,
    shutdown_fault_case, slow_reader_case, tls_case, tls_fault_case, tls_shutdown_case,
};
pub use check::{Scenario, Summary, case_for, check};
pub use hostile::{Attack, HostileCase, hostile_case};
pub use run::{LIVENESS_BOUND, run_case};
pub use udp::{UdpCase, UdpPlan, udp_case};
pub use world::{Report, Stats, Trace};
pub use zoo::{Peer, Seam, ZooCase, zoo_case};
