//! What every simulated run shares between the harness and its hosts: the
//! trace of events stamped with simulated time, the panics caught on hosts,
//! the coverage counters, and the report they make at the end. The TCP,
//! UDP and zoo runs each add their own books to it; the TCP run's world
//! ([`World`]) is here too, so that its run, its clients and its books
//! share it without importing each other.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use std::future::Future;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use echo_core::ServerEvent;
use echo_net::{EchoServer, ShutdownOutcome};

use crate::coverage::Coverage;
use crate::io::{CatchPanic, Panics};

/// The events of a run, each stamped with simulated time.
pub type Trace = Rc<RefCell<Vec<String>>>;

/// Counters that show the faults actually bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connect attempts.
    pub attempts: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// Faults applied while some echo was still running.
    pub faults_mid_traffic: u64,
    /// Server crashes applied.
    pub crashes: u64,
    /// Echoes completed.
    pub done: u64,
    /// Admitted attempts that ended before their echo was done.
    pub cut_short: u64,
    /// UDP datagrams the clients counted lost.
    pub lost: u64,
    /// UDP duplicates the clients counted.
    pub duplicates: u64,
    /// UDP datagrams the clients counted reordered.
    pub reordered: u64,
    /// TLS handshakes that failed or timed out on the client's side.
    pub handshakes_cut: u64,
    /// Connections the server's access list turned away.
    pub denied: u64,
    /// Client attempts that held their whole undelivered-echo allowance
    /// at once (their reading paused on it).
    pub held_full: u64,
    /// Client attempts whose application side failed mid-echo.
    pub broken: u64,
    /// Echoes the server's cut-off ended early.
    pub cut: u64,
    /// Echoes a cut-off for some connections could have ended and did not.
    pub spared: u64,
}

impl Stats {
    /// Adds `other`'s counters to these.
    pub fn add(&mut self, other: &Self) {
        self.attempts += other.attempts;
        self.retries += other.retries;
        self.faults_mid_traffic += other.faults_mid_traffic;
        self.crashes += other.crashes;
        self.done += other.done;
        self.cut_short += other.cut_short;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.handshakes_cut += other.handshakes_cut;
        self.denied += other.denied;
        self.held_full += other.held_full;
        self.broken += other.broken;
        self.cut += other.cut;
        self.spared += other.spared;
    }
}

/// What one run showed.
#[derive(Debug)]
pub struct Report {
    /// `Err` names the violated invariant.
    pub result: Result<(), String>,
    /// The full event trace.
    pub trace: Vec<String>,
    /// Coverage counters.
    pub stats: Stats,
    /// What the run reached (see [`crate::coverage`]).
    pub coverage: Coverage,
}

/// Appends `text` to the trace, stamped with the simulated time.
pub(crate) fn event(trace: &Trace, text: String) {
    let at = turmoil::sim_elapsed().unwrap_or_default();
    trace
        .borrow_mut()
        .push(format!("{:>7}ms {text}", at.as_millis()));
}

/// The part of a run's world every kind of run has.
#[derive(Clone, Default)]
pub(crate) struct Shared {
    /// The events, in order.
    pub(crate) trace: Trace,
    /// Panics caught on hosts (each fails the case with its message).
    pub(crate) panics: Panics,
    /// Coverage counters.
    pub(crate) stats: Rc<RefCell<Stats>>,
    /// What the run reached.
    pub(crate) coverage: Rc<RefCell<Coverage>>,
}

impl Shared {
    /// Counts one more `label` reached.
    pub(crate) fn hit(&self, label: impl Into<String>) {
        self.coverage.borrow_mut().hit(label);
    }

    /// Appends `text` to the trace, stamped with the simulated time.
    pub(crate) fn event(&self, text: String) {
        event(&self.trace, text);
    }

    /// Spawns `task` on the host's local set; a panic in it is recorded
    /// (and fails the case) instead of tearing the simulation down.
    pub(crate) fn spawn(
        &self,
        task: impl Future<Output = ()> + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::task::spawn_local(CatchPanic {
            inner: Box::pin(task),
            panics: Rc::clone(&self.panics),
            quantum: None,
            idle_polls: 0,
            idle_since: None,
        })
    }

    /// The report of a run that ended with `result`.
    pub(crate) fn report(&self, result: Result<(), String>) -> Report {
        Report {
            result,
            trace: self.trace.borrow().clone(),
            stats: *self.stats.borrow(),
            coverage: self.coverage.borrow().clone(),
        }
    }
}

/// One client attempt that got a stream, as the client saw it.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) label: String,
    /// The client's end: the server's events name it as the peer.
    pub(crate) local: SocketAddr,
    /// Bytes it had to send.
    pub(crate) len: usize,
    /// Bytes that came back.
    pub(crate) received: usize,
    /// It reported done (every byte back, verified).
    pub(crate) done: bool,
}

/// Shared between the harness and the hosts.
#[derive(Clone)]
pub(crate) struct World {
    /// The trace, the panics and the counters.
    pub(crate) shared: Shared,
    /// Every server instance started (one more per bounce).
    pub(crate) servers: Rc<RefCell<Vec<EchoServer>>>,
    /// The largest read each server instance's streams returned before
    /// their shutdowns (same index as `servers`).
    pub(crate) largest_reads: Rc<RefCell<Vec<Arc<AtomicUsize>>>>,
    /// Echoes still running.
    pub(crate) running: Rc<RefCell<usize>>,
    /// Every factory event, tagged with its server instance (the index in
    /// `servers`) and whether the shutdown had begun. Filled by
    /// `EchoServer::observe`, which wants `Send`.
    pub(crate) events: Arc<Mutex<Vec<(usize, ServerEvent, bool)>>>,
    /// Set when the graceful shutdown begins; each event records it.
    pub(crate) stopping: Arc<AtomicBool>,
    /// Every client attempt that got a stream.
    pub(crate) attempts: Rc<RefCell<Vec<Attempt>>>,
    /// How the graceful shutdown ended, once it has.
    pub(crate) shutdown: Rc<RefCell<Option<ShutdownOutcome>>>,
    /// How long the graceful shutdown took (simulated time).
    pub(crate) shutdown_took: Rc<RefCell<Option<Duration>>>,
    /// The address of the client host the access list turns away.
    pub(crate) denied: Rc<RefCell<Option<IpAddr>>>,
    /// Connections open as the graceful shutdown began.
    pub(crate) open_at_shutdown: Rc<RefCell<Option<usize>>>,
    /// Accept failures injected (out of file descriptors), over every
    /// server instance.
    pub(crate) accept_failures: Rc<Cell<usize>>,
    /// The first server instance listens: clients start only then, as a
    /// test waits for a server's listening line (a connect refused before
    /// it would be a retry no property means).
    pub(crate) listening: Rc<Cell<bool>>,
}
