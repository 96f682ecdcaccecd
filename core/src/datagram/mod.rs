//! Echo over UDP (RFC 862, "UDP Based Echo Service"): each datagram
//! received is sent back to its sender, whole.
//!
//! * `server`: [`UdpEcho`](server::UdpEcho), which decides per datagram
//!   whether to echo it or drop it (rate limit, loop-prone source ports, full
//!   queue).
//! * `rate`: the per-source rate limit that keeps a UDP echo server from
//!   being a useful reflector.
//! * `client`: [`UdpEchoClient`](client::UdpEchoClient), which numbers its
//!   datagrams and accounts exactly for every reply: lost, duplicated,
//!   reordered, corrupted.

pub(crate) mod client;
pub(crate) mod rate;
pub(crate) mod server;

/// The largest UDP payload over IPv4 (65,535 - 20 - 8); IPv6 allows 20
/// more, so a 65,536-byte receive buffer never truncates either.
pub const MAX_DATAGRAM: usize = 65_507;
