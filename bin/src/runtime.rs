//! The server's work-stealing runtime: its worker count, and the order in
//! which a worker takes ready connections.

use std::io;
use std::num::NonZeroUsize;

/// Builds `echo-server`'s multi-thread runtime: as many workers as tokio
/// would start (`TOKIO_WORKER_THREADS`, else one per core it may run on),
/// taking from the shared queue every [`SHARED_QUEUE_INTERVAL`] tasks.
///
/// # Errors
/// When tokio cannot start the runtime (out of threads, say).
pub fn server_runtime() -> io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let env = std::env::var("TOKIO_WORKER_THREADS").ok();
    let workers = worker_threads(env.as_deref(), cores).unwrap_or_else(|e| {
        crate::complain(format!("warning: ignoring {e}; starting {cores} workers"));
        cores
    });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(workers)
        .global_queue_interval(SHARED_QUEUE_INTERVAL)
        .build()
}

/// How many workers tokio's multi-thread runtime starts by default: a
/// positive `TOKIO_WORKER_THREADS`, else `cores` (at least one). Counted
/// here, not by tokio, which panics on a value it cannot read.
///
/// # Errors
/// A value that is not a positive whole number, with a message naming it.
pub fn worker_threads(env: Option<&str>, cores: usize) -> Result<usize, String> {
    match env {
        None => Ok(cores.max(1)),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "TOKIO_WORKER_THREADS={v:?} (not a positive whole number)"
            )),
        },
    }
}

/// How often (in tasks run) a worker takes a task from the shared queue
/// before its own: every other task.
///
/// A worker that polls the I/O driver queues the connections it finds ready
/// on itself, and what does not fit (256) spills into the shared queue.
/// tokio's default (once in 61 tasks, tuned) starved the spilled ones while
/// the others were echoed again and again: with a thousand busy connections
/// on one core, a p99 of 82 ms against the C epoll server's 16.6 ms.
/// Taking from the shared queue first, every time, starved the worker's own
/// queue instead, for as long as the shared one never emptied: the p99 fell
/// (32 ms) but single echoes waited up to a second, and under valgrind 256
/// connections (one worker's queue) got no echo for five seconds. Every
/// other task serves both queues: on one core, 1000 x 64, p99 25 ms against
/// 42 ms and the slowest echo 30-36 ms against 253-1081 ms; with two
/// workers and 2,000 connections, p99 34 ms against 52 ms with tokio's
/// default and 64 ms taking the shared queue first (BENCHMARKS.md).
pub const SHARED_QUEUE_INTERVAL: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_count_is_tokios_own_and_a_bad_one_is_named() {
        assert_eq!(worker_threads(None, 8), Ok(8));
        assert_eq!(worker_threads(Some("3"), 8), Ok(3));
        assert_eq!(worker_threads(Some(" 1 "), 8), Ok(1));
        assert_eq!(worker_threads(None, 0), Ok(1));
        for bad in ["0", "many", "-2", ""] {
            let error = worker_threads(Some(bad), 8).unwrap_err();
            assert!(error.contains("TOKIO_WORKER_THREADS"), "{error}");
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }
}
