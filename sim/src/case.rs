//! One simulated scenario, and the proptest strategies that choose it.

use proptest::prelude::*;
use std::time::Duration;

use crate::io::IoKnobs;

/// A message to echo: its length and the seed of its bytes (so a failing
/// case prints short, and the length shrinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// Bytes.
    pub len: usize,
    /// Seed of the content.
    pub seed: u64,
}

impl Message {
    /// The bytes.
    #[must_use]
    pub fn bytes(&self) -> Vec<u8> {
        let mut rng = crate::io::Rng::new(self.seed ^ 0x9e37_79b9_7f4a_7c15);
        (0..self.len).map(|_| (rng.next() >> 56) as u8).collect()
    }
}

/// One logical client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnPlan {
    /// What it sends.
    pub message: Message,
    /// When it starts.
    pub start_ms: u64,
    /// Abandon the first attempt after this long (a client give-up).
    pub give_up_ms: Option<u64>,
    /// Feed the message as streamed input in random pieces (as
    /// `echo-client --stdin` does) instead of as one message.
    pub streaming: bool,
    /// Streamed input arrives in bursts, with pauses of 20-150 ms between
    /// some pieces (a user typing, a producer that stalls): the client must
    /// neither time out waiting for it nor lose its place.
    pub bursts: bool,
    /// Streamed input goes quiet once, halfway, for this many milliseconds:
    /// longer than the client's idle timeout, once everything sent so far
    /// has come back. The client's timer is for the server's silence, not
    /// its user's: with nothing owed it must not fire.
    pub hush_ms: Option<u64>,
    /// The application side pushes back: after this many echoed bytes its
    /// output blocks for a while (a full pipe), so the client stops reading
    /// and the server's flush has to wait.
    pub stall: Option<Stall>,
    /// The application side fails mid-echo (see [`Break`]).
    pub breaks: Option<Break>,
}

/// An application side that fails: the client must report it, stop reading
/// at once and end the connection, not finish the echo into the void.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// Standard output breaks (a closed pipe: `echo-client | head -c N`)
    /// once it took this many echoed bytes.
    Output(usize),
    /// Standard input reports a read error once it gave this many bytes.
    Input(usize),
}

/// A blocked standard output: after `after` bytes, no write for `ms`;
/// with `every`, again after each `every` bytes more (a slow reader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Echoed bytes written before it blocks.
    pub after: usize,
    /// How long it blocks.
    pub ms: u64,
    /// Blocks again after this many bytes more, each time.
    pub every: Option<usize>,
}

/// A fault, applied between simulation steps. Host indices are taken modulo
/// the number of client hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Drop everything both ways between the server and a client host.
    Partition(usize),
    /// Drop everything from a client host to the server.
    PartitionToServer(usize),
    /// Drop everything from the server to a client host.
    PartitionFromServer(usize),
    /// Heal a partition (both ways).
    Repair(usize),
    /// Queue everything both ways (nothing lost).
    Hold(usize),
    /// Deliver what was held.
    Release(usize),
    /// Stop the server host (its sockets close).
    CrashServer,
    /// Restart the server host.
    BounceServer,
}

/// A graceful shutdown of the server, as `echo-server` does on SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// When it starts.
    pub at_ms: u64,
    /// How long open connections may go on before they are told to close.
    pub grace_ms: u64,
    /// After the grace period, how long a connection's flush may take
    /// before it is reset.
    pub flush_ms: u64,
}

/// Everything one simulation run needs; `seed` drives turmoil's latency
/// jitter and every stream's random sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The run's seed (set by the runner).
    pub seed: u64,
    /// The simulated network.
    pub network: Network,
    /// The server's settings and socket bending.
    pub server: ServerSide,
    /// Every client's settings and socket bending.
    pub client: ClientSide,
    /// Client hosts, each with its connections.
    pub hosts: Vec<Vec<ConnPlan>>,
    /// Faults by time.
    pub faults: Vec<(u64, Fault)>,
    /// When every fault heals.
    pub heal_at_ms: u64,
    /// Shut the server down gracefully (clients then make one attempt).
    pub shutdown: Option<Shutdown>,
    /// The server misbehaves on purpose (delay, throttle, cut-offs).
    pub misbehave: echo_core::FaultConfig,
    /// Every connection is TLS (`ssl:` server, `tls:` clients).
    pub tls: bool,
    /// The server's access list turns one client host away.
    pub access: Option<Access>,
}

/// The simulated network of a [`Case`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// Least one-way latency.
    pub min_latency_ms: u64,
    /// Most one-way latency.
    pub max_latency_ms: u64,
    /// turmoil's per-stream segment credits (and SYN backlog).
    pub tcp_capacity: usize,
    /// Shuffle host order within each step.
    pub random_order: bool,
}

/// The server's side of a [`Case`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSide {
    /// Pause threshold.
    pub high: usize,
    /// Resume threshold.
    pub low: usize,
    /// Bytes per read.
    pub read_chunk: usize,
    /// Idle timeout.
    pub idle_ms: Option<u64>,
    /// Connection limit (refusals are a fault clients retry through).
    pub max_connections: Option<usize>,
    /// Socket bending.
    pub io: IoKnobs,
}

/// The clients' side of a [`Case`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSide {
    /// Window (the high-water mark).
    pub high: usize,
    /// Bytes per read.
    pub read_chunk: usize,
    /// No-progress timeout.
    pub idle_ms: u64,
    /// Socket bending.
    pub io: IoKnobs,
    /// The allowance of verified echo the application has not taken yet
    /// (`ClientConfig::max_undelivered`).
    pub max_undelivered: usize,
    /// Half-close once the input is sent (`ClientConfig::half_close`): the
    /// server sees end-of-file while it may still owe echo.
    pub half_close: bool,
}

/// An access list that turns client host `denied` away: by a deny block
/// naming it, or by an allow list naming only the other hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The host turned away (an index into [`Case::hosts`]).
    pub denied: usize,
    /// Turned away by an allow list of the others, not a deny block.
    pub by_allow: bool,
}

impl Case {
    /// Total logical connections.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.hosts.iter().map(Vec::len).sum()
    }

    /// Whether anything can legitimately make an echo attempt fail.
    #[must_use]
    pub fn has_faults(&self) -> bool {
        !self.faults.is_empty()
            || self.server.max_connections.is_some()
            || self
                .hosts
                .iter()
                .flatten()
                .any(|c| c.give_up_ms.is_some() || c.breaks.is_some())
            || self.cuts_off()
    }

    /// Whether the server's cut-off may end some echoes early.
    pub fn cuts_off(&self) -> bool {
        self.misbehave.cutoff.is_some() && self.misbehave.cutoff_per_million > 0
    }
}

fn message() -> impl Strategy<Value = Message> {
    // Mostly small, sometimes empty, now and then large (up to 2 MiB).
    let len = prop_oneof![
        2 => Just(0usize),
        12 => 1usize..2_000,
        3 => 2_000usize..40_000,
        1 => 100_000usize..=2_097_152,
    ];
    (len, any::<u64>()).prop_map(|(len, seed)| Message { len, seed })
}

fn io_knobs() -> impl Strategy<Value = IoKnobs> {
    prop_oneof![
        1 => Just(IoKnobs::PLAIN),
        3 => (
            prop_oneof![1usize..=8, 9usize..=4096, Just(usize::MAX)],
            any::<bool>(),
            prop_oneof![1usize..=8, 9usize..=4096, Just(usize::MAX)],
        )
            .prop_map(|(max_read, coalesce, max_write)| IoKnobs { max_read, coalesce, max_write, ..IoKnobs::PLAIN }),
    ]
}

/// Every write is one turmoil segment and at most `tcp_capacity` segments
/// travel per round trip, so tiny chunks on a large message take simulated
/// minutes. Keep each path that makes segments (the client's writes; the
/// server's reads, which bound its echo writes, and its writes) at no less
/// than `len / WINDOWS` bytes, so an echo needs at most about `2 * WINDOWS`
/// segments each way. The windows (the client's verification window, the
/// server's high-water mark) get the same floor: each takes a round trip
/// to refill, so an echo takes at most about `WINDOWS` round trips, 24 s at
/// the slowest latency drawn, inside the 60 s liveness bound. (With
/// `len / 500`, a 956,500-byte echo through 1,913-byte windows at a 100 ms
/// round trip needed 50 s and missed the bound: SIM_BASE=6000000, seed
/// 5912503815480893002.) Small messages keep chunks down to one byte.
const WINDOWS: usize = 100;

fn fit(mut case: Case) -> Case {
    let big = case
        .hosts
        .iter()
        .flatten()
        .map(|c| c.message.len)
        .max()
        .unwrap_or(0);
    let least = (big / WINDOWS).max(1);
    case.client.io.max_write = case.client.io.max_write.max(least);
    case.server.io.max_write = case.server.io.max_write.max(least);
    case.server.io.max_read = case.server.io.max_read.max(least);
    case.server.read_chunk = case.server.read_chunk.max(least);
    case.client.high = case.client.high.max(least);
    case.server.high = case.server.high.max(least);
    case.server.low = case.server.low.min(case.server.high);
    case
}

fn fault(hosts: usize) -> impl Strategy<Value = Fault> {
    let h = 0..hosts;
    prop_oneof![
        h.clone().prop_map(Fault::Partition),
        h.clone().prop_map(Fault::PartitionToServer),
        h.clone().prop_map(Fault::PartitionFromServer),
        h.clone().prop_map(Fault::Repair),
        h.clone().prop_map(Fault::Hold),
        h.prop_map(Fault::Release),
        Just(Fault::CrashServer),
        Just(Fault::BounceServer),
    ]
}

/// Which fault classes a case may use (swarm testing: each case switches
/// some off, so one kind of fault cannot keep masking another).
#[derive(Debug, Clone, Copy)]
struct Swarm {
    partitions: bool,
    oneway: bool,
    holds: bool,
    crashes: bool,
    give_ups: bool,
    /// A connection limit (1..=connections) is in force.
    limits: bool,
}

impl Swarm {
    fn allows(self, fault: Fault) -> bool {
        match fault {
            Fault::Partition(_) | Fault::Repair(_) => self.partitions,
            Fault::PartitionToServer(_) | Fault::PartitionFromServer(_) => self.oneway,
            Fault::Hold(_) | Fault::Release(_) => self.holds,
            Fault::CrashServer | Fault::BounceServer => self.crashes,
        }
    }
}

/// Everything but the faults.
fn base(max_hosts: usize, max_conns: usize) -> impl Strategy<Value = Case> {
    let conn = (message(), 0u64..200, any::<bool>(), any::<bool>()).prop_map(
        |(message, start_ms, streaming, bursts)| ConnPlan {
            message,
            start_ms,
            give_up_ms: None,
            streaming,
            bursts: streaming && bursts,
            hush_ms: None,
            stall: None,
            breaks: None,
        },
    );
    let hosts = prop::collection::vec(prop::collection::vec(conn, 1..=max_conns), 1..=max_hosts);
    let latency = (0u64..20, 0u64..100);
    // Swarm: a quarter of the windows are tiny, so backpressure and the
    // refill paths are taken in most cases, not one in hundreds.
    let window = || prop_oneof![3 => 1usize..200_000, 1 => 1usize..=256];
    let server = (window(), 0usize..=100, 1usize..=65_536, io_knobs());
    let client = (window(), 1usize..=65_536, 300u64..2_000, io_knobs());
    (hosts, latency, 16usize..=64, any::<bool>(), server, client).prop_map(
        |(hosts, (min, extra), tcp_capacity, random_order, server, client)| {
            let (server_high, low_pct, server_read_chunk, server_io) = server;
            let (client_high, client_read_chunk, client_idle_ms, client_io) = client;
            fit(Case {
                seed: 0,
                network: Network {
                    min_latency_ms: min,
                    max_latency_ms: min + extra,
                    tcp_capacity,
                    random_order,
                },
                server: ServerSide {
                    high: server_high,
                    low: server_high * low_pct / 100,
                    read_chunk: server_read_chunk,
                    idle_ms: None,
                    max_connections: None,
                    io: server_io,
                },
                client: ClientSide {
                    high: client_high,
                    read_chunk: client_read_chunk,
                    idle_ms: client_idle_ms,
                    io: client_io,
                    max_undelivered: echo_core::DEFAULT_MAX_UNDELIVERED,
                    half_close: false,
                },
                hosts,
                faults: Vec::new(),
                heal_at_ms: 0,
                shutdown: None,
                misbehave: echo_core::FaultConfig::default(),
                tls: false,
                access: None,
            })
        },
    )
}

/// Cases with latency, chunking and short writes but no faults: every echo
/// must complete exactly.
///
/// A third of the servers run without an idle timeout (as in production,
/// where it is off by default), so nothing reclaims a connection that hangs:
/// a hang fails the case at the liveness bound, with its seed. (Before the
/// simulated stream waited for room to send its FIN, see
/// [`SimStream`](crate::io::SimStream), turmoil could strand a FIN for good
/// and every server needed an idle timeout; seed 7134611160154358618.)
pub fn no_fault_case() -> impl Strategy<Value = Case> {
    // Where no server timer would end a quiet connection, half the
    // streamed inputs go quiet once for longer than the client's own idle
    // timeout (a round trip, at most 240 ms, and more after it).
    let hush = proptest::option::of(250u64..600);
    (fault_free(), hush).prop_map(|(mut case, hush)| {
        if case.server.idle_ms.is_none()
            && let Some(extra) = hush
        {
            let quiet = case.client.idle_ms + extra;
            for plan in case.hosts.iter_mut().flatten().filter(|p| p.streaming) {
                plan.hush_ms = Some(quiet);
            }
        }
        case
    })
}

/// [`no_fault_case`] without its quiet inputs: for the cases built on it
/// that set timers of their own.
fn fault_free() -> impl Strategy<Value = Case> {
    // Swarm on the timer: none, a relaxed one, or one short enough to fire
    // at every pause longer than the quietest legitimate gap: a round trip
    // (at most 240 ms) after the longest input pause (150 ms). Only a wrong
    // timer can end a fault-free echo.
    let idle = prop_oneof![
        1 => Just(None),
        1 => (1_000u64..5_000).prop_map(Some),
        1 => (600u64..1_200).prop_map(Some),
    ];
    (base(3, 4), idle).prop_map(|(mut case, idle)| {
        case.server.idle_ms = idle;
        case
    })
}

/// No-fault cases in which the server shuts down gracefully while echoes
/// run: sometimes the grace period is long enough for every echo, sometimes
/// it expires and the server closes connections mid-echo.
///
/// In about half the cases (swarm) some clients' standard output blocks for
/// 3-6 s, so a connection can still owe its echo when the grace period
/// ends: flushes are then cut off after `flush_ms` (50-500 ms) and the
/// shutdown must still end in time. A cut-off flush loses what was in
/// flight, so those cases check safety and timing, not exactness. The
/// server's idle timeout is set beyond all that (10-15 s), so it cannot be
/// what ends such a connection. In the other cases every client keeps
/// reading and no flush is cut off (flush timeout = the liveness bound).
pub fn shutdown_case() -> impl Strategy<Value = Case> {
    let stall = prop_oneof![
        2 => Just(None),
        1 => (0u16..1_000, 3_000u64..6_000).prop_map(Some),
    ];
    (
        fault_free(),
        0u64..600,
        0u64..2_000,
        50u64..500,
        any::<bool>(),
        prop::collection::vec(stall, 12),
        10_000u64..15_000,
        held_echo(),
    )
        .prop_map(
            |(mut case, at_ms, grace_ms, flush_ms, stalls_on, stalls, idle, held)| {
                if let Some(knobs) = held {
                    case.hold_echo(knobs);
                }
                case.shutdown = Some(Shutdown {
                    at_ms,
                    grace_ms,
                    flush_ms,
                });
                if !stalls_on {
                    // Every client keeps reading: no flush needs cutting
                    // off, and every byte the server read must come back.
                    case.shutdown = Some(Shutdown {
                        at_ms,
                        grace_ms,
                        flush_ms: crate::vocab::LIVENESS_BOUND.as_millis() as u64,
                    });
                } else {
                    case.server.idle_ms = Some(idle);
                    let plans = case.hosts.iter_mut().flatten();
                    for (plan, stall) in plans.zip(stalls) {
                        plan.stall = stall.map(|(per_mille, ms)| Stall {
                            after: plan.message.len * usize::from(per_mille) / 1_000,
                            ms,
                            every: None,
                        });
                    }
                }
                case
            },
        )
}

/// In two cases in five, a server that holds echoes back on purpose: a
/// delay of 1-200 ms, jitter up to 100 ms, a throttle of 20 KB/s and up in
/// half of them. Nothing it read may be lost for it: a shutdown sends what
/// the knobs still hold.
fn held_echo() -> impl Strategy<Value = Option<(u64, u64, Option<u64>)>> {
    let throttle = proptest::option::of(20_000u64..2_000_000);
    proptest::option::weighted(0.4, (1u64..200, 0u64..100, throttle))
}

impl Case {
    /// Sets the server's delay, jitter and throttle, and a client timer
    /// that outlasts the silence they make (a round trip after the delay
    /// and the jitter).
    fn hold_echo(&mut self, (delay, jitter, throttle): (u64, u64, Option<u64>)) {
        self.misbehave.delay = Duration::from_millis(delay);
        self.misbehave.jitter = Duration::from_millis(jitter);
        self.misbehave.throttle = throttle;
        self.client.idle_ms = self
            .client
            .idle_ms
            .max(1_000 + delay + jitter + 2 * self.network.max_latency_ms);
    }
}

/// No-fault cases whose clients' standard output blocks for 0.5-3 s after
/// some of the echo (a full pipe), with an allowance of unread echo from
/// one byte to a few KiB, so reading pauses on it and must resume, and
/// reads of one to four bytes in half the cases, so the bound is met
/// exactly: every echo still completes, no client holds more than its
/// allowance plus its reads, and no timer fires while the application
/// holds the echo back. (No idle timeout on the server: a connection
/// whose client does not read makes no progress for the stall's length.)
pub fn held_back_case() -> impl Strategy<Value = Case> {
    let stall = (0u16..1_000, 500u64..3_000);
    (
        fault_free(),
        prop::collection::vec(proptest::option::weighted(0.8, stall), 12),
        prop_oneof![1 => Just(1usize), 3 => 2usize..=4_096],
        prop_oneof![1 => 1usize..=4, 1 => 5usize..=65_536],
    )
        .prop_map(|(mut case, stalls, allowance, read_chunk)| {
            case.server.idle_ms = None;
            case.client.max_undelivered = allowance;
            case.client.read_chunk = read_chunk;
            let plans = case.hosts.iter_mut().flatten();
            for (plan, stall) in plans.zip(stalls) {
                // Long enough to fill any allowance; short enough that
                // one-byte reads finish in simulated seconds.
                plan.message.len = plan.message.len.min(40_000);
                plan.stall = stall.map(|(per_mille, ms)| Stall {
                    after: plan.message.len * usize::from(per_mille) / 1_000,
                    ms,
                    every: None,
                });
            }
            case
        })
}

/// Clients that read their echo slowly but steadily, having sent it all
/// (and half-closed): the application takes a piece, then blocks for a
/// third to a half of the server's idle timeout, over and over, for several
/// idle timeouts in all, through a small allowance; the server's socket
/// holds a few small segments, so it writes only as the client reads. The
/// server has nothing to read for most of the echo and keeps writing: its
/// idle timer must not fire (writes are traffic), and every echo completes.
pub fn slow_reader_case() -> impl Strategy<Value = Case> {
    (
        fault_free(),
        200u64..1_000,
        (1usize..=4, 64usize..=512),
        prop::collection::vec((4_000usize..20_000, 3usize..=8, 25u16..=45), 12),
        256usize..=2_048,
    )
        .prop_map(|(mut case, idle, (capacity, write), plans, allowance)| {
            case.server.idle_ms = Some(idle);
            // (turmoil's SYN backlog is the same number: one per client.)
            case.network.tcp_capacity = capacity.max(case.connections());
            case.server.io.max_write = write;
            case.client.half_close = true;
            case.client.max_undelivered = allowance;
            // The client sends its message in a few large segments (one
            // byte per segment over one credit would take a round trip a
            // byte), and reads whatever came.
            case.client.io.max_write = usize::MAX;
            case.client.io.max_read = case.client.io.max_read.max(256);
            let mut longest = 0;
            for (plan, (len, pieces, per_cent)) in case.hosts.iter_mut().flatten().zip(plans) {
                plan.message.len = len;
                plan.give_up_ms = None;
                let every = len.div_ceil(pieces);
                plan.stall = Some(Stall {
                    after: every,
                    ms: idle * u64::from(per_cent) / 100,
                    every: Some(every),
                });
                longest = longest.max(len);
            }
            // The server and the client take the whole message at once:
            // the server has all of its input early, and nothing to read
            // after it.
            case.server.high = case.server.high.max(longest + case.server.read_chunk);
            case.server.low = case.server.low.min(case.server.high / 2);
            case.client.high = case.client.high.max(longest);
            // Short hops: the pauses, not the network, pace the echo, and
            // its small segments (a few in flight per round trip) take
            // at most about 20 s.
            let segments = (longest / (write * case.network.tcp_capacity)).max(1) as u64;
            case.network.max_latency_ms = case
                .network
                .max_latency_ms
                .min(idle / 10)
                .min(10_000 / segments);
            case.network.min_latency_ms =
                case.network.min_latency_ms.min(case.network.max_latency_ms);
            case
        })
}

/// No-fault cases in which most clients' application side fails partway
/// through the echo: standard output breaks, or (for streamed input)
/// standard input reports an error, after a share of the message. Each such
/// client must end with its local error, read nothing from the socket after
/// the failure, and end the connection, which the server then closes.
pub fn broken_app_case() -> impl Strategy<Value = Case> {
    let breaks = (any::<bool>(), 0u16..1_000);
    (
        fault_free(),
        prop::collection::vec(proptest::option::weighted(0.7, breaks), 12),
    )
        .prop_map(|(mut case, breaks)| {
            // A real client's abort is a reset, which also ends the server's
            // side when it writes; turmoil cannot send one on demand (a drop
            // resets only with unread input), so the server's echo to a
            // closed peer goes unanswered and only its idle timeout ends
            // the connection.
            case.server.idle_ms.get_or_insert(2_000);
            for (plan, broken) in case.hosts.iter_mut().flatten().zip(breaks) {
                // Before the last byte, so the failure always comes first.
                plan.breaks = broken
                    .filter(|_| plan.message.len > 0)
                    .map(|(input, per_mille)| {
                        let after = plan.message.len * usize::from(per_mille) / 1_000;
                        if input && plan.streaming {
                            Break::Input(after)
                        } else {
                            Break::Output(after)
                        }
                    });
            }
            case
        })
}

/// No-fault cases against a server that misbehaves on purpose (its fault
/// knobs, as `echo-server --delay --jitter --throttle --close-after ...`
/// sets them): echoes held back 0-200 ms plus jitter, throttled to 20 KB/s
/// and up, and in most cases a cut-off (close, reset or stall after 0-20 KB)
/// for none, some or all connections. Each client makes one attempt and its
/// verdict must be exact: done with every byte, or (only where the cut-off
/// may apply) failed with exactly the cut-off's bytes back; never sooner
/// than the delay and the throttle allow. The server's memory bound counts
/// the bytes its knobs hold back.
pub fn misbehaving_case() -> impl Strategy<Value = Case> {
    let delay = prop_oneof![1 => Just(0u64), 2 => 1u64..200];
    let jitter = prop_oneof![1 => Just(0u64), 1 => 1u64..100];
    let throttle = proptest::option::weighted(0.4, 20_000u64..2_000_000);
    // A cut-off at once (before any byte) in one case in five.
    let cut_bytes = prop_oneof![1 => Just(0u64), 4 => 1u64..20_000];
    let cutoff = proptest::option::weighted(0.7, (0u8..3, cut_bytes));
    // Swarm on the share: none, all, or a random one of them.
    let share = prop_oneof![
        1 => Just(0u32),
        1 => Just(echo_core::FaultConfig::EVERY_CONNECTION),
        3 => 1u32..echo_core::FaultConfig::EVERY_CONNECTION,
    ];
    let knobs = (delay, jitter, throttle, cutoff, share, any::<u64>());
    (fault_free(), knobs, any::<bool>()).prop_map(
        |(mut case, (delay, jitter, throttle, cutoff, share, seed), half_close)| {
            // Half the cases half-close after their input, so end-of-file
            // reaches the server while its knobs still hold echo back.
            case.client.half_close = half_close;
            use echo_core::Cutoff;
            for plan in case.hosts.iter_mut().flatten() {
                // Throttled echoes take simulated seconds per 20 KB.
                plan.message.len = plan.message.len.min(40_000);
            }
            // (Only a stall may end an echo by the client's timer.)
            case.hold_echo((delay, jitter, throttle));
            case.misbehave.cutoff = cutoff.map(|(kind, n)| match kind {
                0 => Cutoff::CloseAfter(n),
                1 => Cutoff::ResetAfter(n),
                _ => Cutoff::StallAfter(n),
            });
            case.misbehave.cutoff_per_million = share;
            case.misbehave.seed = seed;
            // A stalled connection is a black hole until the server's idle
            // timeout: without one it would outlive every client.
            if matches!(case.misbehave.cutoff, Some(Cutoff::StallAfter(_))) {
                case.server.idle_ms.get_or_insert(2_000);
            }
            case
        },
    )
}

/// [`no_fault_case`] over TLS: the same latency, chunking down to one byte
/// and short writes under the TLS records, and still every echo exact.
pub fn tls_case() -> impl Strategy<Value = Case> {
    no_fault_case().prop_map(Case::over_tls)
}

/// [`fault_case`] over TLS: partitions, holds and crashes land during
/// handshakes too (faults come early, handshakes come first), which must
/// end cleanly and be retried.
pub fn tls_fault_case() -> impl Strategy<Value = Case> {
    fault_case().prop_map(Case::over_tls)
}

/// [`shutdown_case`] over TLS: the grace period, the flush timeout and the
/// close (close_notify, then FIN) hold for TLS connections as for plain
/// ones.
pub fn tls_shutdown_case() -> impl Strategy<Value = Case> {
    shutdown_case().prop_map(Case::over_tls)
}

/// The most bytes one TLS record puts on the wire: 16 KiB of plaintext
/// plus header, tag and padding allowance.
const MAX_RECORD_WIRE: u64 = 16_384 + 256;

/// What rustls queues for the socket before it refuses more plaintext (its
/// default buffer limit): plaintext counts as sent once it is queued.
const TLS_QUEUE: u64 = 64 * 1024;

impl Case {
    /// This case with TLS on, and its idle timeouts no shorter than one
    /// whole record takes to cross the simulated network.
    ///
    /// Over TLS, progress comes in records: nothing of a record can be
    /// decrypted (and so nothing echoed or verified) before all of it has
    /// arrived. With writes of a few bytes a segment and turmoil's flow
    /// control counting segments, one record can take many round trips, and
    /// a no-progress timer sized for byte-by-byte progress fires on a
    /// healthy connection (seed 13647215125184110592: 4-byte writes, a
    /// 449-byte message, a 355 ms client timeout). And plaintext counts as
    /// sent once rustls has queued it, up to 64 KiB, which then drains with
    /// no progress to show before the first echo record comes back behind
    /// it (seed 15710034015099902177, SIM_BASE=100000000: a 27,152-byte
    /// message in 271-byte segments; a floor of one record, 770 ms, was
    /// too short). The floor follows from the case: the largest message
    /// (up to the queue's 64 KiB) plus one record, in segments, over the
    /// segments in flight per round trip, plus two, round trips at the
    /// highest latency.
    #[must_use]
    pub fn over_tls(mut self) -> Self {
        self.tls = true;
        let floor = self.record_transfer_ms();
        self.client.idle_ms = self.client.idle_ms.max(floor);
        self.server.idle_ms = self.server.idle_ms.map(|ms| ms.max(floor));
        self
    }

    fn record_transfer_ms(&self) -> u64 {
        let write = self
            .server
            .io
            .max_write
            .min(self.client.io.max_write)
            .max(1) as u64;
        let largest = self
            .hosts
            .iter()
            .flatten()
            .map(|c| c.message.len as u64)
            .max()
            .unwrap_or(0);
        let segments = (largest.min(TLS_QUEUE) + MAX_RECORD_WIRE).div_ceil(write);
        let round_trips = segments / self.network.tcp_capacity.max(1) as u64 + 2;
        round_trips * 2 * self.network.max_latency_ms.max(1)
    }
}

/// Fault-free and faulty cases in which the server's access list turns
/// one client host away (a second host is added where there was one):
/// its clients make one attempt each and must get nothing back, while
/// everyone else is served as in the case without the list.
pub fn access_case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![fault_free(), fault_case()],
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut case, which, by_allow)| {
            if case.hosts.len() < 2 {
                let again = case.hosts[0].clone();
                case.hosts.push(again);
            }
            case.access = Some(Access {
                denied: which.index(case.hosts.len()),
                by_allow,
            });
            case
        })
}

/// Cases with a fault schedule (partitions, one-way partitions, holds,
/// crashes and bounces, client give-ups) that heals at `heal_at_ms`.
pub fn fault_case() -> impl Strategy<Value = Case> {
    let swarm = (
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |((partitions, oneway, holds, crashes), (give_ups, limits))| Swarm {
                partitions,
                oneway,
                holds,
                crashes,
                give_ups,
                limits,
            },
        );
    // Swarm on the timer too: half the servers reclaim idle connections
    // within a few hundred milliseconds, so the idle timer fires in most
    // of those cases (mid-partition), not in one case in sixty. Never below
    // the quietest legitimate gap (an input pause of up to 150 ms and a
    // round trip of up to 240 ms): with 205 ms, a bursty client was cut
    // off at every pause and, retrying, never finished (SIM_BASE=18000000,
    // seed 561081301336869392).
    let server_idle = prop_oneof![1_000u64..4_000, 600u64..1_200];
    (base(3, 3), swarm, server_idle)
        .prop_flat_map(|(case, swarm, server_idle)| {
            let hosts = case.hosts.len();
            let conns = case.connections();
            // Faults land early, while echoes are in flight (TURMOIL.md 5.4).
            let faults = prop::collection::vec((0u64..400, fault(hosts)), 1..8);
            let give_ups = prop::collection::vec(proptest::option::of(1u64..300), conns);
            let limit = proptest::option::of(1..=conns);
            (
                Just(case),
                Just(swarm),
                Just(server_idle),
                faults,
                give_ups,
                0u64..500,
                limit,
            )
        })
        .prop_map(
            |(mut case, swarm, server_idle, faults, give_ups, heal, limit)| {
                let mut faults: Vec<_> = faults
                    .into_iter()
                    .filter(|(_, f)| swarm.allows(*f))
                    .collect();
                faults.sort_by_key(|(at, _)| *at);
                case.heal_at_ms = faults.last().map_or(0, |(at, _)| *at).max(heal);
                case.faults = faults;
                // Partitions wedge turmoil's TCP for good (no retransmission): the
                // server needs an idle timeout to reclaim such connections.
                case.server.idle_ms = Some(server_idle);
                case.server.max_connections = limit.filter(|_| swarm.limits);
                for (conn, give_up) in case.hosts.iter_mut().flatten().zip(give_ups) {
                    conn.give_up_ms = give_up.filter(|_| swarm.give_ups);
                }
                case
            },
        )
}

/// A graceful shutdown while the network fails: partitions (both ways and
/// one way) and holds land while echoes run and the shutdown goes on.
/// A partitioned client cannot take its echo, so its connection's flush
/// must be cut off by the flush timeout (50-500 ms), and the shutdown must
/// still end within grace + flush timeout + linger + a round trip. (No
/// crashes: a crash takes the shutting-down server with it.) These cases
/// check safety, timing and the books, not exactness.
pub fn shutdown_fault_case() -> impl Strategy<Value = Case> {
    (
        fault_case(),
        0u64..300,
        0u64..1_000,
        50u64..500,
        prop::collection::vec(32_768usize..300_000, 12),
    )
        .prop_map(|(mut case, at_ms, grace_ms, flush_ms, lens)| {
            case.faults
                .retain(|(_, f)| !matches!(f, Fault::CrashServer | Fault::BounceServer));
            case.shutdown = Some(Shutdown {
                at_ms,
                grace_ms,
                flush_ms,
            });
            // Echoes long enough to be mid-flight when the faults and the
            // shutdown land, with no client giving up early.
            case.server.max_connections = None;
            for (plan, len) in case.hosts.iter_mut().flatten().zip(lens) {
                plan.message.len = plan.message.len.max(len);
                plan.give_up_ms = None;
            }
            // The faults last until the shutdown's flushes are due, so a
            // partitioned client is still cut off when they are.
            case.heal_at_ms = case.heal_at_ms.max(at_ms + grace_ms + flush_ms + 500);
            case
        })
}
