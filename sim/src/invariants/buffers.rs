//! No connection buffers more than its high-water mark plus one read
//! (unsent bytes and bytes a fault knob holds back together), and the
//! measure this is checked against is live.

use std::sync::atomic::Ordering;

use super::Observed;
use crate::case::Case;

pub(crate) fn check(case: &Case, seen: &Observed<'_>) -> Result<(), String> {
    let world = seen.world;
    let bound = case.server.high + case.server.read_chunk;
    let largest_reads = world.largest_reads.borrow();
    for (server, largest_read) in world.servers.borrow().iter().zip(largest_reads.iter()) {
        let peak = server.peak_connection_buffer();
        // The bound is only as good as the measure: an echo server writes
        // each read whole into its output buffer before the socket takes
        // any of it, so its peak is at least its largest read (over plain
        // TCP, where a read is what the socket gave; with no fault knob
        // holding or splitting the echo). Any echo at all makes it nonzero.
        let echoed = server.traffic().bytes_out;
        let largest = largest_read.load(Ordering::Relaxed);
        if echoed > 0 && peak == 0 {
            return Err(format!(
                "the server echoed {echoed} bytes but its buffer peak is 0: the measure is broken"
            ));
        }
        if !case.tls && case.misbehave.is_off() && peak < largest {
            return Err(format!(
                "a connection read {largest} bytes at once, yet the server's buffer peak is {peak}: \
                 the measure is broken"
            ));
        }
        if peak > bound {
            return Err(format!(
                "a connection buffered {peak} bytes, above high {} + one read {}",
                case.server.high, case.server.read_chunk
            ));
        }
    }
    Ok(())
}
