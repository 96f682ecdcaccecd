//! Memory beyond queued bytes: a drained output buffer gives its capacity
//! back (at most `KEEP_DRAINED_CAPACITY` kept), and the measure is live.

use std::sync::atomic::Ordering;

use super::Observed;
use crate::case::Case;

pub(crate) fn check(case: &Case, seen: &Observed<'_>) -> Result<(), String> {
    let world = seen.world;
    let bound = case.server.high + case.server.read_chunk;
    let largest_reads = world.largest_reads.borrow();
    for (server, largest_read) in world.servers.borrow().iter().zip(largest_reads.iter()) {
        let echoed = server.traffic().bytes_out;
        let largest = largest_read.load(Ordering::Relaxed);
        // Memory beyond queued bytes: a drained buffer gives its capacity
        // back, so an idle connection costs almost nothing after a burst.
        let idle = server.peak_idle_capacity();
        if idle > echo_core::KEEP_DRAINED_CAPACITY {
            return Err(format!(
                "an empty output buffer kept {idle} bytes of capacity (at most {} allowed)",
                echo_core::KEEP_DRAINED_CAPACITY
            ));
        }
        // And the measure is live: when the buffer never holds more than
        // half the kept size, its allocation never outgrows that size (a
        // vector at most doubles as it grows), so every connection that
        // drained kept what its largest read needed (each read goes into
        // the buffer whole, as above). (With more, an allocation that grew
        // past the kept size is dropped: a seed of base 225M kept 3,056
        // after a read of 3,117.) Without faults every echo completes, so
        // every connection drained.
        let plain = !case.tls && case.misbehave.is_off() && case.shutdown.is_none();
        if plain
            && !case.has_faults()
            && echoed > 0
            && 2 * bound <= echo_core::KEEP_DRAINED_CAPACITY
            && idle < largest
        {
            return Err(format!(
                "the server echoed {echoed} bytes through buffers never above {bound}, \
                 reading {largest} at once, yet reports {idle} bytes of capacity kept: \
                 the measure is broken"
            ));
        }
    }
    Ok(())
}
