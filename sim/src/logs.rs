//! The server's log, captured per case: operators read it, so it must say
//! what the books say, one line per connection made, lost, refused or
//! denied; the warnings for refusals and denials thinned (the first five in
//! full, the rest counted into summaries, never more lines than events);
//! the shutdown's wait announced only when something is open.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use echo_core::ServerEvent;

use crate::coverage::{Coverage, TableLayer};
use tracing_subscriber::fmt::MakeWriter;

/// Where a case's log lines go.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MakeWriter<'_> for Sink {
    type Writer = Self;

    fn make_writer(&self) -> Self {
        self.clone()
    }
}

/// Runs `f` with the server's connection log (`echo_net::server`, debug
/// and up) captured on this thread, where turmoil polls every host, and
/// the core's state-table events counted. Returns its result, the log and
/// the counts.
pub(crate) fn capture<R>(f: impl FnOnce() -> R) -> (R, String, Coverage) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{Layer as _, filter};

    let sink = Sink::default();
    let table = Arc::new(Mutex::new(Coverage::default()));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(sink.clone())
        .with_ansi(false)
        .without_time()
        .with_filter(tracing_subscriber::EnvFilter::new(
            "echo_net::server=debug,echo_net::warnings=debug",
        ));
    let counted = TableLayer(Arc::clone(&table))
        .with_filter(filter::Targets::new().with_target(echo_core::TABLE, tracing::Level::TRACE));
    let subscriber = tracing_subscriber::registry().with(log).with(counted);
    let result = tracing::subscriber::with_default(subscriber, f);
    let log = sink.0.lock().unwrap_or_else(PoisonError::into_inner);
    let table = table.lock().unwrap_or_else(PoisonError::into_inner).clone();
    (result, String::from_utf8_lossy(&log).into_owned(), table)
}

/// One log line per connection the server made (health checks aside),
/// lost, refused at the limit and denied by its access list, as its
/// events say.
pub(crate) fn check_log<'a>(
    events: impl Iterator<Item = &'a ServerEvent>,
    log: &str,
) -> Result<(), String> {
    let (mut made, mut lost, mut refused, mut denied) = (0, 0, 0, 0);
    for event in events {
        match event {
            ServerEvent::ConnectionMade {
                health_check: false,
                ..
            } => made += 1,
            ServerEvent::ConnectionLost {
                health_check: false,
                ..
            } => lost += 1,
            ServerEvent::ConnectionRefused { .. } => refused += 1,
            ServerEvent::ConnectionDenied { .. } => denied += 1,
            _ => {}
        }
    }
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    let logged = (
        lines("connection made"),
        lines("connection lost"),
        lines("connection refused at the limit"),
        lines("connection denied by the access list"),
    );
    if logged != (made, lost, refused, denied) {
        return Err(format!(
            "the server's log shows {logged:?} connections (made, lost, refused, denied), \
             its events {:?}",
            (made, lost, refused, denied)
        ));
    }
    Ok(())
}

/// The warnings a peer (or the process's limits) can cause are thinned,
/// never lost nor invented: for refusals at the limit, for denials and
/// for failed accepts (`accept_failures` of them) alike, the first five
/// come in full, and the lines in full plus the counts in the summaries
/// never exceed the events (what is still held when a case ends is in no
/// line yet). An accept that failed for one connection only is no
/// warning at all.
pub(crate) fn check_throttled_warnings<'a>(
    events: impl Iterator<Item = &'a ServerEvent>,
    accept_failures: usize,
    log: &str,
) -> Result<(), String> {
    let (mut refused, mut denied) = (0, 0);
    for event in events {
        match event {
            ServerEvent::ConnectionRefused { .. } => refused += 1,
            ServerEvent::ConnectionDenied { .. } => denied += 1,
            _ => {}
        }
    }
    let kinds = [
        (
            "refusals",
            refused,
            "connection refused: limit reached",
            "more connections refused at --max-connections",
        ),
        (
            "denials",
            denied,
            "connection denied by --allow/--deny",
            "more connections denied by --allow/--deny",
        ),
        (
            "accept failures",
            accept_failures,
            "accept failed; backing off",
            "more accept failures",
        ),
    ];
    for (what, events, full, summary) in kinds {
        let in_full = log.lines().filter(|l| l.contains(full)).count();
        let summarised: usize = log
            .lines()
            .filter(|l| l.contains(summary))
            .filter_map(|l| {
                let at = l.find(summary)?;
                l[..at].split_whitespace().last()?.parse::<usize>().ok()
            })
            .sum();
        if in_full < events.min(5) || in_full + summarised > events {
            return Err(format!(
                "{events} {what}: {in_full} warnings in full and {summarised} in summaries \
                 (the first five in full, never more than the events)"
            ));
        }
    }
    Ok(())
}

/// A graceful shutdown says it waits for open connections only when some
/// are open as it begins.
pub(crate) fn check_shutdown_line(open: Option<usize>, log: &str) -> Result<(), String> {
    let said = log
        .lines()
        .filter(|l| l.contains("waiting for open connections to finish"))
        .count();
    let expected = usize::from(open.is_some_and(|n| n > 0));
    if said != expected {
        return Err(format!(
            "the shutdown began with {open:?} connections open; the log says it waits {said} times"
        ));
    }
    Ok(())
}
