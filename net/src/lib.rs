//! Drives the `echo-core` state machines over tokio sockets.
//!
//! The driver ([`drive`]) is generic over the stream and the accept loop
//! ([`EchoServer::serve`]) over a small [`Listener`] trait and a [`Spawner`],
//! so the very same code runs on real sockets here and on turmoil's simulated
//! ones in the `sim` crate, which adds its own impls. Nothing here picks socket
//! types with a Cargo feature.
//!
//! * [`EchoServer`]: accept loops, one task per connection, an exact
//!   open-connection count, logging, graceful shutdown (told to every
//!   connection through a [`CloseSignal`], in a deterministic order),
//!   counters for a stats line ([`Traffic`]).
//! * [`connect`], [`run`], [`echo_message`], [`Pipe`]: the verifying client.
//! * [`AnyListener`], [`AnyStream`]: TCP and Unix-domain sockets bound or
//!   connected from endpoint strings; `SO_REUSEPORT` shards for one
//!   single-threaded worker each ([`AnyListener::bind_tcp_shards`]); a
//!   Unix socket's path guarded as Twisted does ([`LockFile`], [`SocketFile`]).
//! * [`EchoServer::serve_udp`], [`udp_echo`]: echo over UDP, on any
//!   [`Datagrams`] socket.
//! * [`TlsServer`], [`TlsClient`]: `ssl:` and `tls:` on rustls; a
//!   handshake makes a `TlsStream`, which the same driver runs.
//!   [`ThrowawayCa`] makes certificates for `--self-signed` and tests.
//! * [`blocking`]: the same core on blocking `std::net` sockets, no tokio.

// Denied, not forbidden: the io_uring path (`server::uring`, feature
// "uring") hands the kernel buffers that must stay put until their
// completion; it alone allows `unsafe`, and says why each block holds.
#![deny(unsafe_code)]

mod access;
pub mod blocking;
mod client;
mod contract;
mod driver;
mod listener;
mod policy;
mod server;
mod signal;
mod spawn;
mod stream;
#[cfg(test)]
mod testing;
mod tls;
mod traffic;
mod udp;
mod warnings;

pub use access::AccessList;
pub use client::{
    ClientError, ClientOptions, Connected, Connector, Pipe, SendProxy, Summary, connect,
    echo_message, echo_message_from, run,
};
pub use driver::{App, DriveConfig, NoApp, drive, now};
/// CIDR blocks, as [`AccessList`] takes them (the `ipnet` crate's).
pub use ipnet::IpNet;
pub use listener::{Accepted, AnyListener, Listener, LockFile, SocketFile};
pub use policy::{DEFAULT_LINGER, DEFAULT_READ_CHUNK, drain_events, reason_for};
pub use server::{EchoServer, PROXY_HEADER_TIMEOUT, ServerOptions, ShutdownOutcome};
/// The io_uring path: [`EchoServer::serve_uring`], and whether it can run.
#[cfg(all(feature = "uring", target_os = "linux"))]
pub mod uring {
    pub use crate::server::uring::{UringError, probe};
}
pub use signal::CloseSignal;
pub use spawn::{Spawner, TokioSpawner};
pub use stream::{AnyStream, MaybeTls, Prefixed, Socket, Stream};
pub use tls::{
    DEFAULT_HANDSHAKE_TIMEOUT, HandshakeFailure, Issued, KeyKind, SESSION_CACHE, ThrowawayCa,
    TlsClient, TlsError, TlsServer, client_subject, describe as describe_tls_error, tls_reason,
    was_resumed,
};
pub use traffic::{HandshakeTimes, Losses, PROXY_REFUSALS, Traffic};
pub use udp::{Datagrams, bind_udp, connect_udp, udp_echo};
