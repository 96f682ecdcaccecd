//! UDP echo under simulation: the real `echo-net` UDP server and clients on
//! turmoil's UDP, with datagrams dropped and duplicated on purpose and
//! reordered by latency jitter. Every client's accounting must be exact:
//! equal to a count made independently from what arrived, and consistent
//! with what the network was made to do.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use echo_core::{UdpClientConfig, UdpClientEvent, UdpConfig, UdpEchoClient, UdpReport, UdpStats};
use echo_net::{Datagrams, EchoServer, ServerOptions, now, udp_echo};
use proptest::prelude::*;

use crate::check::Scenario;
use crate::io::{CatchPanic, Panics, Rng};
use crate::run::{Report, Stats, Trace};

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
        let trace = world.trace.borrow().clone();
        let stats = *world.stats.borrow();
        Report {
            result,
            trace,
            stats,
        }
    }
}

/// What one socket put on the wire and saw arrive.
#[derive(Debug, Default)]
struct Wire {
    /// Per datagram sent: its destination, its `seq` header, copies sent.
    sent: Vec<(SocketAddr, u64, u8)>,
    /// Per datagram received: its source and its bytes.
    received: Vec<(SocketAddr, Vec<u8>)>,
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
            .push((from, buf[..len].to_vec()));
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
        self.wire.borrow_mut().sent.push((to, seq, copies));
        async move {
            for _ in 0..copies {
                self.socket.send_to(datagram, to).await?;
            }
            Ok(datagram.len())
        }
    }
}

type ClientLog = (usize, SocketAddr, Rc<RefCell<Wire>>, Option<UdpReport>);

#[derive(Default, Clone)]
struct World {
    trace: Trace,
    panics: Panics,
    stats: Rc<RefCell<Stats>>,
    server_wire: Rc<RefCell<Wire>>,
    server: Rc<RefCell<Option<EchoServer>>>,
    server_stats: Rc<RefCell<Option<UdpStats>>>,
    /// The server's address as the clients resolved it.
    server_addr: Rc<RefCell<Option<SocketAddr>>>,
    /// Per client host, in start order: its index, address, wire log and
    /// final report.
    clients: Rc<RefCell<Vec<ClientLog>>>,
}

fn event(trace: &Trace, text: String) {
    let at = turmoil::sim_elapsed().unwrap_or_default();
    trace
        .borrow_mut()
        .push(format!("{:>7}ms {text}", at.as_millis()));
}

/// Runs `task` on the host's local set, turning a panic into a recorded
/// message.
async fn guarded(panics: &Panics, task: impl Future<Output = ()> + 'static) {
    let task = CatchPanic {
        inner: Box::pin(task),
        panics: Rc::clone(panics),
    };
    let _ = tokio::task::spawn_local(task).await;
}

fn simulate(case: &UdpCase, world: &World) -> Result<(), String> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(case.seed)
        .epoch(std::time::UNIX_EPOCH)
        .min_message_latency(Duration::from_millis(case.min_latency_ms))
        .max_message_latency(Duration::from_millis(case.max_latency_ms))
        .udp_capacity(4_096)
        .simulation_duration(Duration::from_secs(60))
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
            guarded(&world.panics, async move {
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
                clients.push((i, local, wire, None));
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
            let trace = Rc::clone(&world.trace);
            let clients = Rc::clone(&world.clients);
            guarded(&world.panics, async move {
                let report = udp_echo(&socket, server, client, |e| match e {
                    UdpClientEvent::Reply { seq, reordered, .. } => {
                        event(&trace, format!("c{i} reply {seq} reordered={reordered}"));
                    }
                    other => event(&trace, format!("c{i} {other:?}")),
                })
                .await;
                match report {
                    Ok(report) => clients.borrow_mut()[slot].3 = Some(report),
                    Err(e) => event(&trace, format!("c{i} error {e}")),
                }
            })
            .await;
            Ok(())
        });
    }

    loop {
        let finished = sim.step().map_err(|e| format!("simulation failed: {e}"))?;
        if let Some(panic) = world.panics.borrow().first() {
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

/// The invariants, from the logs.
fn check(case: &UdpCase, world: &World) -> Result<(), String> {
    let server_wire = world.server_wire.borrow();
    let server_stats = world
        .server_stats
        .borrow()
        .ok_or("the UDP server did not stop when told to")?;
    let server_addr = world
        .server_addr
        .borrow()
        .ok_or("no client resolved the server")?;
    let mut clients = world.clients.borrow().clone();
    clients.sort_by_key(|c| c.0);
    if clients.len() != case.clients.len() {
        return Err(format!(
            "{} of {} clients started",
            clients.len(),
            case.clients.len()
        ));
    }
    let mut requests_delivered = 0u64;
    for ((i, addr, wire, report), plan) in clients.iter().zip(&case.clients) {
        let report = report.ok_or_else(|| format!("client {i} ended without a report"))?;
        let wire = wire.borrow();
        requests_delivered += wire.sent.iter().map(|(_, _, c)| u64::from(*c)).sum::<u64>();
        // Independent count from the arrivals, in order, until all were back.
        let mut expect = UdpReport {
            sent: plan.count,
            ..UdpReport::default()
        };
        let (mut seen, mut highest) = (HashSet::new(), None::<u64>);
        for (from, bytes) in &wire.received {
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
            .filter(|(to, _, copies)| to == addr && *copies > 0)
            .map(|(_, seq, _)| *seq)
            .collect();
        if report.received != replied.len() as u64 {
            return Err(format!(
                "client {i}: {} back, but the server's network delivered replies to {}",
                report.received,
                replied.len()
            ));
        }
        let faultless = case.rate == 0
            && case.drop_requests_pct == 0
            && case.drop_replies_pct == 0
            && case.dup_replies_pct == 0;
        if faultless && !report.is_complete() {
            return Err(format!(
                "client {i}: incomplete without any fault: {report:?}"
            ));
        }
        let mut stats = world.stats.borrow_mut();
        stats.done += u64::from(report.is_complete());
        stats.lost += report.lost;
        stats.duplicates += report.duplicates;
        stats.reordered += report.reordered;
    }
    // The server's books: every request that reached it is counted, and
    // each was echoed or dropped by the rate limit, nothing else.
    let expected = UdpStats {
        received: requests_delivered,
        echoed: server_wire.sent.len() as u64,
        echoed_bytes: server_stats.echoed_bytes,
        rate_limited: requests_delivered - server_wire.sent.len() as u64,
        ..UdpStats::default()
    };
    if server_stats != expected || server_wire.received.len() as u64 != requests_delivered {
        return Err(format!(
            "server counted {server_stats:?}; its wire says {expected:?} ({} datagrams received)",
            server_wire.received.len()
        ));
    }
    if case.rate == 0 && server_stats.rate_limited > 0 {
        return Err("datagrams rate-limited with no limit set".into());
    }
    event(&world.trace, format!("end: {server_stats:?}"));
    Ok(())
}
