//! The echo server protocol (RFC 862) and the factory that admits and counts
//! its connections.

use crate::address::Address;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use core::convert::Infallible;
use core::fmt;
use core::time::Duration;

use crate::time::Instant;

use crate::connection::Connection;
use crate::echo::faults::{Cutoff, FaultConfig, Faults};
use crate::protocol::{Factory, Protocol};
use crate::reason::{CloseReason, LostReason};
use crate::transport::Transport;

/// Names one accepted connection for the lifetime of its factory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The number behind the id (ids count up from 1 per factory).
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// RFC 862 echo: every byte received is sent back, in order.
///
/// Twisted: `twisted.protocols.wire.Echo`, with two things it lacks: flow
/// control (the transport pauses reading above its high-water mark, so a peer
/// that never reads cannot grow the buffer without limit) and an optional idle
/// timeout. On the peer's end-of-file it flushes what it still owes, then
/// closes.
#[derive(Debug)]
pub struct Echo {
    /// Which connection this is, for the factory's bookkeeping.
    id: ConnectionId,
    /// Bytes received (and so owed or sent back).
    received: u64,
    /// Close after this long with no traffic either way.
    idle_timeout: Option<Duration>,
    /// Last time bytes moved in either direction; `None` before
    /// `connection_made` and once the idle timer fired (no further deadline).
    last_activity: Option<Instant>,
    /// Misbehaviour on purpose ([`FaultConfig`]); `None`, the plain echo,
    /// costs one pointer.
    faults: Option<Box<Faults>>,
    /// The line sent first, if any.
    banner: Option<&'static str>,
}

impl Echo {
    /// An echo protocol for connection `id`, optionally closing after
    /// `idle_timeout` without traffic.
    #[must_use]
    pub fn new(id: ConnectionId, idle_timeout: Option<Duration>) -> Self {
        Self {
            id,
            received: 0,
            idle_timeout,
            last_activity: None,
            faults: None,
            banner: None,
        }
    }

    /// The same, misbehaving as `faults` says (for connection `id`, which
    /// also picks whether the cut-off applies to it).
    #[must_use]
    pub fn with_faults(
        id: ConnectionId,
        idle_timeout: Option<Duration>,
        faults: &FaultConfig,
    ) -> Self {
        let mut echo = Self::new(id, idle_timeout);
        echo.faults = Faults::for_connection(faults, id.0).map(Box::new);
        echo
    }

    /// This connection's id.
    #[must_use]
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Bytes read from the peer so far: each one is echoed, or owed
    /// until the connection ends.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The most bytes this connection owed at once, held back by its fault
    /// knobs and unsent together (0 without fault knobs, where
    /// [`Transport::peak_buffered`](crate::Transport::peak_buffered) is the
    /// whole story): held bytes count against the high-water mark as unsent
    /// ones do, so this too stays within it plus one read.
    #[must_use]
    pub fn peak_owed(&self) -> usize {
        self.faults.as_ref().map_or(0, |f| f.peak_owed())
    }

    /// The fault knobs' cut-off, once this connection has reached it
    /// (`--close-after`, `--reset-after`, `--stall-after`).
    #[must_use]
    pub fn cut_off(&self) -> Option<Cutoff> {
        self.faults.as_ref().and_then(|f| f.cut_off())
    }
}

impl Echo {
    /// Restarts the idle timer, unless it has fired.
    fn touch(&mut self, now: Instant) {
        if self.last_activity.is_some() {
            self.last_activity = Some(now);
        }
    }
}

impl Protocol for Echo {
    type Event = Infallible;

    fn connection_made(&mut self, transport: &mut Transport, now: Instant) {
        self.last_activity = Some(now);
        if let Some(banner) = self.banner {
            transport.write(banner.as_bytes());
            transport.write(b"\n");
        }
        if let Some(faults) = &mut self.faults {
            faults.connection_made(transport);
        }
    }

    fn data_received(&mut self, data: &[u8], transport: &mut Transport, now: Instant) {
        self.received += data.len() as u64;
        self.touch(now);
        match &mut self.faults {
            None => transport.write(data),
            Some(faults) => faults.data_received(data, transport, now),
        }
    }

    fn data_written(&mut self, _n: usize, transport: &mut Transport, now: Instant) {
        self.touch(now);
        if let Some(faults) = &mut self.faults {
            faults.data_written(transport, now);
        }
    }

    /// Flushes what is owed, then closes: held bytes included, which go out
    /// on their schedule first.
    fn read_connection_lost(&mut self, transport: &mut Transport, _now: Instant) {
        match &mut self.faults {
            Some(faults) => faults.read_connection_lost(transport),
            None => transport.lose_connection(),
        }
    }

    /// Held bytes go out at once: the shutdown's flush is their last chance.
    fn shutting_down(&mut self, transport: &mut Transport, _now: Instant) {
        if let Some(faults) = &mut self.faults {
            faults.release_all(transport);
        }
    }

    /// Only an idle timer or fault knobs (delays, throttles) look at the
    /// time: a plain echo needs no clock per read.
    fn wants_time(&self) -> bool {
        self.idle_timeout.is_some() || self.faults.is_some()
    }

    /// The idle deadline, and the release of held bytes; a connection that
    /// holds bytes back (a delay, a throttle) is not idle.
    fn poll_timeout(&self) -> Option<Instant> {
        let holding = self.faults.as_ref().is_some_and(|f| f.is_holding());
        let idle = self
            .idle_timeout
            .filter(|_| !holding)
            .and_then(|idle| self.last_activity?.checked_add(idle));
        match (idle, self.faults.as_ref().and_then(|f| f.poll_timeout())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, transport: &mut Transport, now: Instant) {
        if let Some(faults) = &mut self.faults
            && faults.is_holding()
        {
            // Letting held bytes out is traffic: the idle time starts over.
            faults.handle_timeout(transport, now);
            self.touch(now);
        }
        let holding = self.faults.as_ref().is_some_and(|f| f.is_holding());
        let idle = self
            .idle_timeout
            .filter(|_| !holding)
            .and_then(|idle| self.last_activity?.checked_add(idle));
        if let Some(deadline) = idle
            && now >= deadline
        {
            self.last_activity = None;
            tracing::debug!(id = %self.id, "idle timeout");
            transport.close_because(LostReason::TimedOut);
        }
    }
}

/// A server-side echo connection.
pub type EchoServerConnection = Connection<Echo>;

/// Settings for [`EchoFactory`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerConfig {
    /// Refuse connections while this many are open (`None`: no limit).
    pub max_connections: Option<usize>,
    /// Close connections idle for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Misbehave on purpose (delay, throttle, cut-offs); off by default.
    pub faults: FaultConfig,
    /// Send this line (a newline is added) at the start of every
    /// connection, before echoing: the back end's name, for clients that
    /// count which one answered behind a balancer (`echo-client --banner`).
    /// Off by default: plain RFC 862.
    pub banner: Option<&'static str>,
}

/// What an adapter learnt about a connection before admitting it, beyond
/// its two addresses (a PROXY header, a TLS handshake).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arrival {
    /// The balancer it came through, when a PROXY header named the client.
    pub via: Option<Address>,
    /// A balancer's health check (PROXY LOCAL).
    pub health_check: bool,
    /// The subject of the client's TLS certificate (mutual TLS).
    pub client_subject: Option<String>,
}

/// What the server factory reports, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The factory started (its first listening endpoint is up).
    Started,
    /// The factory stopped (its last listening endpoint is down).
    Stopped,
    /// A connection was admitted.
    ConnectionMade {
        /// Its id.
        id: ConnectionId,
        /// Who connected (behind a balancer: the client its PROXY header
        /// declared).
        peer: Address,
        /// The local address it reached.
        host: Address,
        /// The balancer it came through, when a PROXY header named the
        /// client.
        via: Option<Address>,
        /// A balancer's health check (a PROXY LOCAL header): worth a debug
        /// line, not an info line.
        health_check: bool,
        /// The subject of the client's TLS certificate (mutual TLS).
        client_subject: Option<String>,
        /// Open connections, this one included.
        open: usize,
    },
    /// A connection was refused because the limit was reached.
    ConnectionRefused {
        /// Who tried.
        peer: Address,
        /// Open connections (equal to the limit).
        open: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A connection was turned away by the server's access list (counted
    /// apart from the refusals: [`EchoFactory::denied`]).
    ConnectionDenied {
        /// Who tried (behind a balancer: the declared client).
        peer: Address,
    },
    /// A connection ended.
    ConnectionLost {
        /// Its id.
        id: ConnectionId,
        /// Who it was with.
        peer: Address,
        /// Why it ended.
        reason: CloseReason,
        /// Bytes it received (and so echoed or owed).
        received: u64,
        /// Open connections, this one no longer included.
        open: usize,
        /// It was a balancer's health check.
        health_check: bool,
    },
}

/// Admits, counts and reports echo connections (the seed's `factory.conn`).
///
/// Owned by the accept loop. Each admitted connection must be reported back
/// exactly once through [`EchoFactory::handle_connection_lost`]; the count
/// keys on connection ids, so a duplicate or unknown report never skews it.
///
/// Its events must be drained with [`poll_event`](Self::poll_event) after
/// each call that can make one: it queues two per connection (made, lost)
/// and keeps them until they are polled, so an adapter that never polls
/// grows the queue for as long as it serves.
#[derive(Debug, Default)]
pub struct EchoFactory {
    /// Limits and timeouts.
    config: ServerConfig,
    /// Open connections by id, with their peers and whether each is a
    /// health check.
    open: BTreeMap<ConnectionId, (Address, bool)>,
    /// The last id handed out.
    last_id: u64,
    /// Listening endpoints started and not stopped (Twisted's `numPorts`).
    ports: usize,
    /// Connections refused at the limit so far.
    refused: u64,
    /// Connections the access list turned away so far.
    denied: u64,
    /// Connections that ended cut off by the fault knobs, by
    /// [`Cutoff::index`].
    cut_offs: [u64; 3],
    /// Events not yet polled.
    events: VecDeque<ServerEvent>,
}

impl EchoFactory {
    /// A factory with `config`.
    #[must_use]
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The settings in force.
    #[must_use]
    pub fn config(&self) -> ServerConfig {
        self.config
    }

    /// Connections admitted and not yet reported lost.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.open.len()
    }

    /// Connections admitted so far.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.last_id
    }

    /// Connections refused at the limit so far.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Connections the access list turned away so far ([`deny`](Self::deny)).
    #[must_use]
    pub fn denied(&self) -> u64 {
        self.denied
    }

    /// Connections that ended cut off by the fault knobs so far, by kind
    /// (in [`Cutoff::LABELS`] order).
    #[must_use]
    pub fn cut_offs(&self) -> [u64; 3] {
        self.cut_offs
    }

    /// Connection `id` ended for `reason` after receiving `received` bytes.
    ///
    /// Returns whether `id` was open; a second report, or one for an id this
    /// factory never admitted, changes nothing and returns `false`.
    pub fn handle_connection_lost(
        &mut self,
        id: ConnectionId,
        reason: CloseReason,
        received: u64,
    ) -> bool {
        let Some((peer, health_check)) = self.open.remove(&id) else {
            return false;
        };
        self.events.push_back(ServerEvent::ConnectionLost {
            id,
            peer,
            reason,
            received,
            open: self.open.len(),
            health_check,
        });
        true
    }

    /// Books the end of `conn`, however it ended: its reason, or
    /// [`LostReason::ShutDown`] when it has none (its adapter stopped
    /// driving it, as when a server's runtime goes away), and the bytes it
    /// received. What every adapter calls once a connection is gone.
    pub fn connection_ended(&mut self, conn: &Connection<Echo>) -> bool {
        let reason = conn
            .close_reason()
            .unwrap_or(CloseReason::Lost(LostReason::ShutDown));
        let echo = conn.protocol();
        let ended = self.handle_connection_lost(echo.id(), reason, echo.received());
        if ended && let Some(cutoff) = echo.cut_off() {
            self.cut_offs[cutoff.index()] += 1;
        }
        ended
    }

    /// Books a connection the access list turned away: counted apart from
    /// the limit's refusals, reported as [`ServerEvent::ConnectionDenied`].
    pub fn deny(&mut self, peer: &Address) {
        self.denied += 1;
        self.events
            .push_back(ServerEvent::ConnectionDenied { peer: peer.clone() });
    }

    /// [`Factory::build_protocol`] for a connection the adapter learnt
    /// more about before admitting it: through a balancer, `peer` is the
    /// client its PROXY header declared and `arrival.via` the balancer;
    /// over mutual TLS, `arrival.client_subject` names the certificate.
    pub fn build_protocol_for(
        &mut self,
        peer: &Address,
        host: &Address,
        arrival: Arrival,
    ) -> Option<Echo> {
        let Arrival {
            via,
            health_check,
            client_subject,
        } = arrival;
        if let Some(limit) = self.config.max_connections
            && self.open.len() >= limit
        {
            self.refused += 1;
            self.events.push_back(ServerEvent::ConnectionRefused {
                peer: peer.clone(),
                open: self.open.len(),
                limit,
            });
            return None;
        }
        self.last_id += 1;
        let id = ConnectionId(self.last_id);
        self.open.insert(id, (peer.clone(), health_check));
        self.events.push_back(ServerEvent::ConnectionMade {
            id,
            peer: peer.clone(),
            host: host.clone(),
            via,
            health_check,
            client_subject,
            open: self.open.len(),
        });
        let mut echo = Echo::with_faults(id, self.config.idle_timeout, &self.config.faults);
        echo.banner = self.config.banner;
        Some(echo)
    }

    /// Pops the next event to log.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Events queued and not yet polled: what an adapter that forgets to
    /// drain them lets grow.
    #[must_use]
    pub fn queued_events(&self) -> usize {
        self.events.len()
    }
}

impl Factory for EchoFactory {
    type Protocol = Echo;

    fn build_protocol(&mut self, peer: &Address, host: &Address) -> Option<Echo> {
        self.build_protocol_for(peer, host, Arrival::default())
    }

    fn do_start(&mut self) {
        if self.ports == 0 {
            self.events.push_back(ServerEvent::Started);
        }
        self.ports += 1;
    }

    fn do_stop(&mut self) {
        if self.ports == 1 {
            self.events.push_back(ServerEvent::Stopped);
        }
        self.ports = self.ports.saturating_sub(1);
    }
}
