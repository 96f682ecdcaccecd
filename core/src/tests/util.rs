//! Test harness: an in-memory link between a client and a server connection,
//! with chosen read chunkings, short-write budgets and a virtual clock.
//! (After quinn-proto's `tests/util.rs` `Pair` and Twisted's `IOPump`.)

#[allow(unused_imports)]
use super::prelude::*;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use crate::Instant;

use crate::{
    Action, ClientConfig, ClientEvent, CloseReason, Connection, EchoClient, EchoFactory,
    EchoServerConnection, Factory, LostReason, Protocol, ServerConfig, WaterMarks,
};

pub(crate) const SERVER: u16 = 7;
pub(crate) const CLIENT: u16 = 40_000;

pub(crate) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A fixed origin for virtual time (with `std`, a real instant; without
/// it, an arbitrary point on the caller's clock).
#[cfg(feature = "std")]
pub(crate) fn t0() -> Instant {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

/// A fixed origin for virtual time (with `std`, a real instant; without
/// it, an arbitrary point on the caller's clock).
#[cfg(not(feature = "std"))]
pub(crate) fn t0() -> Instant {
    Instant::from_epoch(Duration::from_secs(1_000_000))
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn marks(high: usize, low: usize) -> WaterMarks {
    WaterMarks::new(high, low).expect("valid marks")
}

/// A server connection built through a factory, as the accept loop does.
pub(crate) fn server_conn(
    factory: &mut EchoFactory,
    marks: WaterMarks,
    now: Instant,
) -> EchoServerConnection {
    let echo = factory
        .build_protocol(&addr(CLIENT).into(), &addr(SERVER).into())
        .expect("admitted");
    Connection::new(echo, addr(SERVER), addr(CLIENT), marks, now)
}

/// Writes at most `budget` bytes of the pending output into `wire` (a socket
/// that takes short writes). Returns how many bytes moved.
pub(crate) fn flush_once<P: Protocol>(
    conn: &mut Connection<P>,
    wire: &mut Vec<u8>,
    budget: usize,
    now: Instant,
) -> usize {
    let n = conn.pending_output().len().min(budget);
    wire.extend_from_slice(&conn.pending_output()[..n]);
    conn.handle_written(n, now).expect("n <= pending");
    n
}

/// Pops every event.
pub(crate) fn events<P: Protocol>(conn: &mut Connection<P>) -> Vec<P::Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// Pops every action.
///
/// Checks `has_action` on the way: it says `true` before each action and
/// `false` once none is left (the driver keeps moving bytes on its word).
pub(crate) fn actions<P: Protocol>(conn: &mut Connection<P>) -> Vec<Action> {
    std::iter::from_fn(|| {
        let owed = conn.has_action();
        let action = conn.poll_action();
        assert_eq!(
            owed,
            action.is_some(),
            "has_action said {owed} before {action:?}"
        );
        action
    })
    .collect()
}

/// Cycles through a list of sizes (each at least 1).
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    sizes: Vec<usize>,
    next: usize,
}

impl Sizes {
    pub(crate) fn new(sizes: Vec<usize>) -> Self {
        assert!(!sizes.is_empty());
        Self {
            sizes: sizes.into_iter().map(|s| s.max(1)).collect(),
            next: 0,
        }
    }

    pub(crate) fn fixed(size: usize) -> Self {
        Self::new(vec![size])
    }

    pub(crate) fn take(&mut self) -> usize {
        let s = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        s
    }

    /// The largest size this can return.
    pub(crate) fn max(&self) -> usize {
        self.sizes.iter().copied().max().unwrap_or(1)
    }
}

/// One direction of the link plus what the sending socket did.
#[derive(Debug, Default)]
struct Wire {
    bytes: VecDeque<u8>,
    /// The sender sent FIN (after the bytes above).
    fin: bool,
    /// The sender reset the connection.
    reset: bool,
    /// The reader has seen FIN.
    fin_seen: bool,
}

/// How one side of the pair is driven.
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    /// Bytes per read.
    pub(crate) reads: Sizes,
    /// Bytes the socket takes per write.
    pub(crate) writes: Sizes,
}

impl Knobs {
    pub(crate) fn fixed(read: usize, write: usize) -> Self {
        Self {
            reads: Sizes::fixed(read),
            writes: Sizes::fixed(write),
        }
    }
}

/// Everything one drive of a pair observed.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Echoed bytes the client delivered, in order.
    pub(crate) echoed: Vec<u8>,
    /// The client's terminal events.
    pub(crate) terminal: Vec<ClientEvent>,
    /// Server actions in order.
    pub(crate) server_actions: Vec<Action>,
    /// Client actions in order.
    pub(crate) client_actions: Vec<Action>,
    /// The largest unsent server buffer seen.
    pub(crate) server_peak_buffer: usize,
    /// Steps taken.
    pub(crate) steps: usize,
}

/// An echo client and an echo server over an in-memory link.
pub(crate) struct Pair {
    pub(crate) now: Instant,
    pub(crate) factory: EchoFactory,
    pub(crate) client: Connection<EchoClient>,
    pub(crate) server: EchoServerConnection,
    c2s: Wire,
    s2c: Wire,
    pub(crate) client_knobs: Knobs,
    pub(crate) server_knobs: Knobs,
    /// Virtual time added per step, cycled.
    ticks: Sizes,
    pub(crate) out: Outcome,
}

impl Pair {
    pub(crate) fn new(
        client: EchoClient,
        server_config: ServerConfig,
        server_marks: WaterMarks,
        client_marks: WaterMarks,
    ) -> Self {
        let now = t0();
        let mut factory = EchoFactory::new(server_config);
        let server = server_conn(&mut factory, server_marks, now);
        let client = Connection::new(client, addr(CLIENT), addr(SERVER), client_marks, now);
        Self {
            now,
            factory,
            client,
            server,
            c2s: Wire::default(),
            s2c: Wire::default(),
            client_knobs: Knobs::fixed(4096, 4096),
            server_knobs: Knobs::fixed(4096, 4096),
            ticks: Sizes::fixed(1),
            out: Outcome::default(),
        }
    }

    /// A pair echoing `message` with default settings.
    pub(crate) fn message(message: &[u8]) -> Self {
        let client = EchoClient::message(message.to_vec(), ClientConfig::default());
        Self::new(
            client,
            ServerConfig::default(),
            WaterMarks::default(),
            WaterMarks::default(),
        )
    }

    pub(crate) fn with_knobs(mut self, client: Knobs, server: Knobs) -> Self {
        self.client_knobs = client;
        self.server_knobs = server;
        self
    }

    pub(crate) fn with_ticks(mut self, ticks: Vec<usize>) -> Self {
        self.ticks = Sizes::new(ticks);
        self
    }

    /// One round: each side writes, acts, reports, reads; then time moves.
    /// Checks the core's invariants on every output.
    pub(crate) fn step(&mut self) {
        self.out.steps += 1;
        let now = self.now;
        let read_max = self.server_knobs.reads.max();
        drive_side(
            &mut self.client,
            &mut self.c2s,
            &mut self.s2c,
            &mut self.client_knobs,
            now,
            &mut self.out.client_actions,
        );
        for event in events(&mut self.client) {
            match event {
                ClientEvent::Echoed(bytes) => self.out.echoed.extend_from_slice(&bytes),
                other => self.out.terminal.push(other),
            }
        }
        drive_side(
            &mut self.server,
            &mut self.s2c,
            &mut self.c2s,
            &mut self.server_knobs,
            now,
            &mut self.out.server_actions,
        );
        let high = self.server.transport().water_marks().high();
        let buffered = self.server.buffered();
        self.out.server_peak_buffer = self.out.server_peak_buffer.max(buffered);
        assert!(
            buffered <= high + read_max,
            "server buffer {buffered} exceeds high {high} + one read {read_max}"
        );
        if self.server.is_closed() {
            self.factory.connection_ended(&self.server);
        }
        let tick = self.ticks.take() as u64;
        self.now += ms(tick);
        fire_timer(&mut self.client, self.now);
        carry_out(
            &mut self.client,
            &mut self.c2s,
            self.now,
            &mut self.out.client_actions,
        );
        fire_timer(&mut self.server, self.now);
        carry_out(
            &mut self.server,
            &mut self.s2c,
            self.now,
            &mut self.out.server_actions,
        );
    }

    pub(crate) fn is_done(&self) -> bool {
        self.client.is_closed() && self.server.is_closed()
    }

    /// Steps until both sides are closed; panics after `max_steps`
    /// (Twisted's `IOPump` "Too long").
    pub(crate) fn drive_bounded(&mut self, max_steps: usize) -> &Outcome {
        while !self.is_done() {
            assert!(
                self.out.steps < max_steps,
                "pair did not finish in {max_steps} steps"
            );
            self.step();
        }
        // Nothing may be pending on a finished pair.
        assert_eq!(self.client.poll_action(), None);
        assert_eq!(self.server.poll_action(), None);
        assert_eq!(self.client.poll_event(), None);
        assert_eq!(self.client.poll_timeout(), None);
        assert_eq!(self.server.poll_timeout(), None);
        &self.out
    }
}

/// Fires a connection's timer if due; checks the timer moves forward.
pub(crate) fn fire_timer<P: Protocol>(conn: &mut Connection<P>, now: Instant) {
    if let Some(deadline) = conn.poll_timeout()
        && deadline <= now
    {
        conn.handle_timeout(now);
        if let Some(next) = conn.poll_timeout() {
            assert!(next > now, "timer did not advance past {now:?}");
        }
    }
}

/// One side's turn: write into `out`, act, then read from `inp`.
fn drive_side<P: Protocol>(
    conn: &mut Connection<P>,
    out: &mut Wire,
    inp: &mut Wire,
    knobs: &mut Knobs,
    now: Instant,
    log: &mut Vec<Action>,
) {
    // 1. The socket takes one write budget per turn (short writes).
    if !conn.is_closed() && !conn.pending_output().is_empty() {
        let n = conn.pending_output().len().min(knobs.writes.take());
        out.bytes.extend(&conn.pending_output()[..n]);
        conn.handle_written(n, now).expect("n <= pending");
    }
    // 2. Actions (a closed connection may still owe its Close or Abort).
    carry_out(conn, out, now, log);
    if conn.is_closed() {
        return;
    }
    // 3. Read, if wanted.
    if inp.reset {
        conn.handle_connection_lost(CloseReason::Lost(LostReason::Reset), now);
        return;
    }
    if conn.wants_read() {
        if !inp.bytes.is_empty() {
            let n = inp.bytes.len().min(knobs.reads.take());
            let chunk: Vec<u8> = inp.bytes.drain(..n).collect();
            conn.handle_data(&chunk, now).expect("reading while wanted");
        } else if inp.fin && !inp.fin_seen {
            inp.fin_seen = true;
            conn.handle_read_closed(now);
        }
    }
    carry_out(conn, out, now, log);
}

/// Carries out every pending action on the side's outgoing wire.
fn carry_out<P: Protocol>(
    conn: &mut Connection<P>,
    out: &mut Wire,
    _now: Instant,
    log: &mut Vec<Action>,
) {
    while let Some(action) = conn.poll_action() {
        log.push(action);
        match action {
            Action::ShutdownWrite => {
                assert!(conn.pending_output().is_empty(), "FIN before flush");
                out.fin = true;
            }
            Action::Close => {
                assert!(conn.pending_output().is_empty(), "close before flush");
                assert!(conn.is_closed(), "Close completes itself");
                out.fin = true;
            }
            Action::Abort => {
                assert!(conn.is_closed(), "Abort completes itself");
                out.reset = true;
                out.bytes.clear();
            }
        }
    }
}
