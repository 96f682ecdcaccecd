//! Sans-IO echo server and echo client (RFC 862), in Twisted's vocabulary.
//!
//! This crate holds the protocol logic only: pure state machines that are fed
//! bytes, connection events and the current time, and answer with bytes to
//! write, actions to take on the socket, and events for the application. It
//! does no I/O, reads no clock, starts no threads and knows nothing of async
//! runtimes, so it behaves identically on tokio, on a simulated network, on a
//! blocking socket or in a unit test, and gives the same result however the
//! byte stream is cut (one byte at a time, or all at once).
//!
//! # Vocabulary
//! * [`Protocol`] and [`Factory`]: Twisted's `IProtocol` and
//!   `IProtocolFactory`.
//! * [`Transport`]: Twisted's `ITransport` as an in-memory buffer with flow
//!   control ([`WaterMarks`]).
//! * [`Connection`]: the driver an I/O adapter talks to (`handle_*` inputs,
//!   `poll_*` outputs, `wants_read`, and `wants_time`: whether a read needs a
//!   fresh clock reading at all).
//! * [`Echo`] / [`EchoFactory`]: the server side; [`EchoClient`]: a client that
//!   verifies the echo byte for byte.
//! * [`UdpEcho`] / [`UdpEchoClient`]: echo over UDP, with a
//!   per-source rate limit and exact loss/duplicate/reorder accounting.
//!
//! Every public type is at the crate root (one path each); the modules are
//! private and named for what they hold.
//! * [`ServerEndpoint`] / [`ClientEndpoint`]: Twisted endpoint strings.
//!
//! # The drive loop
//! After every input, drain the outputs in this order: write the pending
//! bytes and report how many the socket took, pop actions, pop events, re-arm
//! the timer; then read only if the connection wants to. Over a blocking
//! socket (no timer, for brevity; it needs `std`, so without it the example
//! is not compiled):
//!
#![cfg_attr(feature = "std", doc = "```no_run")]
#![cfg_attr(not(feature = "std"), doc = "```ignore")]
//! use std::io::{Read, Write};
//! use std::net::{Shutdown, TcpStream};
//! use std::time::Instant;
//! use echo_core::{Action, ClientConfig, ClientEvent, Connection, EchoClient, WaterMarks};
//!
//! let mut socket = TcpStream::connect("127.0.0.1:8888")?;
//! let (host, peer) = (socket.local_addr()?, socket.peer_addr()?);
//! let client = EchoClient::message(&b"hello server"[..], ClientConfig::default());
//! let mut conn = Connection::new(client, host, peer, WaterMarks::default(), Instant::now());
//! let mut buf = [0u8; 4096];
//! while !conn.is_closed() {
//!     while !conn.pending_output().is_empty() {
//!         let n = socket.write(conn.pending_output())?;
//!         conn.handle_written(n, Instant::now())?;
//!     }
//!     // Close and Abort complete themselves: the connection is already
//!     // closed, the socket only has to follow.
//!     while let Some(action) = conn.poll_action() {
//!         match action {
//!             Action::ShutdownWrite => socket.shutdown(Shutdown::Write)?,
//!             _ => socket.shutdown(Shutdown::Both)?,
//!         }
//!     }
//!     while let Some(event) = conn.poll_event() {
//!         match event {
//!             ClientEvent::Echoed(bytes) => print!("{}", String::from_utf8_lossy(&bytes)),
//!             ClientEvent::Done { sent, .. } => println!("\n{sent} bytes echoed"),
//!             ClientEvent::Failed(error) => eprintln!("echo failed: {error}"),
//!             _ => {}
//!         }
//!     }
//!     if conn.wants_read() {
//!         match socket.read(&mut buf)? {
//!             0 => conn.handle_read_closed(Instant::now()),
//!             n => {
//!                 conn.handle_data(&buf[..n], Instant::now())?;
//!             }
//!         }
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees (each tested)
//! * The echo is exact for every read chunking and every pattern of short
//!   writes.
//! * [`Action::ShutdownWrite`] and [`Action::Close`] come only after the
//!   output is flushed; `connection_lost` runs exactly once.
//! * A peer that never reads makes the server hold at most the high-water mark
//!   plus one read (plus `k` reads with `k` posted ahead, as a completion
//!   runtime does).
//! * Output can be borrowed ([`Connection::pending_output`], for readiness
//!   runtimes) or moved into a buffer the caller owns
//!   ([`Connection::poll_transmit`], for completion runtimes such as
//!   io_uring, whose kernel holds it until the write completes); a
//!   completion after an abort and a read after a close are normal there.
//! * After `handle_timeout(t)`, `poll_timeout()` is `None` or later than `t`.

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod address;
mod connection;
mod datagram;
mod echo;
mod endpoint;
mod error;
#[cfg(feature = "std")]
#[doc(hidden)]
pub mod fuzz;
mod protocol;
mod proxy;
mod reason;
mod time;
mod transport;

#[cfg(test)]
mod tests;

pub use address::Address;
pub use connection::{Action, Connection, Received, State, TABLE};
pub use datagram::MAX_DATAGRAM;
pub use datagram::client::{
    UDP_CLIENT_HEADER, UDP_MAX_COUNT, UdpClientConfig, UdpClientError, UdpClientEvent,
    UdpEchoClient, UdpReport,
};
pub use datagram::server::{DropReason, Transmit, UDP_LOOP_PORTS, UdpConfig, UdpEcho, UdpStats};
pub use echo::client::{
    ClientConfig, ClientEvent, DEFAULT_MAX_UNDELIVERED, EchoClient, EchoClientConnection,
    EchoError, MAX_BANNER, SendError,
};
pub use echo::faults::{Cutoff, FaultConfig};
pub use echo::server::{
    Arrival, ConnectionId, Echo, EchoFactory, EchoServerConnection, ServerConfig, ServerEvent,
};
pub use endpoint::{
    ClientEndpoint, ClientTls, DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT, DEFAULT_UNIX_MODE,
    EndpointError, MAX_SESSION_TICKETS, Role, ServerEndpoint, ServerTls, TlsMethod,
};
pub use error::{ConfigError, UsageError};
pub use protocol::{Factory, Protocol};
pub use proxy::{
    ProxyDecoder, ProxyError, ProxyHeader, Tlvs, V1_MAX_LINE, V2_MAX_BLOCK, V2_SIGNATURE,
};
pub use reason::{CloseReason, IoErrorKind, LostReason, tls_alert_name};
pub use time::Instant;
pub use transport::{KEEP_DRAINED_CAPACITY, ProducerState, Transport, WaterMarks};
