//! An echo that misbehaves on purpose, for testing what sits in front of it
//! (proxies, balancers, client libraries): it delays, throttles, and cuts
//! connections off after a number of bytes, exactly, because time and bytes
//! are its only inputs.
//!
//! Received bytes go through one pipeline: held until their release time
//! (delay plus jitter, order kept), let out by a token bucket (throttle),
//! counted against the cut-off, then written. Held bytes count against the
//! high-water mark: reading pauses while held plus unsent bytes exceed it.

use alloc::collections::VecDeque;
use core::fmt;
use core::time::Duration;

use bytes::{Buf, Bytes};

use crate::time::Instant;
use crate::transport::Transport;

/// What happens to a connection once it has echoed its share of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoff {
    /// Echo this many bytes, flush them, then close cleanly (FIN).
    CloseAfter(u64),
    /// Echo this many bytes, flush them, then reset (RST).
    ResetAfter(u64),
    /// Echo this many bytes, then stop reading and echoing while keeping
    /// the connection open (a black hole), until the idle timeout, if any.
    StallAfter(u64),
}

impl Cutoff {
    /// Each kind's label (in [`index`](Self::index) order): what the
    /// metrics count cut-offs by.
    pub const LABELS: [&'static str; 3] = ["close", "reset", "stall"];

    /// This kind's index in [`LABELS`](Self::LABELS).
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Self::CloseAfter(_) => 0,
            Self::ResetAfter(_) => 1,
            Self::StallAfter(_) => 2,
        }
    }

    fn bytes(self) -> u64 {
        match self {
            Self::CloseAfter(n) | Self::ResetAfter(n) | Self::StallAfter(n) => n,
        }
    }
}

impl fmt::Display for Cutoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CloseAfter(n) => write!(f, "close after {n} bytes"),
            Self::ResetAfter(n) => write!(f, "reset after {n} bytes"),
            Self::StallAfter(n) => write!(f, "stall after {n} bytes"),
        }
    }
}

/// The misbehaviour an [`EchoFactory`](crate::EchoFactory) gives its
/// connections. The default is none: a plain, exact echo that pays nothing
/// for the knobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// Every received chunk is echoed this long after it arrived.
    pub delay: Duration,
    /// Plus a random extra of up to this much per chunk (order is kept: a
    /// chunk never overtakes the one before it).
    pub jitter: Duration,
    /// At most this many bytes per second per connection (a token bucket
    /// holding a tenth of a second's worth).
    pub throttle: Option<u64>,
    /// Cut connections off after some bytes.
    pub cutoff: Option<Cutoff>,
    /// The share of connections the cut-off applies to, in millionths
    /// (1,000,000: all of them).
    pub cutoff_per_million: u32,
    /// Seeds the choice of connections and the jitter, so a run can be
    /// repeated exactly.
    pub seed: u64,
}

impl FaultConfig {
    /// All connections get the cut-off.
    pub const EVERY_CONNECTION: u32 = 1_000_000;

    /// Whether any knob is set.
    #[must_use]
    pub fn is_off(&self) -> bool {
        self.delay.is_zero()
            && self.jitter.is_zero()
            && self.throttle.is_none()
            && (self.cutoff.is_none() || self.cutoff_per_million == 0)
    }
}

impl fmt::Display for FaultConfig {
    /// The knobs that are set, in words: `delay 50ms, throttle 1000 B/s,
    /// close after 10 bytes on 50% of connections (seed 7)`; `none` when
    /// none is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_off() {
            return f.write_str("none");
        }
        let mut parts: alloc::vec::Vec<alloc::string::String> = alloc::vec::Vec::new();
        if !self.delay.is_zero() {
            parts.push(alloc::format!("delay {:?}", self.delay));
        }
        if !self.jitter.is_zero() {
            parts.push(alloc::format!("jitter up to {:?}", self.jitter));
        }
        if let Some(rate) = self.throttle {
            parts.push(alloc::format!("throttle {rate} B/s"));
        }
        if let Some(cutoff) = self.cutoff
            && self.cutoff_per_million > 0
        {
            let share = f64::from(self.cutoff_per_million) / 1e4;
            parts.push(alloc::format!("{cutoff} on {share}% of connections"));
        }
        write!(f, "{} (seed {})", parts.join(", "), self.seed)
    }
}

/// splitmix64: a well-mixed 64-bit value from any input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Nanoseconds per second: the token bucket counts byte-nanoseconds, so
/// every refill is exact in integers.
const NANOS: u128 = 1_000_000_000;

/// One connection's faults: the pipeline of held bytes and its state.
#[derive(Debug)]
pub(crate) struct Faults {
    delay: Duration,
    jitter: Duration,
    /// Bytes per second, and the bucket: its content and capacity in
    /// byte-nanoseconds, and when it was last refilled.
    throttle: Option<(u64, u128, u128, Option<Instant>)>,
    /// The cut-off for this connection (chosen by ratio) and the bytes it
    /// may still echo.
    cutoff: Option<(Cutoff, u64)>,
    /// Reset once the output has drained (`--reset-after`).
    reset_when_flushed: bool,
    /// Cut off: nothing more is read or echoed.
    done: bool,
    /// The peer sent its end-of-file: close once nothing is held.
    eof: bool,
    /// Chunks not yet echoed, each with its release time.
    held: VecDeque<(Instant, Bytes)>,
    /// Their bytes.
    held_bytes: usize,
    /// The most bytes owed at once: held here plus unsent.
    peak_owed: usize,
    /// The jitter's generator.
    rng: u64,
}

impl Faults {
    /// The faults of connection number `id` under `config`, or `None` when
    /// it gets none (the plain echo path).
    pub(crate) fn for_connection(config: &FaultConfig, id: u64) -> Option<Self> {
        let roll = mix(config.seed ^ mix(id));
        let chosen = (roll % u64::from(FaultConfig::EVERY_CONNECTION))
            < u64::from(config.cutoff_per_million);
        let cutoff = config.cutoff.filter(|_| chosen).map(|c| (c, c.bytes()));
        if config.delay.is_zero()
            && config.jitter.is_zero()
            && config.throttle.is_none()
            && cutoff.is_none()
        {
            return None;
        }
        let throttle = config.throttle.map(|rate| {
            let rate = rate.max(1);
            let capacity = (u128::from(rate) * NANOS / 10).max(NANOS);
            (rate, capacity, capacity, None)
        });
        Some(Self {
            delay: config.delay,
            jitter: config.jitter,
            throttle,
            cutoff,
            reset_when_flushed: false,
            done: false,
            eof: false,
            held: VecDeque::new(),
            held_bytes: 0,
            peak_owed: 0,
            rng: mix(roll),
        })
    }

    /// The cut-off this connection reached, if it did.
    pub(crate) fn cut_off(&self) -> Option<Cutoff> {
        self.cutoff.map(|(cutoff, _)| cutoff).filter(|_| self.done)
    }

    /// The connection is up: a cut-off after zero bytes happens now.
    pub(crate) fn connection_made(&mut self, transport: &mut Transport) {
        if let Some((cutoff, 0)) = self.cutoff {
            self.cut(cutoff, transport);
        }
    }

    /// Takes a received chunk; echoes what may go out now.
    pub(crate) fn data_received(&mut self, data: &[u8], transport: &mut Transport, now: Instant) {
        if self.done {
            return;
        }
        let mut release = now + self.delay;
        if !self.jitter.is_zero() {
            self.rng = mix(self.rng);
            let nanos = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
            release += Duration::from_nanos(self.rng % nanos.saturating_add(1));
        }
        // Order kept: never before the chunk ahead of it.
        if let Some(&(last, _)) = self.held.back() {
            release = release.max(last);
        }
        self.held.push_back((release, Bytes::copy_from_slice(data)));
        self.held_bytes += data.len();
        self.pump(transport, now);
    }

    /// The socket took `n` bytes: a pending reset may go now.
    pub(crate) fn data_written(&mut self, transport: &mut Transport, now: Instant) {
        if self.reset_when_flushed && transport.buffered() == 0 {
            self.reset_when_flushed = false;
            tracing::debug!("fault: reset after the cut-off");
            transport.abort_connection();
            return;
        }
        self.pump(transport, now);
    }

    /// Releases what is due.
    pub(crate) fn handle_timeout(&mut self, transport: &mut Transport, now: Instant) {
        self.pump(transport, now);
    }

    /// The most bytes owed at once, held back and unsent together: the
    /// memory the echo took, bounded by the high-water mark plus a read.
    pub(crate) fn peak_owed(&self) -> usize {
        self.peak_owed
    }

    /// The peer sent its end-of-file: close once every held byte went out
    /// on its schedule, not before (closing now would lose them).
    pub(crate) fn read_connection_lost(&mut self, transport: &mut Transport) {
        self.eof = true;
        if self.held.is_empty() {
            transport.lose_connection();
        }
    }

    /// The connection is shutting down: every held byte goes out now, the
    /// delay and the throttle no longer apply (the cut-off still does).
    pub(crate) fn release_all(&mut self, transport: &mut Transport) {
        self.throttle = None;
        if let Some(&(last, _)) = self.held.back() {
            self.pump(transport, last);
        }
    }

    /// Whether bytes are held back (the connection is not idle then).
    pub(crate) fn is_holding(&self) -> bool {
        self.held_bytes > 0
    }

    /// When the next held bytes may go: the front chunk's release time, or
    /// later when the bucket must refill first.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let &(release, ref front) = self.held.front()?;
        let Some((rate, content, capacity, Some(filled_at))) = self.throttle else {
            return Some(release);
        };
        // Wait for a bucketful or the whole front chunk, whichever is less,
        // so a throttled echo goes out in sizeable writes.
        let want = (front.len() as u128 * NANOS).min(capacity);
        if content >= want {
            return Some(release);
        }
        let nanos = (want - content).div_ceil(u128::from(rate));
        let refill = filled_at + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        Some(release.max(refill))
    }

    /// Writes what is due and allowed, in order, then sets flow control.
    fn pump(&mut self, transport: &mut Transport, now: Instant) {
        while !self.done {
            let Some((release, front)) = self.held.front_mut() else {
                break;
            };
            if *release > now {
                break;
            }
            let mut n = front.len();
            if let Some((_, left)) = self.cutoff {
                n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
            }
            if let Some((rate, content, capacity, filled_at)) = &mut self.throttle {
                let since =
                    filled_at.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
                *content = (*content + since.as_nanos() * u128::from(*rate)).min(*capacity);
                *filled_at = Some(now);
                n = n.min(usize::try_from(*content / NANOS).unwrap_or(usize::MAX));
                *content -= n as u128 * NANOS;
            }
            if n == 0 {
                break; // the bucket is empty
            }
            transport.write(&front[..n]);
            front.advance(n);
            self.held_bytes -= n;
            if front.is_empty() {
                self.held.pop_front();
            }
            if let Some((cutoff, left)) = &mut self.cutoff {
                *left -= n as u64;
                if *left == 0 {
                    let cutoff = *cutoff;
                    self.cut(cutoff, transport);
                }
            }
        }
        if self.eof && self.held.is_empty() {
            transport.lose_connection();
        }
        if self.done {
            return;
        }
        // Held bytes count against the high-water mark, as unsent ones do.
        let marks = transport.water_marks();
        let owed = self.held_bytes + transport.buffered();
        self.peak_owed = self.peak_owed.max(owed);
        if owed > marks.high() {
            transport.pause_producing();
        } else if owed <= marks.low() {
            transport.resume_producing();
        }
    }

    /// The connection has echoed its share: act on the cut-off.
    fn cut(&mut self, cutoff: Cutoff, transport: &mut Transport) {
        tracing::debug!(%cutoff, "fault: cut-off reached");
        self.done = true;
        self.held.clear();
        self.held_bytes = 0;
        transport.pause_producing();
        match cutoff {
            Cutoff::CloseAfter(_) => transport.lose_connection(),
            Cutoff::ResetAfter(_) if transport.buffered() == 0 => transport.abort_connection(),
            Cutoff::ResetAfter(_) => self.reset_when_flushed = true,
            Cutoff::StallAfter(_) => {}
        }
    }
}
