//! The open loop (`--rate`): each connection sends on a fixed schedule,
//! pipelining when echoes are late, and counts latency from the intended
//! send as well as from the actual one.

use super::*;

/// When one open-loop connection sends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    /// Between two intended sends.
    pub(super) interval: Duration,
    /// The first send's delay.
    pub(super) offset: Duration,
    /// The most requests in flight.
    pub(super) max_in_flight: usize,
}

/// One open-loop connection: a writer sends on the schedule (pipelining
/// when echoes are late), a reader verifies the echoes in order and records
/// each latency twice: from the intended send (corrected) and from the
/// actual send (raw).
pub(super) async fn open_loop(
    stream: AnyStream,
    job: Job,
    schedule: Schedule,
    shared: Arc<Shared>,
    (hist, raw): (SharedHistogram, SharedHistogram),
) {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    type Sent = (u64, tokio::time::Instant, tokio::time::Instant);
    let flush = stream.buffers_writes();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let queue: Mutex<VecDeque<Sent>> = Mutex::new(VecDeque::new());
    let (sent, done) = (tokio::sync::Notify::new(), AtomicBool::new(false));
    let failed = AtomicBool::new(false);
    let stall = shared.stall_book(job.conn);
    let fail = |failure| {
        if !failed.swap(true, Ordering::Relaxed) {
            shared.stall_finished(&stall, Instant::now());
            shared.fail(failure);
        }
    };
    let writer = async {
        let mut msg = vec![0u8; job.len];
        let start = tokio::time::Instant::now() + schedule.offset;
        let mut seq = 0u64;
        for k in 0u32.. {
            let intended = start + schedule.interval * k;
            if !wait_until(intended, &shared).await || failed.load(Ordering::Relaxed) {
                break;
            }
            let measuring = shared.measuring.load(Ordering::Relaxed);
            let in_flight = queue.lock().map_or(0, |q| q.len());
            if in_flight >= schedule.max_in_flight {
                if measuring {
                    shared.skipped.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let now = tokio::time::Instant::now();
            if measuring && now.duration_since(intended) > schedule.interval {
                shared.late.fetch_add(1, Ordering::Relaxed);
            }
            fill(&mut msg, job.conn, seq);
            if let Ok(mut q) = queue.lock() {
                q.push_back((seq, intended, now));
                Shared::stall_sent(&stall, now.into_std());
            }
            seq += 1;
            sent.notify_one();
            // Flushed too: over TLS a write ends once rustls holds the
            // bytes, and the last record of a message could wait unsent.
            let wrote = async {
                wr.write_all(&msg).await?;
                if flush {
                    wr.flush().await?;
                }
                Ok::<(), std::io::Error>(())
            };
            if let Err(e) = wrote.await {
                fail(shared.io_failure(&e));
                break;
            }
        }
        done.store(true, Ordering::Relaxed);
        sent.notify_one();
    };
    let reader = async {
        let (mut back, mut expected) = (vec![0u8; job.len], vec![0u8; job.len]);
        loop {
            let front = queue.lock().ok().and_then(|q| q.front().copied());
            let Some((seq, intended, at)) = front else {
                if done.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed) {
                    break;
                }
                sent.notified().await;
                continue;
            };
            match tokio::time::timeout(job.timeout, rd.read_exact(&mut back)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    fail(Failure::Closed);
                    break;
                }
                Ok(Err(e)) => {
                    fail(shared.io_failure(&e));
                    break;
                }
                Err(_) => {
                    fail(Failure::TimedOut);
                    break;
                }
            }
            let now = tokio::time::Instant::now();
            fill(&mut expected, job.conn, seq);
            if back != expected {
                fail(Failure::Mismatch);
                break;
            }
            if let Ok(mut q) = queue.lock() {
                q.pop_front();
                shared.stall_completed(&stall, now.into_std());
            }
            // Under the corrected histogram's lock, as in the closed loop:
            // the count and the histograms agree once the run took it.
            if let Ok(mut h) = hist.lock()
                && shared.measuring.load(Ordering::Relaxed)
            {
                let nanos = |d: Duration| d.as_nanos().max(1) as u64;
                let _ = h.record(nanos(now.duration_since(intended)));
                if let Ok(mut r) = raw.lock() {
                    let _ = r.record(nanos(now.duration_since(at)));
                }
                if let Some(name) = &job.backend {
                    shared.backend_answered(name, now.duration_since(intended));
                }
                shared.measured.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    tokio::join!(writer, reader);
    shared.ended.fetch_add(1, Ordering::Relaxed);
}

/// How long before a scheduled send the open loop stops sleeping on the
/// timer and spins (yielding to the other connections): tokio's timer
/// wakes on whole milliseconds, rounding up, so a send that only slept
/// would go out up to a millisecond late, and at low latency that lateness
/// would be most of the corrected latency.
pub(super) const SPIN: Duration = Duration::from_millis(2);

/// Waits until `at`: on the timer until [`SPIN`] before it, then spinning.
/// `false` once the run is told to stop (at once, even when `at` is far
/// off, as it is at low rates).
pub(super) async fn wait_until(at: tokio::time::Instant, shared: &Shared) -> bool {
    let halted = shared.halted.notified();
    tokio::pin!(halted);
    halted.as_mut().enable();
    if shared.stop.load(Ordering::Relaxed) {
        return false;
    }
    let coarse = at.checked_sub(SPIN).unwrap_or(at);
    if coarse > tokio::time::Instant::now() {
        tokio::select! {
            biased;
            () = &mut halted => return false,
            () = tokio::time::sleep_until(coarse) => {}
        }
    }
    while tokio::time::Instant::now() < at {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        tokio::task::yield_now().await;
    }
    !shared.stop.load(Ordering::Relaxed)
}
