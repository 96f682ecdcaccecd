//! The words every part of the simulation shares, and nothing else: the
//! server host's name and port, the client hosts' names, the liveness
//! bound, the seed mixer. A leaf: it imports no other module of the crate,
//! so the runs, their books and their clients depend on it and not on each
//! other.

use std::time::Duration;

/// The server host's name and port.
pub(crate) const SERVER: &str = "server";
pub(crate) const PORT: u16 = 7;
/// After the last fault heals, every client must be done within this.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(60);
pub(crate) fn client_host(i: usize) -> String {
    format!("client{i}")
}

/// SplitMix64: spreads consecutive indices into unrelated seeds.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A turmoil network with what every run sets: the seed, the epoch, the
/// latency bounds and how long it may run. Each run adds its own (TCP
/// credits, UDP capacity, random order) and builds it.
pub(crate) fn network(seed: u64, latency_ms: (u64, u64), duration: Duration) -> turmoil::Builder {
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .epoch(std::time::UNIX_EPOCH)
        .min_message_latency(Duration::from_millis(latency_ms.0))
        .max_message_latency(Duration::from_millis(latency_ms.1))
        .simulation_duration(duration);
    builder
}
