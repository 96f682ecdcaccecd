//! Twisted's `IProtocol` and `IProtocolFactory`, in Rust.

use crate::time::Instant;

use crate::address::Address;
use crate::reason::CloseReason;
use crate::transport::Transport;

/// A connection-oriented protocol, in Twisted's vocabulary.
///
/// Implementations never perform I/O: they react to calls and act on the
/// in-memory [`Transport`]. A [`Connection`](crate::Connection) owns one
/// protocol and makes these calls in order, each exactly when Twisted would.
///
/// Twisted: `twisted.internet.interfaces.IProtocol` plus
/// `IHalfCloseableProtocol`.
pub trait Protocol {
    /// What this protocol reports to the application (echoed bytes, an
    /// outcome). Use [`std::convert::Infallible`] for none.
    type Event;

    /// Twisted: `IProtocol.connectionMade`. Send a greeting here, if any.
    fn connection_made(&mut self, _transport: &mut Transport, _now: Instant) {}

    /// Twisted: `IProtocol.dataReceived`.
    ///
    /// `data` is never empty and may be any slice of the stream: one byte, a
    /// partial message or several messages at once. A protocol must give the
    /// same result for every way the stream can be cut.
    fn data_received(&mut self, data: &[u8], transport: &mut Transport, now: Instant);

    /// The socket accepted `n` more bytes of what this protocol wrote.
    ///
    /// Twisted has no direct equivalent; the closest is a producer registered
    /// on the transport being resumed. It is the place to count progress and
    /// to queue more output once there is room.
    fn data_written(&mut self, _n: usize, _transport: &mut Transport, _now: Instant) {}

    /// Twisted: `IHalfCloseableProtocol.readConnectionLost`: the peer sent FIN.
    ///
    /// The default flushes pending output, then closes. This deliberately
    /// departs from Twisted's TCP transport, which tears down a protocol that
    /// is not half-closeable at once and so would drop unflushed echoes.
    fn read_connection_lost(&mut self, transport: &mut Transport, _now: Instant) {
        transport.lose_connection();
    }

    /// The connection is shutting down: it closes once its output is
    /// flushed, and nothing is read any more. Write now whatever is still
    /// owed on a schedule of the protocol's own (an echo held back on
    /// purpose, say), or it is lost. The default holds nothing back.
    fn shutting_down(&mut self, _transport: &mut Transport, _now: Instant) {}

    /// Twisted: `IProtocol.connectionLost(reason)`. Called exactly once, last.
    fn connection_lost(&mut self, _reason: &CloseReason, _now: Instant) {}

    /// Whether the protocol can take more input now (its own backpressure,
    /// such as undelivered events). Combined with the transport's producer
    /// state in [`Connection::wants_read`](crate::Connection::wants_read).
    fn wants_read(&self) -> bool {
        true
    }

    /// Whether the protocol looks at `now` when bytes come in or go out
    /// (a timer to restart, a timestamp to take). While it says no, an
    /// adapter may skip its clock on the per-read path and pass the latest
    /// time it gave ([`Connection::latest_time`](crate::Connection::latest_time)):
    /// one clock read per echo is a measurable share of a small one. The
    /// default says yes.
    fn wants_time(&self) -> bool {
        true
    }

    /// The protocol's next deadline, if it has one (idle or progress timers).
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Time has reached (or passed) [`Protocol::poll_timeout`]. Spurious calls
    /// must be harmless: check the deadline against `now`.
    fn handle_timeout(&mut self, _transport: &mut Transport, _now: Instant) {}

    /// Pops the next event for the application.
    fn poll_event(&mut self) -> Option<Self::Event> {
        None
    }
}

/// Builds a protocol for each accepted peer, or refuses it.
///
/// Twisted: `twisted.internet.interfaces.IProtocolFactory`.
pub trait Factory {
    /// The protocol built per connection.
    type Protocol: Protocol;

    /// Twisted: `IProtocolFactory.buildProtocol(addr)`.
    ///
    /// `None` refuses the connection: the adapter closes the accepted socket
    /// at once, as Twisted's `Port` does. No clock here: the protocol learns
    /// the time in [`Protocol::connection_made`], where its timers start.
    fn build_protocol(&mut self, peer: &Address, host: &Address) -> Option<Self::Protocol>;

    /// Twisted: `IProtocolFactory.doStart`. Called once the first listening
    /// endpoint is up.
    fn do_start(&mut self) {}

    /// Twisted: `IProtocolFactory.doStop`. Called once the last listening
    /// endpoint stops.
    fn do_stop(&mut self) {}
}
