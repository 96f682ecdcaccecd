//! The core's answers, checked against what the adapter saw: in debug
//! builds only.
//!
//! An adapter acts on the core's level-triggered answers (how much is
//! unsent, whether the peer may still send, whether the client takes more
//! input, what it verified) without being able to check them in release
//! builds. A getter that lies does no visible harm on the path our own
//! adapter takes (it may not call it at all), and breaks another runtime's
//! adapter that does: so every debug build checks each answer against what
//! the adapter did, at the points where both are known. The simulation
//! runs these checks under every schedule it draws; a broken answer
//! panics the connection's task, which fails the case with its seed. In
//! release builds the types are empty and the checks compile to nothing.

#[cfg(debug_assertions)]
use echo_core::ProducerState;
use echo_core::{Connection, EchoClient, Protocol};

/// What the driver of one connection checks (see the module's doc).
pub(crate) struct Driven;

impl Driven {
    /// After each pass: the unsent count is what is queued plus what is in
    /// flight.
    #[inline]
    pub(crate) fn pass<P: Protocol>(conn: &Connection<P>) {
        debug_assert_eq!(
            conn.buffered(),
            conn.pending_output().len() + conn.in_flight(),
            "contract: buffered() is queued plus in flight"
        );
    }

    /// After a write was reported: reading resumed only once the unsent
    /// bytes fell to the low water mark (the mark an adapter reads to
    /// size its own buffers). Debug builds only, as is reading `before`.
    #[cfg(debug_assertions)]
    pub(crate) fn written<P: Protocol>(before: ProducerState, conn: &Connection<P>) {
        debug_assert!(
            before == ProducerState::Producing
                || conn.producer_state() == ProducerState::Paused
                || conn.is_closed()
                || conn.buffered() <= conn.transport().water_marks().low(),
            "contract: reading resumed with {} bytes unsent, above the low mark {}",
            conn.buffered(),
            conn.transport().water_marks().low(),
        );
    }

    /// After the peer's end of input was given to the core.
    #[inline]
    pub(crate) fn read_closed<P: Protocol>(conn: &Connection<P>) {
        debug_assert!(
            !conn.is_read_open(),
            "contract: is_read_open() after the peer's end of input"
        );
    }

    /// After the core asked for the socket to be closed or reset.
    #[inline]
    pub(crate) fn closed<P: Protocol>(conn: &Connection<P>) {
        debug_assert!(
            conn.transport().is_closing() && conn.is_closed(),
            "contract: a close action from a transport that is not closing"
        );
    }
}

/// What the client's pipe checks (see the module's doc).
#[derive(Debug, Default)]
pub(crate) struct Piped {
    /// Bytes of the echo events taken so far.
    #[cfg(debug_assertions)]
    echoed: u64,
    /// Whether Done or Failed was taken.
    #[cfg(debug_assertions)]
    ended: bool,
}

impl Piped {
    /// An echo event was taken: never empty.
    #[inline]
    pub(crate) fn echoed(&mut self, bytes: &[u8]) {
        #[cfg(debug_assertions)]
        {
            assert!(!bytes.is_empty(), "contract: an empty echo event");
            self.echoed += bytes.len() as u64;
        }
        #[cfg(not(debug_assertions))]
        let _ = (self, bytes);
    }

    /// Done was taken: its counts are the client's.
    #[inline]
    pub(crate) fn done(&mut self, conn: &Connection<EchoClient>, sent: u64, received: u64) {
        #[cfg(debug_assertions)]
        {
            let client = conn.protocol();
            assert_eq!(
                (client.sent(), client.received()),
                (sent, received),
                "contract: sent() and received() against Done"
            );
        }
        self.ended();
        #[cfg(not(debug_assertions))]
        let _ = (conn, sent, received);
    }

    /// Done or Failed was taken.
    #[inline]
    pub(crate) fn ended(&mut self) {
        #[cfg(debug_assertions)]
        {
            self.ended = true;
        }
        #[cfg(not(debug_assertions))]
        let _ = self;
    }

    /// Every event was taken: what was verified is what the events
    /// carried, the echo has ended exactly when its last event was taken,
    /// and input is wanted exactly when there is room for it, none once
    /// the echo ended.
    #[inline]
    pub(crate) fn drained(&self, conn: &Connection<EchoClient>) {
        #[cfg(debug_assertions)]
        {
            let client = conn.protocol();
            assert_eq!(
                client.received(),
                self.echoed,
                "contract: received() against the echo events"
            );
            assert_eq!(
                client.has_ended(),
                self.ended,
                "contract: has_ended() against Done and Failed"
            );
            let room = conn.input_room();
            assert_eq!(
                conn.wants_input(),
                room > 0,
                "contract: wants_input() against input_room() = {room}"
            );
            assert!(
                !self.ended || room == 0,
                "contract: input_room() = {room} after the echo ended"
            );
        }
        #[cfg(not(debug_assertions))]
        let _ = (self, conn);
    }

    /// Input of `offered` bytes, no more than `input_room()`, was given to
    /// `send`: all of it is taken.
    #[inline]
    pub(crate) fn took(offered: usize, taken: &Result<usize, echo_core::SendError>) {
        debug_assert!(
            matches!(taken, Ok(n) if *n == offered),
            "contract: send took {taken:?} of {offered} bytes that input_room() allowed"
        );
    }
}
