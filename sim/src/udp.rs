//! UDP echo under simulation: the real `echo-net` UDP server and clients on
//! turmoil's UDP, with datagrams dropped and duplicated on purpose and
//! reordered by latency jitter. Every client's accounting must be exact:
//! equal to a count made independently from what arrived, and consistent
//! with what the network was made to do.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use echo_core::{UdpClientConfig, UdpClientEvent, UdpConfig, UdpEchoClient, UdpReport, UdpStats};
use echo_net::{Datagrams, EchoServer, ServerOptions, now, udp_echo};
use proptest::prelude::*;

use crate::check::Scenario;
use crate::io::Rng;
use crate::world::{Report, Shared, event};

const SERVER: &str = "server";
const PORT: u16 = 7007;
/// How long clients wait for replies after their last datagram: far more
/// than any round trip here, so nothing in flight is counted lost.
const WAIT: Duration = Duration::from_secs(1);

/// One client: how many datagrams, how big, how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPlan {
    /// Datagrams to send.
    pub count: u64,
    /// Body bytes after the 16-byte header.
    pub body_len: usize,
    /// Pause between datagrams.
    pub interval_ms: u64,
    /// When it starts.
    pub start_ms: u64,
}

/// A UDP scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpCase {
    /// The run's seed (set by the runner).
    pub seed: u64,
    /// Least one-way latency.
    pub min_latency_ms: u64,
    /// Most one-way latency (the spread reorders datagrams).
    pub max_latency_ms: u64,
    /// The server's per-source rate limit (0: none).
    pub rate: u32,
    /// Percent of requests the clients' network drops.
    pub drop_requests_pct: u64,
    /// Percent of replies the server's network drops.
    pub drop_replies_pct: u64,
    /// Percent of replies the server's network sends twice.
    pub dup_replies_pct: u64,
    /// One client per host.
    pub clients: Vec<UdpPlan>,
}

/// UDP cases: 1 to 3 clients of up to 300 datagrams, latency jitter up to
/// 100 ms, each kind of fault (request loss, reply loss, duplication, rate
/// limit) switched on in about half the cases.
pub fn udp_case() -> impl Strategy<Value = UdpCase> {
    let plan = (1u64..300, 0usize..2_000, 0u64..20, 0u64..100).prop_map(
        |(count, body_len, interval_ms, start_ms)| UdpPlan {
            count,
            body_len,
            interval_ms,
            start_ms,
        },
    );
    let pct = || prop_oneof![Just(0u64), 1u64..40];
    let rate = prop_oneof![Just(0u32), 1u32..200];
    (
        prop::collection::vec(plan, 1..=3),
        (0u64..20, 0u64..100),
        rate,
        (pct(), pct(), pct()),
    )
        .prop_map(|(clients, (min, extra), rate, (req, rep, dup))| UdpCase {
            seed: 0,
            min_latency_ms: min,
            max_latency_ms: min + extra,
            rate,
            drop_requests_pct: req,
            drop_replies_pct: rep,
            dup_replies_pct: dup,
            clients,
        })
}

impl Scenario for UdpCase {
    fn seeded(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn run(&self) -> Report {
        let world = World::default();
        let result = simulate(self, &world);
        world.shared.report(result)
    }
}

/// One datagram a socket was asked to send.
#[derive(Debug, Clone, Copy)]
struct Sent {
    to: SocketAddr,
    /// Its `seq` header.
    seq: u64,
    len: usize,
    /// Copies put on the wire (0: dropped on purpose).
    copies: u8,
    at: Instant,
}

/// What one socket put on the wire and saw arrive.
#[derive(Debug, Default)]
struct Wire {
    sent: Vec<Sent>,
    /// Per datagram received: its source, its bytes, when.
    received: Vec<(SocketAddr, Vec<u8>, Instant)>,
}

/// A turmoil UDP socket that drops and duplicates what it sends, on
/// purpose, and logs everything.
struct SimDatagrams {
    socket: turmoil::net::UdpSocket,
    drop_pct: u64,
    dup_pct: u64,
    rng: RefCell<Rng>,
    wire: Rc<RefCell<Wire>>,
}

impl Datagrams for SimDatagrams {
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (len, from) = self.socket.recv_from(buf).await?;
        self.wire
            .borrow_mut()
            .received
            .push((from, buf[..len].to_vec(), now()));
        Ok((len, from))
    }

    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>> {
        let roll = self.rng.borrow_mut().next() % 100;
        let copies: u8 = if roll < self.drop_pct {
            0
        } else if roll < self.drop_pct + self.dup_pct {
            2
        } else {
            1
        };
        let seq = datagram.get(..8).map_or(u64::MAX, |h| {
            u64::from_be_bytes(h.try_into().unwrap_or_default())
        });
        self.wire.borrow_mut().sent.push(Sent {
            to,
            seq,
            len: datagram.len(),
            copies,
            at: now(),
        });
        async move {
            for _ in 0..copies {
                self.socket.send_to(datagram, to).await?;
            }
            Ok(datagram.len())
        }
    }
}

/// One client host's record.
#[derive(Debug, Clone)]
struct ClientLog {
    index: usize,
    addr: SocketAddr,
    wire: Rc<RefCell<Wire>>,
    report: Option<UdpReport>,
    /// Reply and Duplicate events seen, and every Done event's report.
    replies: u64,
    duplicates: u64,
    dones: Vec<UdpReport>,
}

#[derive(Default, Clone)]
struct World {
    /// The trace, the panics and the counters.
    shared: Shared,
    server_wire: Rc<RefCell<Wire>>,
    server: Rc<RefCell<Option<EchoServer>>>,
    server_stats: Rc<RefCell<Option<UdpStats>>>,
    /// The server's address as the clients resolved it.
    server_addr: Rc<RefCell<Option<SocketAddr>>>,
    /// Per client host, in start order: its index, address, wire log and
    /// final report.
    clients: Rc<RefCell<Vec<ClientLog>>>,
}

fn simulate(case: &UdpCase, world: &World) -> Result<(), String> {
    let latency = (case.min_latency_ms, case.max_latency_ms);
    let mut sim = crate::vocab::network(case.seed, latency, Duration::from_secs(60))
        .udp_capacity(4_096)
        .build();

    let (seed, drop_pct, dup_pct, rate) = (
        case.seed,
        case.drop_replies_pct,
        case.dup_replies_pct,
        case.rate,
    );
    let host_world = world.clone();
    sim.host(SERVER, move || {
        let world = host_world.clone();
        async move {
            let socket = turmoil::net::UdpSocket::bind(("0.0.0.0", PORT)).await?;
            let socket = SimDatagrams {
                socket,
                drop_pct,
                dup_pct,
                rng: RefCell::new(Rng::new(seed)),
                wire: Rc::clone(&world.server_wire),
            };
            let server = EchoServer::new(ServerOptions::default());
            *world.server.borrow_mut() = Some(server.clone());
            let config = UdpConfig {
                rate,
                ..UdpConfig::default()
            };
            let done = Rc::clone(&world.server_stats);
            let _ = world
                .shared
                .spawn(async move {
                    let stats = server.serve_udp(socket, config).await;
                    *done.borrow_mut() = Some(stats);
                })
                .await;
            Ok(())
        }
    });

    for (i, plan) in case.clients.iter().copied().enumerate() {
        let world = world.clone();
        let drop_pct = case.drop_requests_pct;
        sim.client(format!("client{i}"), async move {
            tokio::time::sleep(Duration::from_millis(plan.start_ms)).await;
            let socket = turmoil::net::UdpSocket::bind(("0.0.0.0", 0)).await?;
            let local = SocketAddr::new(
                turmoil::lookup(format!("client{i}")),
                socket.local_addr()?.port(),
            );
            let wire = Rc::new(RefCell::new(Wire::default()));
            let socket = SimDatagrams {
                socket,
                drop_pct,
                dup_pct: 0,
                rng: RefCell::new(Rng::new(seed ^ (i as u64 + 1))),
                wire: Rc::clone(&wire),
            };
            let slot = {
                let mut clients = world.clients.borrow_mut();
                clients.push(ClientLog {
                    index: i,
                    addr: local,
                    wire,
                    report: None,
                    replies: 0,
                    duplicates: 0,
                    dones: Vec::new(),
                });
                clients.len() - 1
            };
            let server = SocketAddr::new(turmoil::lookup(SERVER), PORT);
            *world.server_addr.borrow_mut() = Some(server);
            let config = UdpClientConfig {
                count: plan.count,
                interval: Duration::from_millis(plan.interval_ms),
                wait: WAIT,
            };
            let client = UdpEchoClient::new(vec![0xa5; plan.body_len], config, now())
                .map_err(|e| e.to_string())?;
            let trace = Rc::clone(&world.shared.trace);
            let clients = Rc::clone(&world.clients);
            let _ = world
                .shared
                .spawn(async move {
                    let report = udp_echo(&socket, server, client, |e| {
                        let mut clients = clients.borrow_mut();
                        let log = &mut clients[slot];
                        match e {
                            UdpClientEvent::Reply { seq, reordered, .. } => {
                                log.replies += 1;
                                event(&trace, format!("c{i} reply {seq} reordered={reordered}"));
                            }
                            UdpClientEvent::Duplicate { .. } => log.duplicates += 1,
                            UdpClientEvent::Done(report) => log.dones.push(*report),
                            _ => {}
                        }
                        if !matches!(e, UdpClientEvent::Reply { .. }) {
                            event(&trace, format!("c{i} {e:?}"));
                        }
                    })
                    .await;
                    match report {
                        Ok(report) => clients.borrow_mut()[slot].report = Some(report),
                        Err(e) => event(&trace, format!("c{i} error {e}")),
                    }
                })
                .await;
            Ok(())
        });
    }

    loop {
        let finished = sim.step().map_err(|e| format!("simulation failed: {e}"))?;
        if let Some(panic) = world.shared.panics.borrow().first() {
            return Err(format!("panic in a task: {panic}"));
        }
        if finished {
            break;
        }
    }
    // The clients are done: stop the server and collect its counters.
    if let Some(server) = world.server.borrow().as_ref() {
        server.stop_accepting();
    }
    for _ in 0..1_000 {
        if world.server_stats.borrow().is_some() {
            break;
        }
        sim.step().map_err(|e| format!("simulation failed: {e}"))?;
    }
    check(case, world)
}

/// One property of a finished UDP run.
type Invariant = fn(&UdpCase, &World) -> Result<(), String>;

/// What must hold once a UDP case has run, each a named unit, checked in
/// this order: a new property is one more function and one more line.
const AFTER_RUN: &[(&str, Invariant)] = &[
    ("client reports", client_reports),
    ("server books", server_books),
];

/// The invariants, from the logs; the first violated one is named.
fn check(case: &UdpCase, world: &World) -> Result<(), String> {
    for (name, check) in AFTER_RUN {
        check(case, world).map_err(|violation| format!("{name}: {violation}"))?;
    }
    Ok(())
}

/// Each client's report is what arrived, counted independently, and what
/// the network was made to do; paced; told once.
fn client_reports(case: &UdpCase, world: &World) -> Result<(), String> {
    let server_wire = world.server_wire.borrow();
    let server_addr = world
        .server_addr
        .borrow()
        .ok_or("no client resolved the server")?;
    let mut clients = world.clients.borrow().clone();
    clients.sort_by_key(|c| c.index);
    if clients.len() != case.clients.len() {
        return Err(format!(
            "{} of {} clients started",
            clients.len(),
            case.clients.len()
        ));
    }
    let faultless = case.rate == 0
        && case.drop_requests_pct == 0
        && case.drop_replies_pct == 0
        && case.dup_replies_pct == 0;
    for (client, plan) in clients.iter().zip(&case.clients) {
        let (i, addr) = (client.index, &client.addr);
        let report = client
            .report
            .ok_or_else(|| format!("client {i} ended without a report"))?;
        let wire = client.wire.borrow();
        // Paced: no two datagrams closer than the interval.
        let interval = Duration::from_millis(plan.interval_ms);
        if let Some(w) = wire.sent.windows(2).find(|w| w[1].at - w[0].at < interval) {
            return Err(format!(
                "client {i}: datagrams {} and {} sent {:?} apart, interval {interval:?}",
                w[0].seq,
                w[1].seq,
                w[1].at - w[0].at
            ));
        }
        // The events tell the same story as the report, and end once.
        let mut quiet = report;
        (quiet.min_rtt, quiet.max_rtt) = (None, None);
        let events_ok = client.replies == report.received
            && client.duplicates == report.duplicates
            && client.dones == [report];
        if !events_ok {
            return Err(format!(
                "client {i}: {} replies, {} duplicates and Done {:?} in its events, but {quiet:?}",
                client.replies, client.duplicates, client.dones
            ));
        }
        // Independent count from the arrivals, in order, until all were back.
        let mut expect = UdpReport {
            sent: plan.count,
            ..UdpReport::default()
        };
        let (mut seen, mut highest) = (HashSet::new(), None::<u64>);
        for (from, bytes, _) in &wire.received {
            if expect.received == plan.count {
                break;
            }
            if *from != server_addr {
                continue; // the client ignores strangers too
            }
            let seq = u64::from_be_bytes(bytes[..8].try_into().map_err(|_| "short datagram")?);
            if bytes.len() != 16 + plan.body_len || bytes[16..].iter().any(|b| *b != 0xa5) {
                expect.corrupt += 1;
            } else if seen.insert(seq) {
                expect.received += 1;
                expect.reordered += u64::from(highest.is_some_and(|h| seq < h));
                highest = highest.max(Some(seq));
            } else {
                expect.duplicates += 1;
            }
        }
        expect.lost = expect.sent - expect.received;
        let mut got = report;
        (got.min_rtt, got.max_rtt) = (None, None);
        if got != expect {
            return Err(format!(
                "client {i}: reported {got:?}, but what arrived says {expect:?}"
            ));
        }
        // What the network was made to do: a datagram is back iff the
        // server put at least one copy of its reply on the wire.
        let replied: HashSet<u64> = server_wire
            .sent
            .iter()
            .filter(|s| s.to == *addr && s.copies > 0)
            .map(|s| s.seq)
            .collect();
        if report.received != replied.len() as u64 {
            return Err(format!(
                "client {i}: {} back, but the server's network delivered replies to {}",
                report.received,
                replied.len()
            ));
        }
        if faultless && !report.is_complete() {
            return Err(format!(
                "client {i}: incomplete without any fault: {report:?}"
            ));
        }
        let mut stats = world.shared.stats.borrow_mut();
        stats.done += u64::from(report.is_complete());
        stats.lost += report.lost;
        stats.duplicates += report.duplicates;
        stats.reordered += report.reordered;
    }
    Ok(())
}

/// The server's books: every request that reached it is counted, and each
/// was echoed or dropped by the rate limit (an independent model of it),
/// nothing else.
fn server_books(case: &UdpCase, world: &World) -> Result<(), String> {
    let server_wire = world.server_wire.borrow();
    let server_stats = world
        .server_stats
        .borrow()
        .ok_or("the UDP server did not stop when told to")?;
    let requests_delivered: u64 = world
        .clients
        .borrow()
        .iter()
        .flat_map(|c| {
            c.wire
                .borrow()
                .sent
                .iter()
                .map(|s| u64::from(s.copies))
                .collect::<Vec<_>>()
        })
        .sum();
    let expected = UdpStats {
        received: requests_delivered,
        echoed: server_wire.sent.len() as u64,
        echoed_bytes: server_wire.sent.iter().map(|s| s.len as u64).sum(),
        rate_limited: requests_delivered - server_wire.sent.len() as u64,
        ..UdpStats::default()
    };
    // Which datagrams the rate limit lets through, by an independent model
    // (a token bucket in nanoseconds), in arrival order: exactly those echo.
    let allowed = rate_model(case.rate, &server_wire.received);
    let echoed: Vec<(SocketAddr, u64)> = server_wire.sent.iter().map(|s| (s.to, s.seq)).collect();
    if echoed != allowed {
        let at = echoed.iter().zip(&allowed).position(|(a, b)| a != b);
        return Err(format!(
            "rate {}: the server echoed {} datagrams, the model allows {}; first difference at {at:?}",
            case.rate,
            echoed.len(),
            allowed.len()
        ));
    }
    if server_stats != expected || server_wire.received.len() as u64 != requests_delivered {
        return Err(format!(
            "server counted {server_stats:?}; its wire says {expected:?} ({} datagrams received)",
            server_wire.received.len()
        ));
    }
    if case.rate == 0 && server_stats.rate_limited > 0 {
        return Err("datagrams rate-limited with no limit set".into());
    }
    event(&world.shared.trace, format!("end: {server_stats:?}"));
    Ok(())
}

/// The datagrams a per-source limit of `rate` per second (bursts of
/// `rate`) lets through, as `(source, seq)` in arrival order: a token
/// bucket per source IP holding up to one second of credit, in nanoseconds,
/// each datagram costing `1 s / rate` (truncated to whole nanoseconds, as a
/// `Duration` division does).
fn rate_model(rate: u32, arrivals: &[(SocketAddr, Vec<u8>, Instant)]) -> Vec<(SocketAddr, u64)> {
    let seq = |bytes: &[u8]| u64::from_be_bytes(bytes[..8].try_into().unwrap_or_default());
    if rate == 0 {
        return arrivals
            .iter()
            .map(|(from, b, _)| (*from, seq(b)))
            .collect();
    }
    let cost = 1_000_000_000 / u128::from(rate);
    let capacity = 1_000_000_000; // one second of credit
    let mut buckets: HashMap<std::net::IpAddr, (u128, Instant)> = HashMap::new();
    let mut allowed = Vec::new();
    for (from, bytes, at) in arrivals {
        let (credit, last) = buckets.entry(from.ip()).or_insert((capacity, *at));
        *credit = (*credit + at.duration_since(*last).as_nanos()).min(capacity);
        *last = *at;
        if *credit >= cost {
            *credit -= cost;
            allowed.push((*from, seq(bytes)));
        }
    }
    allowed
}
