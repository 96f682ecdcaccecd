//! Runs one [`Case`]: the real `echo-net` server on a server host, real
//! `echo-net` clients on client hosts, faults applied between steps, and the
//! invariants checked throughout and at the end.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use echo_core::{
    Address, ClientConfig, CloseReason, ConnectionId, EchoClient, EchoError, LostReason,
    ServerConfig, ServerEvent, WaterMarks,
};
use echo_net::{
    ClientError, ClientOptions, Connected, DriveConfig, EchoServer, Pipe, ServerOptions,
    ShutdownOutcome, run,
};
use tokio::io::AsyncWrite;

use crate::case::{Case, ConnPlan, Fault, Stall};
use crate::io::{CatchPanic, LocalSpawner, Panics, SimListener, SimStream};

/// The server host's name and port.
const SERVER: &str = "server";
const PORT: u16 = 7;
/// After the last fault heals, every client must be done within this.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(60);
/// After the clients are done, the server must be back to 0 open
/// connections within its idle timeout plus this.
const DRAIN_SLACK: Duration = Duration::from_secs(10);

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
}

fn client_host(i: usize) -> String {
    format!("client{i}")
}

/// Appends `text` to the trace, stamped with the simulated time.
pub(crate) fn event(trace: &Trace, text: String) {
    let at = turmoil::sim_elapsed().unwrap_or_default();
    trace
        .borrow_mut()
        .push(format!("{:>7}ms {text}", at.as_millis()));
}

/// Collects a connection's echo and logs each write into the trace.
/// With a [`Stall`], it blocks (as a full pipe does) once that many bytes
/// were written, for that long.
struct TraceSink {
    label: String,
    bytes: Vec<u8>,
    trace: Trace,
    stall: Option<Stall>,
    /// The running stall's timer.
    blocked: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncWrite for TraceSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut n = buf.len();
        if let Some(stall) = self.stall {
            if self.bytes.len() >= stall.after {
                let label = self.label.clone();
                let trace = Rc::clone(&self.trace);
                let timer = self.blocked.get_or_insert_with(|| {
                    event(&trace, format!("{label} output blocks for {}ms", stall.ms));
                    Box::pin(tokio::time::sleep(Duration::from_millis(stall.ms)))
                });
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                event(&self.trace, format!("{} output unblocks", self.label));
                self.stall = None;
                self.blocked = None;
            } else {
                n = n.min(stall.after - self.bytes.len());
            }
        }
        self.bytes.extend_from_slice(&buf[..n]);
        event(&self.trace, format!("{} +{n}", self.label));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Streamed input: the message in random pieces of 1..=4096 bytes, ready at
/// once (like a pipe with data waiting).
struct Pieces {
    data: Bytes,
    rng: crate::io::Rng,
}

impl tokio::io::AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let n = this
            .rng
            .upto(4096)
            .min(buf.remaining())
            .min(this.data.len());
        buf.put_slice(&this.data.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// One client attempt that got a stream, as the client saw it.
#[derive(Debug)]
struct Attempt {
    label: String,
    /// The client's end: the server's events name it as the peer.
    local: SocketAddr,
    /// Bytes it had to send.
    len: usize,
    /// Bytes that came back.
    received: usize,
    /// It reported done (every byte back, verified).
    done: bool,
}

/// Shared between the harness and the hosts.
#[derive(Clone)]
struct World {
    trace: Trace,
    panics: Panics,
    stats: Rc<RefCell<Stats>>,
    /// Every server instance started (one more per bounce).
    servers: Rc<RefCell<Vec<EchoServer>>>,
    /// Echoes still running.
    running: Rc<RefCell<usize>>,
    /// Every factory event, tagged with its server instance (the index in
    /// `servers`) and whether the shutdown had begun. Filled by
    /// `EchoServer::observe`, which wants `Send`.
    events: Arc<Mutex<Vec<(usize, ServerEvent, bool)>>>,
    /// Set when the graceful shutdown begins; each event records it.
    stopping: Arc<AtomicBool>,
    /// Every client attempt that got a stream.
    attempts: Rc<RefCell<Vec<Attempt>>>,
    /// How the graceful shutdown ended, once it has.
    shutdown: Rc<RefCell<Option<ShutdownOutcome>>>,
    /// How long the graceful shutdown took (simulated time).
    shutdown_took: Rc<RefCell<Option<Duration>>>,
}

/// Runs `case` to the end and reports.
#[must_use]
pub fn run_case(case: &Case) -> Report {
    let world = World {
        trace: Trace::default(),
        panics: Panics::default(),
        stats: Rc::default(),
        servers: Rc::default(),
        running: Rc::new(RefCell::new(case.connections())),
        events: Arc::default(),
        stopping: Arc::default(),
        attempts: Rc::default(),
        shutdown: Rc::default(),
        shutdown_took: Rc::default(),
    };
    let result = simulate(case, &world);
    let trace = world.trace.borrow().clone();
    let stats = *world.stats.borrow();
    Report {
        result,
        trace,
        stats,
    }
}

fn server_options(case: &Case) -> ServerOptions {
    ServerOptions {
        config: ServerConfig {
            max_connections: case.max_connections,
            idle_timeout: case.server_idle_ms.map(Duration::from_millis),
        },
        marks: WaterMarks::new(case.server_high, case.server_low).expect("valid marks"),
        drive: DriveConfig {
            read_chunk: case.server_read_chunk,
            // Without a shutdown plan, long enough for any flush the case
            // can need; with one, the plan's (clients that keep reading
            // finish in it; one whose output blocks is cut off by it).
            flush_timeout: case
                .shutdown
                .map_or(LIVENESS_BOUND, |s| Duration::from_millis(s.flush_ms)),
            ..DriveConfig::default()
        },
    }
}

fn client_options(case: &Case) -> ClientOptions {
    ClientOptions {
        config: ClientConfig {
            idle_timeout: Some(Duration::from_millis(case.client_idle_ms)),
            ..ClientConfig::default()
        },
        marks: WaterMarks::new(case.client_high, 0).expect("valid marks"),
        drive: DriveConfig {
            read_chunk: case.client_read_chunk,
            ..ClientOptions::default().drive
        },
    }
}

fn simulate(case: &Case, world: &World) -> Result<(), String> {
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(case.seed)
        .epoch(std::time::UNIX_EPOCH)
        .min_message_latency(Duration::from_millis(case.min_latency_ms))
        .max_message_latency(Duration::from_millis(case.max_latency_ms))
        .tcp_capacity(case.tcp_capacity)
        .simulation_duration(Duration::from_millis(case.heal_at_ms) + LIVENESS_BOUND);
    if case.random_order {
        builder.enable_random_order();
    }
    let mut sim = builder.build();

    let options = server_options(case);
    let (server_io, seed, shutdown) = (case.server_io, case.seed, case.shutdown);
    let host_world = world.clone();
    sim.host(SERVER, move || {
        let world = host_world.clone();
        async move {
            event(&world.trace, "server starts".into());
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
            let server = EchoServer::new(options);
            let instance = {
                let mut servers = world.servers.borrow_mut();
                servers.push(server.clone());
                servers.len() - 1
            };
            let (events, stopping) = (Arc::clone(&world.events), Arc::clone(&world.stopping));
            server.observe(move |e| {
                let mut events = events.lock().unwrap_or_else(PoisonError::into_inner);
                events.push((instance, e.clone(), stopping.load(Ordering::Relaxed)));
            });
            let spawner = LocalSpawner {
                panics: Rc::clone(&world.panics),
            };
            let serve = server.serve(SimListener::new(listener, server_io, seed), spawner);
            let Some(plan) = shutdown else {
                serve.await;
                return Ok(());
            };
            let stop = async {
                tokio::time::sleep(Duration::from_millis(plan.at_ms)).await;
                event(&world.trace, "shutdown starts".into());
                world.stopping.store(true, Ordering::Relaxed);
                let started = tokio::time::Instant::now();
                let outcome = server.shutdown(Duration::from_millis(plan.grace_ms)).await;
                event(&world.trace, format!("shutdown ends: {outcome:?}"));
                *world.shutdown.borrow_mut() = Some(outcome);
                *world.shutdown_took.borrow_mut() = Some(started.elapsed());
            };
            tokio::join!(serve, stop);
            event(&world.trace, "server stops serving".into());
            Ok(())
        }
    });

    let options = client_options(case);
    for (h, conns) in case.hosts.iter().enumerate() {
        let world = world.clone();
        let conns = conns.clone();
        let (io, faulty, one_shot) = (case.client_io, case.has_faults(), case.shutdown.is_some());
        sim.client(client_host(h), async move {
            let mut tasks = Vec::new();
            for (c, plan) in conns.into_iter().enumerate() {
                let label = format!("h{h}c{c}");
                let seed = seed ^ ((h as u64) << 32 | c as u64);
                let world2 = world.clone();
                let outcome = Rc::new(RefCell::new(None));
                let slot = Rc::clone(&outcome);
                let task = async move {
                    let result =
                        connection(label, plan, options, io, seed, (faulty, one_shot), &world2)
                            .await;
                    *slot.borrow_mut() = Some(result);
                };
                let panics = Rc::clone(&world.panics);
                tasks.push((
                    tokio::task::spawn_local(CatchPanic {
                        inner: Box::pin(task),
                        panics,
                    }),
                    outcome,
                ));
            }
            for (task, outcome) in tasks {
                let _ = task.await;
                match outcome.borrow_mut().take() {
                    Some(Ok(())) => {}
                    Some(Err(violation)) => return Err(violation.into()),
                    None => return Err("a client connection task panicked".into()),
                }
            }
            Ok(())
        });
    }

    let mut next = 0;
    let mut healed = false;
    let mut server_down = false;
    loop {
        let elapsed = sim.elapsed();
        while !healed
            && next < case.faults.len()
            && elapsed >= Duration::from_millis(case.faults[next].0)
        {
            let fault = case.faults[next].1;
            next += 1;
            let host = |i: usize| client_host(i % case.hosts.len());
            match fault {
                Fault::Partition(i) => sim.partition(SERVER, host(i)),
                Fault::PartitionToServer(i) => sim.partition_oneway(host(i), SERVER),
                Fault::PartitionFromServer(i) => sim.partition_oneway(SERVER, host(i)),
                Fault::Repair(i) => repair(&sim, &host(i)),
                Fault::Hold(i) => sim.hold(SERVER, host(i)),
                Fault::Release(i) => sim.release(SERVER, host(i)),
                Fault::CrashServer if !server_down => {
                    sim.crash(SERVER);
                    server_down = true;
                    world.stats.borrow_mut().crashes += 1;
                }
                Fault::CrashServer => continue,
                Fault::BounceServer => {
                    sim.bounce(SERVER);
                    server_down = false;
                }
            }
            world
                .trace
                .borrow_mut()
                .push(format!("{:>7}ms fault {fault:?}", elapsed.as_millis()));
            if *world.running.borrow() > 0 {
                world.stats.borrow_mut().faults_mid_traffic += 1;
            }
        }
        if !healed && elapsed >= Duration::from_millis(case.heal_at_ms) {
            for h in 0..case.hosts.len() {
                let host = client_host(h);
                sim.release(SERVER, host.as_str());
                repair(&sim, &host);
            }
            if server_down {
                sim.bounce(SERVER);
                server_down = false;
            }
            world
                .trace
                .borrow_mut()
                .push(format!("{:>7}ms healed", elapsed.as_millis()));
            healed = true;
        }
        let finished = sim.step().map_err(|e| format!("simulation failed: {e}"))?;
        if let Some(panic) = world.panics.borrow().first() {
            return Err(format!("panic in a spawned task: {panic}"));
        }
        if let (Some(limit), Some(server)) = (case.max_connections, world.servers.borrow().last()) {
            let open = server.open_connections();
            if open > limit {
                return Err(format!("{open} connections open, above the limit {limit}"));
            }
        }
        if finished {
            break;
        }
    }

    // The clients are gone: the server's count must return to 0 (idle
    // timeouts reclaim connections that a partition wedged).
    let idle = case
        .server_idle_ms
        .map_or(Duration::ZERO, Duration::from_millis);
    // A graceful shutdown that is still to come must also finish.
    let stopping = case.shutdown.map_or(Duration::ZERO, |s| {
        Duration::from_millis(s.at_ms + s.grace_ms)
    });
    let deadline = sim.elapsed() + stopping + idle + DRAIN_SLACK;
    let shutting_down =
        |world: &World| case.shutdown.is_some() && world.shutdown.borrow().is_none();
    let open = |world: &World| {
        world
            .servers
            .borrow()
            .iter()
            .map(EchoServer::open_connections)
            .sum::<usize>()
    };
    while open(world) > 0 || shutting_down(world) {
        if sim.elapsed() > deadline {
            return Err(format!(
                "{} server connections still open {idle:?} + {DRAIN_SLACK:?} after the clients left",
                open(world)
            ));
        }
        sim.step()
            .map_err(|e| format!("simulation failed while draining: {e}"))?;
    }
    if let Some(panic) = world.panics.borrow().first() {
        return Err(format!("panic in a spawned task: {panic}"));
    }
    let bound = case.server_high + case.server_read_chunk;
    for server in world.servers.borrow().iter() {
        let peak = server.peak_connection_buffer();
        if peak > bound {
            return Err(format!(
                "a connection buffered {peak} bytes, above high {} + one read {}",
                case.server_high, case.server_read_chunk
            ));
        }
        // Memory beyond queued bytes: a drained buffer gives its capacity
        // back, so an idle connection costs almost nothing after a burst.
        let idle = server.peak_idle_capacity();
        if idle > echo_core::KEEP_DRAINED_CAPACITY {
            return Err(format!(
                "an empty output buffer kept {idle} bytes of capacity (at most {} allowed)",
                echo_core::KEEP_DRAINED_CAPACITY
            ));
        }
    }
    check_books(case, world)?;
    event(
        &world.trace,
        format!("end: servers={} open=0", world.servers.borrow().len()),
    );
    Ok(())
}

/// The server's books against what the clients saw. Per server instance:
/// ids unique, every admission ended by exactly one loss, each event's open
/// count right, refusals only at the limit. Per connection: the server never
/// read more than the client sent, the client never got back more than the
/// server read, a client that is done was read in full, and without faults
/// (a graceful shutdown included) every byte the server read came back.
fn check_books(case: &Case, world: &World) -> Result<(), String> {
    let events = world.events.lock().unwrap_or_else(PoisonError::into_inner);
    let attempts = world.attempts.borrow();
    let clients: HashMap<SocketAddr, &Attempt> = attempts.iter().map(|a| (a.local, a)).collect();
    let exact = !case.has_faults();
    // Flushes can be cut off where the case's flush timeout is short (the
    // cases that block some clients' output, whether or not one drew a
    // stall).
    let cut_off = case
        .shutdown
        .is_some_and(|s| Duration::from_millis(s.flush_ms) < LIVENESS_BOUND);
    let mut admitted = HashSet::new();
    for instance in 0..world.servers.borrow().len() {
        let mut open: BTreeMap<ConnectionId, SocketAddr> = BTreeMap::new();
        let server_events = events.iter().filter(|(i, _, _)| *i == instance);
        let (mut made, mut refused) = (0, 0);
        for (_, event, stopping) in server_events {
            match event.clone() {
                ServerEvent::ConnectionMade { id, peer, .. } if *stopping => {
                    return Err(format!(
                        "server {instance}: {id} from {peer} admitted after the shutdown began"
                    ));
                }
                ServerEvent::ConnectionMade {
                    id, peer, open: n, ..
                } => {
                    let peer = ip(&peer)?;
                    made += 1;
                    if open.insert(id, peer).is_some() {
                        return Err(format!("server {instance}: connection {id} admitted twice"));
                    }
                    if n != open.len() {
                        return Err(format!(
                            "server {instance}: {id} made with open={n}, but {} are open",
                            open.len()
                        ));
                    }
                    admitted.insert(peer);
                }
                ServerEvent::ConnectionRefused { open: n, limit, .. }
                    if case.max_connections != Some(limit) || n != limit || n != open.len() =>
                {
                    return Err(format!(
                        "server {instance}: refused with open={n} limit={limit}, \
                             but {} are open and the limit is {:?}",
                        open.len(),
                        case.max_connections
                    ));
                }
                ServerEvent::ConnectionRefused { .. } => refused += 1,
                ServerEvent::ConnectionLost {
                    id,
                    peer,
                    received: echoed,
                    open: n,
                    reason,
                } => {
                    let peer = ip(&peer)?;
                    if open.remove(&id) != Some(peer) {
                        return Err(format!(
                            "server {instance}: {id} from {peer} lost, but it was not open"
                        ));
                    }
                    if n != open.len() {
                        return Err(format!(
                            "server {instance}: {id} lost with open={n}, but {} are open",
                            open.len()
                        ));
                    }
                    let Some(client) = clients.get(&peer) else {
                        return Err(format!("server {instance}: {id} from {peer}, no client's"));
                    };
                    let (label, len, got) = (&client.label, client.len as u64, client.received);
                    let got = got as u64;
                    if echoed > len || got > echoed || (client.done && echoed != len) {
                        return Err(format!(
                            "{label}: sent {len}, the server read {echoed}, {got} came back (done: {})",
                            client.done
                        ));
                    }
                    // Where flushes are cut off, a reset loses what was in
                    // flight, as it must: any client's, once its flush
                    // outlasts the timeout.
                    let exact = exact && !cut_off;
                    if exact && got != echoed {
                        return Err(format!(
                            "{label}: the server read {echoed} bytes but only {got} came back"
                        ));
                    }
                    // Without faults a connection ends cleanly, or by the
                    // idle timeout that reclaims a stranded FIN, or (once a
                    // shutdown began, and only then) as shut down.
                    let timed_out = CloseReason::Lost(LostReason::TimedOut);
                    let shut_down = CloseReason::Lost(LostReason::ShutDown);
                    // (A crash cancels the server's tasks, which also reads
                    // as shut down: only fault-free cases can tell.)
                    if exact && reason == shut_down && !*stopping {
                        return Err(format!("{label}: {reason} before any shutdown began"));
                    }
                    if exact
                        && reason != CloseReason::Done
                        && reason != timed_out
                        && reason != shut_down
                    {
                        return Err(format!("{label}: ended without a fault: {reason}"));
                    }
                }
                _ => {}
            }
        }
        if let Some((id, peer)) = open.first_key_value() {
            return Err(format!(
                "server {instance}: {id} from {peer} was never reported lost"
            ));
        }
        let totals = world.servers.borrow()[instance].totals();
        if totals != (made, refused) {
            return Err(format!(
                "server {instance}: totals say {totals:?} (accepted, refused), its events say ({made}, {refused})"
            ));
        }
    }
    // (An empty echo cannot tell a refusal from an admission: both end in a
    // clean close with nothing back.)
    let unadmitted = |a: &&Attempt| a.done && a.len > 0 && !admitted.contains(&a.local);
    if let Some(a) = attempts.iter().find(unadmitted) {
        return Err(format!(
            "{}: done, but the server never admitted it",
            a.label
        ));
    }
    world.stats.borrow_mut().cut_short = attempts
        .iter()
        .filter(|a| !a.done && admitted.contains(&a.local))
        .count() as u64;
    if let Some(plan) = case.shutdown {
        // Grace, then the flush timeout, then the lingering close that
        // follows a flush, then a round trip: a flush that is never cut off
        // (a peer that stopped reading) would hold the shutdown far longer.
        let linger = DriveConfig::default().linger;
        let bound =
            Duration::from_millis(plan.grace_ms + plan.flush_ms + 2 * case.max_latency_ms + 100)
                + linger;
        if let Some(took) = *world.shutdown_took.borrow()
            && took > bound
        {
            return Err(format!(
                "the shutdown took {took:?}, more than grace {}ms + flush timeout {}ms + linger {linger:?} + a round trip",
                plan.grace_ms, plan.flush_ms
            ));
        }
        match *world.shutdown.borrow() {
            None => return Err("the graceful shutdown never finished".into()),
            Some(ShutdownOutcome::Drained) => {
                let unfinished = attempts
                    .iter()
                    .find(|a| !a.done && admitted.contains(&a.local));
                if let Some(a) = unfinished {
                    return Err(format!("{}: shutdown drained, but it is not done", a.label));
                }
            }
            Some(ShutdownOutcome::GraceExpired { .. }) => {}
        }
    }
    Ok(())
}

/// Heals every partition between the server and `host`, both ways and
/// one-way (a one-way partition needs its own repair).
fn repair(sim: &turmoil::Sim<'_>, host: &str) {
    sim.repair(SERVER, host);
    sim.repair_oneway(SERVER, host);
    sim.repair_oneway(host, SERVER);
}

/// One logical client: connect, echo, verify; retry after failures caused
/// by faults. Returns `Err` only for an invariant violation.
async fn connection(
    label: String,
    plan: ConnPlan,
    options: ClientOptions,
    io: crate::io::IoKnobs,
    seed: u64,
    (faulty, one_shot): (bool, bool),
    world: &World,
) -> Result<(), String> {
    let message = Bytes::from(plan.message.bytes());
    tokio::time::sleep(Duration::from_millis(plan.start_ms)).await;
    let mut backoff = Duration::from_millis(20);
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        world.stats.borrow_mut().attempts += 1;
        event(&world.trace, format!("{label} attempt {attempt}"));
        let connect = tokio::time::timeout(
            Duration::from_secs(5),
            turmoil::net::TcpStream::connect((SERVER, PORT)),
        );
        let stream = match connect.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                event(
                    &world.trace,
                    format!("{label} connect error {:?}", e.kind()),
                );
                if one_shot {
                    return stop(world, &label);
                }
                retry(world, &mut backoff).await;
                continue;
            }
            Err(_) => {
                event(&world.trace, format!("{label} connect timed out"));
                if one_shot {
                    return stop(world, &label);
                }
                retry(world, &mut backoff).await;
                continue;
            }
        };
        let (host, peer) = match (stream.local_addr(), stream.peer_addr()) {
            (Ok(host), Ok(peer)) => (host, peer),
            _ => {
                if one_shot {
                    return stop(world, &label);
                }
                retry(world, &mut backoff).await;
                continue;
            }
        };
        let stream = SimStream::new(stream, io, seed.wrapping_add(attempt));
        let connected = Connected {
            stream,
            host: host.into(),
            peer: peer.into(),
        };
        let (client, input) = if plan.streaming {
            let input = Pieces {
                data: message.clone(),
                rng: crate::io::Rng::new(seed ^ attempt),
            };
            (EchoClient::streaming(options.config), Some(input))
        } else {
            (EchoClient::message(message.clone(), options.config), None)
        };
        let sink = TraceSink {
            label: label.clone(),
            bytes: Vec::new(),
            trace: Rc::clone(&world.trace),
            stall: plan.stall,
            blocked: None,
        };
        let mut pipe = Pipe::new(input, sink);
        let echo = run(connected, client, &mut pipe, options);
        let result = match plan.give_up_ms.filter(|_| attempt == 1) {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), echo)
                .await
                .ok(),
            None => Some(echo.await),
        };
        let got = pipe.into_output().bytes;
        // Safety: what came back is always a prefix of what was sent.
        if !message.starts_with(&got) {
            return Err(format!(
                "{label}: received {} bytes that are not a prefix of what was sent",
                got.len()
            ));
        }
        world.attempts.borrow_mut().push(Attempt {
            label: format!("{label} attempt {attempt}"),
            local: host,
            len: message.len(),
            received: got.len(),
            done: matches!(result, Some(Ok(_))),
        });
        match result {
            Some(Ok(summary)) => {
                let len = message.len() as u64;
                if got.len() != message.len() || summary.sent != len || summary.received != len {
                    return Err(format!(
                        "{label}: reported done with {summary:?} but {} of {len} bytes came back",
                        got.len()
                    ));
                }
                event(&world.trace, format!("{label} done {len}"));
                world.stats.borrow_mut().done += 1;
                *world.running.borrow_mut() -= 1;
                return Ok(());
            }
            Some(Err(ClientError::Echo(
                e @ (EchoError::Mismatch { .. } | EchoError::Unexpected { .. }),
            ))) => {
                return Err(format!("{label}: corrupted echo: {e}"));
            }
            Some(Err(e)) if !faulty && !one_shot => {
                return Err(format!("{label}: failed without any fault: {e}"));
            }
            Some(Err(e)) => event(&world.trace, format!("{label} failed: {e}")),
            None => event(&world.trace, format!("{label} gave up")),
        }
        if one_shot {
            return stop(world, &label);
        }
        retry(world, &mut backoff).await;
    }
}

/// Ends a one-shot client (the server is shutting down) without an echo.
fn stop(world: &World, label: &str) -> Result<(), String> {
    event(&world.trace, format!("{label} stops"));
    *world.running.borrow_mut() -= 1;
    Ok(())
}

async fn retry(world: &World, backoff: &mut Duration) {
    world.stats.borrow_mut().retries += 1;
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(Duration::from_secs(1));
}

/// A simulated peer's IP address (every simulated socket has one).
fn ip(peer: &Address) -> Result<SocketAddr, String> {
    peer.ip()
        .ok_or_else(|| format!("a simulated peer without an IP address: {peer}"))
}
