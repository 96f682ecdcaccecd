//! The closed loop: each connection sends, waits for its echo, verifies
//! it, and sends the next.

use super::*;

/// One connection's part of the run.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) conn: usize,
    pub(super) len: usize,
    pub(super) limit: Option<u64>,
    pub(super) timeout: Duration,
    /// The back end's name, from its banner.
    pub(super) backend: Option<Arc<str>>,
}

/// One connection's closed loop: send, wait for the echo, verify, repeat.
pub(super) async fn ping_pong(
    mut stream: AnyStream,
    mut job: Job,
    churn: Option<Churn>,
    shared: Arc<Shared>,
    hist: SharedHistogram,
) {
    let (mut msg, mut back) = (vec![0u8; job.len], vec![0u8; job.len]);
    // One progress timer per connection, re-armed only when it fires.
    let mut timer = Box::pin(tokio::time::sleep(job.timeout));
    let mut seq = 0u64;
    let stall = shared.stall_book(job.conn);
    while !shared.stop.load(Ordering::Relaxed) {
        let counted = shared.measuring.load(Ordering::Relaxed);
        if counted
            && let Some(limit) = job.limit
            && shared.claimed.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break; // every measured request is taken
        }
        if let Some(churn) = &churn
            && seq > 0
            && seq.is_multiple_of(churn.every)
        {
            // Close cleanly, then replace the connection (its messages
            // carry on numbering, so a stale echo still cannot pass).
            let _ = stream.shutdown().await;
            drop(stream);
            (stream, job.backend) = match open_stream(&churn.config, &shared, true).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    shared.fail(shared.connect_failure(&e));
                    break;
                }
            };
        }
        fill(&mut msg, job.conn, seq);
        seq += 1;
        let start = Instant::now();
        Shared::stall_sent(&stall, start);
        let result = exchange(
            &shared,
            &mut stream,
            &msg,
            &mut back,
            job.timeout,
            &mut timer,
        )
        .await;
        let took = start.elapsed();
        let failure = match result {
            Ok(()) if back == msg => None,
            Ok(()) => Some(Failure::Mismatch),
            Err(failure) => Some(failure),
        };
        if let Some(failure) = failure {
            shared.stall_finished(&stall, Instant::now());
            if counted && job.limit.is_some() {
                // Give the claim back: another connection may complete it.
                shared.claimed.fetch_sub(1, Ordering::Relaxed);
            }
            shared.fail(failure);
            break; // a broken or desynchronised stream proves nothing more
        }
        shared.stall_completed(&stall, start + took);
        // Checked and counted under the histogram's lock: once the run
        // has ended measuring and taken the locks, no answer slips into
        // the histogram that the request count missed (or the reverse).
        if counted
            && let Ok(mut hist) = hist.lock()
            && shared.measuring.load(Ordering::Relaxed)
        {
            let _ = hist.record(took.as_nanos().max(1) as u64);
            if let Some(name) = &job.backend {
                shared.backend_answered(name, took);
            }
            let done = shared.measured.fetch_add(1, Ordering::Relaxed) + 1;
            if job.limit.is_some_and(|l| done >= l) {
                shared.halt();
            }
        }
    }
    shared.ended.fetch_add(1, Ordering::Relaxed);
}

/// Sends `msg` while reading its echo into `back` (reading as it writes, so
/// a message larger than the server's buffers cannot deadlock), failing
/// when nothing moves for `timeout` ("fire on the clock": the timer is
/// re-armed only when it fires early).
pub(super) async fn exchange(
    shared: &Shared,
    stream: &mut AnyStream,
    msg: &[u8],
    back: &mut [u8],
    timeout: Duration,
    timer: &mut Pin<Box<tokio::time::Sleep>>,
) -> Result<(), Failure> {
    let (mut written, mut read) = (0, 0);
    // A socket's flush does nothing: only a stream that buffers asks for one.
    let mut flushed = !stream.buffers_writes();
    let mut last = tokio::time::Instant::now();
    poll_fn(|cx| {
        let mut moved = false;
        while written < msg.len() {
            match Pin::new(&mut *stream).poll_write(cx, &msg[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Failure::Broken)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(shared.io_failure(&e))),
                Poll::Ready(Ok(n)) => {
                    written += n;
                    moved = true;
                }
                Poll::Pending => break,
            }
        }
        // A TLS write is done once rustls holds the bytes: the message's
        // last records reach the socket only when flushed. Its waker is
        // registered while it waits.
        if written == msg.len() && !flushed {
            match Pin::new(&mut *stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => flushed = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(shared.io_failure(&e))),
                Poll::Pending => {}
            }
        }
        while read < back.len() {
            let mut buf = ReadBuf::new(&mut back[read..]);
            match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    return Poll::Ready(Err(Failure::Closed));
                }
                Poll::Ready(Ok(())) => {
                    read += buf.filled().len();
                    moved = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(shared.io_failure(&e))),
                Poll::Pending => break,
            }
        }
        if read == back.len() {
            // Bytes we never sent cannot be an echo.
            return Poll::Ready(if written == msg.len() {
                Ok(())
            } else {
                Err(Failure::Mismatch)
            });
        }
        if moved {
            last = tokio::time::Instant::now();
        }
        while timer.as_mut().poll(cx).is_ready() {
            let due = last + timeout;
            if tokio::time::Instant::now() >= due {
                return Poll::Ready(Err(Failure::TimedOut));
            }
            timer.as_mut().reset(due);
        }
        Poll::Pending
    })
    .await
}
