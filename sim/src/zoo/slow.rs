//! Peers that are slow or mute: a trickle of one byte at a time, and a
//! peer that reads everything and never answers. How each serves, and the
//! verdict it earns.

use std::time::Duration;

use echo_core::EchoError;
use echo_net::ClientError;
use tokio::io::AsyncWriteExt;

use super::{Judging, Log, Peer};

/// [`Peer::Trickle`]: writes `data` one byte at a time, `delay_ms` apart.
/// `None` when a write failed.
pub(super) async fn trickle(
    delay_ms: u64,
    data: &[u8],
    stream: &mut turmoil::net::TcpStream,
    log: &Log,
) -> Option<()> {
    for byte in data {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        stream.write_all(std::slice::from_ref(byte)).await.ok()?;
        log.wrote(std::slice::from_ref(byte));
    }
    Some(())
}

/// The verdict each of these peers earns.
pub(super) fn earned(j: &Judging<'_>) -> bool {
    match j.case.peer {
        Peer::Trickle { .. } => j.done(),
        Peer::Silent if j.len() == 0 => j.done(),
        // At the timeout: the client's last write reached the peer by its
        // last read, at most one latency after it was sent.
        Peer::Silent => {
            let idle = Duration::from_millis(j.case.idle_ms);
            let last_read = j.seen.last_read_at;
            let latest = last_read + idle + Duration::from_millis(5);
            let earliest =
                (last_read + idle).saturating_sub(Duration::from_millis(j.case.max_latency_ms + 5));
            matches!(
                j.verdict,
                Err(ClientError::Echo(EchoError::TimedOut { received: 0, .. }))
            ) && (earliest..=latest).contains(&j.at)
        }
        _ => false,
    }
}
