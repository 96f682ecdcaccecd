//! Peers that end the echo early, each the way a real one does
//! (`shared/PEERS.md`): how each serves, and the verdict it earns.

use echo_core::{CloseReason, EchoError, LostReason};
use echo_net::ClientError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Judging, Log, Peer};

/// [`Peer::CloseOnEof`] (Twisted's default `Protocol`) and
/// [`Peer::ShortThenClose`] run the shared echo loop; this trims what the
/// latter sends of a read that began at `offset` (it closes once `keep`
/// bytes went back).
pub(super) fn short(keep: usize, offset: usize, data: &mut Vec<u8>) {
    data.truncate(keep.saturating_sub(offset));
}

/// [`Peer::ResetMidEcho`]: echoes `keep` bytes, then closes with more
/// input waiting unread (at most 2 s on), so the close resets the
/// connection instead of sending FIN.
pub(super) async fn reset_mid_echo(keep: usize, mut stream: turmoil::net::TcpStream, log: &Log) {
    let mut buf = vec![0u8; 4_096];
    let mut echoed = 0;
    while echoed < keep {
        let want = (keep - echoed).min(buf.len());
        let n = match stream.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        log.read(n);
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
        log.wrote(&buf[..n]);
        echoed += n;
    }
    let mut one = [0u8; 1];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.peek(&mut one)).await;
}

/// [`Peer::AfterEof`]: reads to end-of-file, then writes it all back.
pub(super) async fn after_eof(mut stream: turmoil::net::TcpStream, log: &Log) {
    let mut buf = vec![0u8; 4_096];
    let mut all = Vec::new();
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                log.read(n);
                all.extend_from_slice(&buf[..n]);
            }
            Err(_) => return,
        }
    }
    if stream.write_all(&all).await.is_ok() {
        log.wrote(&all);
    }
}

/// [`Peer::FirstChunkThenClose`]: answers the first read, then closes.
pub(super) async fn first_chunk(mut stream: turmoil::net::TcpStream, log: &Log) {
    let mut buf = vec![0u8; 4_096];
    if let Ok(n @ 1..) = stream.read(&mut buf).await {
        log.read(n);
        if stream.write_all(&buf[..n]).await.is_ok() {
            log.wrote(&buf[..n]);
        }
    }
}

/// The verdict each of these peers earns.
pub(super) fn earned(j: &Judging<'_>) -> bool {
    let len = j.len();
    match j.case.peer {
        Peer::CloseOnEof => j.done(),
        // The client sends at most its window ahead of the echo: a message
        // that fits is echoed after the FIN; a longer one stalls with a
        // window's worth sent and nothing back, until the timeout.
        Peer::AfterEof if len <= j.case.client_high => j.done(),
        Peer::AfterEof => matches!(
            j.verdict,
            Err(ClientError::Echo(EchoError::TimedOut { sent, received: 0, .. }))
                if *sent == j.case.client_high as u64
        ),
        Peer::FirstChunkThenClose if j.back() == len => j.done(),
        Peer::FirstChunkThenClose => j.cut_at(j.back()),
        Peer::ShortThenClose { keep } if keep >= len => j.done(),
        Peer::ShortThenClose { keep } => j.cut_at(keep),
        Peer::ResetMidEcho { .. } if len == 0 => j.done(),
        // The rest of the message always reaches it unread: a reset, with
        // at most `keep` bytes back (the reset may destroy some in flight).
        Peer::ResetMidEcho { keep } => matches!(
            j.verdict,
            Err(ClientError::Echo(EchoError::ConnectionLost {
                reason: CloseReason::Lost(LostReason::Reset),
                received,
                ..
            })) if *received <= keep as u64
        ),
        _ => false,
    }
}
