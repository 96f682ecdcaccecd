//! Peers that echo wrong bytes: one byte inverted, placed on a seam of the
//! client's reads in a share of cases, or bytes nobody sent after the
//! echo. How each corrupts, and the verdict it earns.

use std::time::Duration;

use echo_core::EchoError;
use echo_net::ClientError;
use tokio::io::AsyncWriteExt;

use super::{Judging, Log, Peer, Seam};

/// How long a corrupting peer waits between the two writes around a seam:
/// longer than the most latency a zoo case draws, so the client has read
/// the first before the second arrives (when its window is open).
pub(super) const SEAM_PAUSE_MS: u64 = 60;

/// [`Peer::WrongByte`]: inverts the byte at `at` when this read (which
/// began at `offset`) holds it. On a seam, the bytes before the split go
/// now and the rest a moment later, so that the client reads them apart;
/// what is left to send is left in `data`. `None` when the write failed.
pub(super) async fn corrupt(
    (at, seam): (usize, Seam),
    offset: usize,
    data: &mut Vec<u8>,
    stream: &mut turmoil::net::TcpStream,
    log: &Log,
) -> Option<()> {
    if !(offset..offset + data.len()).contains(&at) {
        return Some(());
    }
    let i = at - offset;
    data[i] = !data[i];
    let split = match seam {
        Seam::Anywhere => 0,
        Seam::Starts => i,
        Seam::Ends => i + 1,
    };
    if split > 0 && split < data.len() {
        stream.write_all(&data[..split]).await.ok()?;
        log.wrote(&data[..split]);
        tokio::time::sleep(Duration::from_millis(SEAM_PAUSE_MS)).await;
        data.drain(..split);
    }
    Some(())
}

/// [`Peer::ExtraBytes`]: the model knows the message's length, so the
/// extra bytes follow the echo's last byte, in the same write.
pub(super) fn extra(extra: usize, end: usize, len: usize, data: &mut Vec<u8>) {
    if end >= len {
        data.extend(std::iter::repeat_n(0x5a, extra));
    }
}

/// The verdict each of these peers earns.
pub(super) fn earned(j: &Judging<'_>) -> bool {
    let (sent, len) = (&j.sent, j.len());
    match j.case.peer {
        Peer::WrongByte { offset, .. } if offset < len => matches!(
            j.verdict,
            Err(ClientError::Echo(EchoError::Mismatch { offset: o, expected, found }))
                if *o == offset as u64 && *expected == sent[offset] && *found == !sent[offset]
        ),
        Peer::WrongByte { .. } => j.done(),
        // Extra bytes in the same read as the last echo byte are seen; in a
        // later one, after the client said done and closed, they are not.
        Peer::ExtraBytes { .. } => {
            j.done()
                || matches!(
                    j.verdict,
                    Err(ClientError::Echo(EchoError::Unexpected { offset })) if *offset == len as u64
                )
        }
        _ => false,
    }
}
