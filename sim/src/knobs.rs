//! What a client must see of our server's fault knobs (`echo-server
//! --delay --jitter --throttle --close-after --reset-after --stall-after`),
//! shared by the zoo (one knob, one client) and the misbehaving cases (every
//! knob at once, many clients, a share of them cut off).

use std::time::Duration;

use echo_core::{CloseReason, Cutoff, EchoError, FaultConfig, LostReason};

/// The soonest an echo of `len` bytes can be done, `rtt` the least round
/// trip: every byte is held the delay (jitter only adds), and the throttle's
/// bucket starts with a tenth of a second's worth, then refills at its rate.
pub(crate) fn earliest_done(faults: &FaultConfig, len: u64, rtt: Duration) -> Duration {
    let mut earliest = faults.delay + rtt;
    if let Some(rate) = faults.throttle.filter(|_| len > 0) {
        let waited = len.saturating_sub(rate / 10);
        earliest = earliest.max(Duration::from_secs_f64(waited as f64 / rate as f64));
    }
    if len == 0 { Duration::ZERO } else { earliest }
}

/// The bytes a cut-off lets through.
pub(crate) fn cut_bytes(cutoff: Cutoff) -> u64 {
    let (Cutoff::CloseAfter(n) | Cutoff::ResetAfter(n) | Cutoff::StallAfter(n)) = cutoff;
    n
}

/// Whether `error` is how an echo that `cutoff` applies to may end, with
/// the bytes it lets through: a close ends in FIN after exactly them (or
/// in a reset after them, once a peer that keeps sending outlasts the
/// close's linger); a stall ends by the client's timer or, at the server's
/// idle timeout, as a close does; a reset may overtake what is still in
/// flight (turmoil ends a simulated abort in FIN: then exactly them).
pub(crate) fn cut_off_as_told(cutoff: Cutoff, error: &EchoError) -> bool {
    let n = cut_bytes(cutoff);
    match *error {
        EchoError::Truncated { received, .. } => received == n,
        EchoError::ConnectionLost {
            reason: CloseReason::Lost(LostReason::Reset),
            received,
            ..
        } => match cutoff {
            Cutoff::ResetAfter(_) => received <= n,
            _ => received == n,
        },
        EchoError::TimedOut { received, .. } => {
            matches!(cutoff, Cutoff::StallAfter(_)) && received == n
        }
        _ => false,
    }
}
