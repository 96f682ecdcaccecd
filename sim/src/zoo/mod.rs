//! The client against peers that are not our server: servers modelled on
//! real implementations (`shared/PEERS.md`), faulty servers, and a relay in
//! front of our server. Each peer records what it did; the client's verdict
//! must be exactly what that implies (done only when every byte came back;
//! otherwise the right failure, with the right offset and counts), and it
//! must come within the client's own timeout.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use echo_core::{Address, CloseReason, Cutoff, EchoClient, EchoError, FaultConfig};
use echo_net::{ClientError, ClientOptions, Connected, EchoServer, Pipe, Summary, run};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::check::Scenario;
use crate::io::{IoKnobs, SimStream};
use crate::world::{Report, Shared, Stats, event};

mod closing;
mod corrupting;
mod faulty;
mod relays;
mod slow;

const PEER: &str = "peer";
const PORT: u16 = 7;

/// A server that is not ours, or a relay in front of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Twisted's default `Protocol`: echoes each read; on end-of-file it
    /// closes at once, dropping whatever it had not yet written.
    CloseOnEof,
    /// The seed's server: answers the first chunk it reads, then closes.
    FirstChunkThenClose,
    /// Store and forward: reads to end-of-file, then writes it all back
    /// and closes (a batch filter such as `sort`, or a server that answers
    /// only a whole request). Only a client that half-closes
    /// (`--half-close`) gets an echo from it, and only of a message that
    /// fits in its window (it sends no more than that ahead of the echo).
    AfterEof,
    /// Echoes one byte at a time, `delay_ms` apart.
    Trickle {
        /// Pause before each byte.
        delay_ms: u64,
    },
    /// Echoes everything with the byte at `offset` inverted.
    WrongByte {
        /// Offset of the corrupted byte in the stream.
        offset: usize,
        /// Where the bad byte falls among the client's reads.
        seam: Seam,
    },
    /// Echoes everything, then sends `extra` bytes nobody sent.
    ExtraBytes {
        /// How many.
        extra: usize,
    },
    /// Echoes the first `keep` bytes, then closes.
    ShortThenClose {
        /// How many bytes come back.
        keep: usize,
    },
    /// Echoes the first `keep` bytes, then closes with more input unread,
    /// which resets the connection (RST), as TCP does.
    ResetMidEcho {
        /// How many bytes come back.
        keep: usize,
    },
    /// Reads everything and never answers.
    Silent,
    /// Our own server, misbehaving on purpose (`echo-server --delay`,
    /// `--throttle`, `--close-after`, `--reset-after`, `--stall-after`).
    Faulty {
        /// Its knobs (one at a time).
        faults: FaultConfig,
    },
    /// A balancer that speaks the PROXY protocol (HAProxy's `send-proxy`,
    /// `send-proxy-v2`): it declares the client in a header, then relays
    /// re-chunked and delayed, in front of our `haproxy:` server, whose
    /// events must name the client, not the relay.
    ProxyRelay {
        /// 1 or 2.
        version: u8,
        /// Largest piece forwarded at once.
        chunk: usize,
        /// Pause before each piece.
        delay_ms: u64,
    },
    /// A proxy: re-chunks both directions into pieces of at most `chunk`
    /// bytes, each after `delay_ms`, in front of our server.
    Relay {
        /// Largest piece forwarded at once.
        chunk: usize,
        /// Pause before each piece.
        delay_ms: u64,
    },
}

/// Where a corrupting peer puts its bad byte among the client's reads: a
/// verifier that skips or checks twice the first or the last byte of a
/// read is wrong only there, and a byte placed by message offset alone
/// almost never lands on a seam.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seam {
    /// Wherever the echo's writes put it.
    Anywhere,
    /// It starts a write of its own, a moment after the bytes before it:
    /// the first byte of a read.
    Starts,
    /// It ends a write, the bytes after it a moment later: the last byte
    /// of a read.
    Ends,
}

/// One client against one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZooCase {
    /// The run's seed (set by the runner).
    pub seed: u64,
    /// The peer.
    pub peer: Peer,
    /// The message's length.
    pub len: usize,
    /// One-way latency bounds.
    pub min_latency_ms: u64,
    /// Upper bound.
    pub max_latency_ms: u64,
    /// The client's verification window (its high-water mark).
    pub client_high: usize,
    /// The client's read chunking and short writes.
    pub client_io: IoKnobs,
    /// The client's progress timeout.
    pub idle_ms: u64,
    /// Behind a relay, our server's access list denies this address.
    pub deny: Option<Denied>,
    /// Behind a relay (and no access list), our server starts with a
    /// banner line of this many bytes (`echo-server --banner`) and the
    /// client reads it first (`--banner`): the relay's re-chunking splits
    /// it anywhere. Up to [`echo_core::MAX_BANNER`] bytes it is the back
    /// end's name; one more is no banner.
    pub banner: Option<usize>,
}

/// Whose address the server behind a relay denies (`--deny`): it decides
/// on the peer it reports, so behind a PROXY relay denying the client turns
/// the echo away and denying the relay does not; behind a plain relay, the
/// other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The relay's own address (the socket's peer).
    Relay,
    /// The client's address (what a PROXY header declares).
    Client,
}

/// Peers with the knobs that matter to each, messages up to 64 KiB.
pub fn zoo_case() -> impl Strategy<Value = ZooCase> {
    let len = prop_oneof![1 => Just(0usize), 6 => 1usize..3_000, 2 => 3_000usize..65_536];
    let peer = prop_oneof![
        Just(Peer::CloseOnEof),
        Just(Peer::FirstChunkThenClose),
        (0u64..5).prop_map(|delay_ms| Peer::Trickle { delay_ms }),
        // Offsets as per mille of the message (fixed up below): mostly
        // inside it, sometimes just past its end.
        (0usize..1_100).prop_map(|offset| Peer::WrongByte {
            offset,
            seam: Seam::Anywhere
        }),
        (1usize..100).prop_map(|extra| Peer::ExtraBytes { extra }),
        (0usize..1_100).prop_map(|keep| Peer::ShortThenClose { keep }),
        (0usize..1_000).prop_map(|keep| Peer::ResetMidEcho { keep }),
        Just(Peer::Silent),
        (1usize..5_000, 0u64..10).prop_map(|(chunk, delay_ms)| Peer::Relay { chunk, delay_ms }),
        (1u8..=2, 1usize..5_000, 0u64..10).prop_map(|(version, chunk, delay_ms)| {
            Peer::ProxyRelay {
                version,
                chunk,
                delay_ms,
            }
        }),
        faulty::knob().prop_map(|faults| Peer::Faulty { faults }),
    ];
    let knobs = prop_oneof![
        Just(IoKnobs::PLAIN),
        (1usize..=4_096, any::<bool>(), 1usize..=4_096).prop_map(
            |(max_read, coalesce, max_write)| IoKnobs {
                max_read,
                coalesce,
                max_write,
                ..IoKnobs::PLAIN
            }
        ),
    ];
    (
        peer,
        len,
        (0u64..20, 0u64..40),
        1usize..70_000,
        knobs,
        500u64..3_000,
        // Drawn last, so every earlier draw (and each committed seed's case)
        // is what it was before these knobs existed.
        prop_oneof![
            2 => Just(None),
            1 => Just(Some(Denied::Relay)),
            1 => Just(Some(Denied::Client)),
        ],
        // Half of the close-on-EOF peers store and forward instead.
        any::<bool>(),
        // Drawn last too. Lengths around the limit are the ones that tell.
        proptest::option::weighted(
            0.8,
            prop_oneof![
                1 => 1usize..=255,
                1 => Just(echo_core::MAX_BANNER),
                1 => Just(echo_core::MAX_BANNER + 1),
                1 => echo_core::MAX_BANNER + 2..=400,
            ],
        ),
        // Drawn last too: where a corrupted byte goes (see `Seam`).
        (0u8..8, 1usize..64),
    )
        .prop_map(
            |(
                peer,
                len,
                (min, extra),
                client_high,
                client_io,
                idle_ms,
                deny,
                after_eof,
                banner,
                (seam, multiple),
            )| {
                let peer = match peer {
                    Peer::CloseOnEof if after_eof => Peer::AfterEof,
                    other => other,
                };
                // A trickle is slow by design: keep it to a size it can finish.
                // A throttled echo is at least two buckets (a fifth of a
                // second's worth), so the rate, not the burst, decides when
                // it can finish.
                let len = match peer {
                    Peer::Trickle { .. } => len.min(2_000),
                    Peer::Faulty {
                        faults:
                            FaultConfig {
                                throttle: Some(rate),
                                ..
                            },
                    } => len.max(usize::try_from(rate / 5).unwrap_or(usize::MAX)),
                    _ => len,
                };
                // Our server behind a relay (and no access list) may start
                // with a banner; for an even length the client reads a few
                // bytes at a time, so some read ends exactly at the limit.
                let banner = banner.filter(|_| {
                    deny.is_none() && matches!(peer, Peer::Relay { .. } | Peer::ProxyRelay { .. })
                });
                let client_io = match banner {
                    Some(n) if n % 2 == 0 => IoKnobs {
                        max_read: client_io.max_read.min(8),
                        ..client_io
                    },
                    _ => client_io,
                };
                let at = |per_mille: usize| len * per_mille / 1_000;
                let peer = match peer {
                    // On the seams in a share of cases: the first byte, the
                    // last, a multiple of the client's read size (what a
                    // one-read-size-at-a-time client reads up to), or the
                    // first or last byte of one of the peer's writes.
                    Peer::WrongByte { offset, .. } => {
                        let read_size = client_io.max_read.min(echo_net::DEFAULT_READ_CHUNK);
                        let last = len.saturating_sub(1);
                        let (offset, seam) = match seam {
                            0 => (0, Seam::Starts),
                            1 => (last, Seam::Ends),
                            2 => ((multiple * read_size).min(last), Seam::Anywhere),
                            3 => (at(offset).min(last), Seam::Starts),
                            4 => (at(offset).min(last), Seam::Ends),
                            _ => (at(offset), Seam::Anywhere),
                        };
                        Peer::WrongByte { offset, seam }
                    }
                    Peer::ShortThenClose { keep } => Peer::ShortThenClose { keep: at(keep) },
                    Peer::ResetMidEcho { keep } => Peer::ResetMidEcho { keep: at(keep) },
                    Peer::Faulty { mut faults } => {
                        // Cut-offs as per mille of the message, as above.
                        faults.cutoff = faults.cutoff.map(|c| match c {
                            Cutoff::CloseAfter(n) => Cutoff::CloseAfter(at(n as usize) as u64),
                            Cutoff::ResetAfter(n) => Cutoff::ResetAfter(at(n as usize) as u64),
                            Cutoff::StallAfter(n) => Cutoff::StallAfter(at(n as usize) as u64),
                        });
                        Peer::Faulty { faults }
                    }
                    other => other,
                };
                ZooCase {
                    seed: 0,
                    peer,
                    len,
                    min_latency_ms: min,
                    max_latency_ms: min + extra,
                    client_high: client_high.max(len / 50).max(1),
                    client_io,
                    idle_ms,
                    deny: deny
                        .filter(|_| matches!(peer, Peer::Relay { .. } | Peer::ProxyRelay { .. })),
                    banner,
                }
            },
        )
}

impl ZooCase {
    /// Whether the server behind the relay must turn the echo away: its
    /// access list names the peer it reports.
    #[must_use]
    pub fn turned_away(&self) -> bool {
        matches!(
            (self.peer, self.deny),
            (Peer::ProxyRelay { .. }, Some(Denied::Client))
                | (Peer::Relay { .. }, Some(Denied::Relay))
        )
    }
}

impl ZooCase {
    /// How long the peer itself needs to pass the echo on at its pace: a
    /// trickle sleeps before every byte, a relay before every piece (each
    /// way), and a piece is at most what one read brought, which the
    /// client's short writes keep small. The run's bound is this plus 60 s,
    /// so a slow peer that is working is never taken for a hang (seed
    /// 13786132864187426302: a relay pausing 8 ms per piece, fed 7-byte
    /// writes, needed over 60 s for 34,347 bytes).
    #[must_use]
    pub fn peer_pace(&self) -> Duration {
        let len = self.len as u64;
        let ms = match self.peer {
            Peer::Trickle { delay_ms } => len * delay_ms,
            Peer::Relay { chunk, delay_ms }
            | Peer::ProxyRelay {
                chunk, delay_ms, ..
            } => {
                let piece = chunk.min(self.client_io.max_write).max(1) as u64;
                2 * len.div_ceil(piece) * delay_ms
            }
            _ => 0,
        };
        Duration::from_millis(ms)
    }
}

impl Scenario for ZooCase {
    fn seeded(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn run(&self) -> Report {
        run_zoo(self)
    }
}

/// What the peer did, as it saw it.
#[derive(Debug, Default)]
struct Seen {
    /// Bytes it wrote back, in order.
    wrote: Vec<u8>,
    /// Bytes it read.
    read: usize,
    /// When it last read something (simulated time).
    last_read_at: Duration,
}

/// The client's outcome and when (simulated time) it came.
type Verdict = (Result<Summary, ClientError>, Duration);

/// A connection as our server reported it: its peer, `via` a balancer,
/// and whether it took it for a balancer's health check.
type Reported = (Address, Option<Address>, bool);

/// A banner line of `len` bytes (no newline), made once per length for
/// the process: the server's setting is `&'static str`, as a command line's
/// is. Where `len` is a multiple of three it ends in a carriage return, as a
/// back end whose lines end in CRLF sends it: the name is the rest.
fn banner_text(len: usize) -> &'static str {
    static MADE: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(text) = made.iter().find(|t| t.len() == len) {
        return text;
    }
    let text: String = (0..len)
        .map(|i| {
            if i + 1 == len && len.is_multiple_of(3) {
                '\r'
            } else {
                char::from(b'a' + (i % 26) as u8)
            }
        })
        .collect();
    let text: &'static str = Box::leak(text.into_boxed_str());
    made.push(text);
    text
}

fn message(case: &ZooCase) -> Vec<u8> {
    (0..case.len)
        .map(|i| (i as u64 ^ case.seed.rotate_left(i as u32 % 64)) as u8)
        .collect()
}

/// Runs one case: the peer on one host (and our server behind a relay on
/// another), the client on a third; then checks the verdict.
pub fn run_zoo(case: &ZooCase) -> Report {
    let shared = Shared::default();
    let (trace, panics) = (Rc::clone(&shared.trace), Rc::clone(&shared.panics));
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let verdict: Rc<RefCell<Option<Verdict>>> = Rc::default();
    let latency = (case.min_latency_ms, case.max_latency_ms);
    let duration = Duration::from_secs(60) + case.peer_pace();
    let mut sim = crate::vocab::network(case.seed, latency, duration).build();

    // What our server behind a relay reported of each connection.
    let made: Arc<Mutex<Vec<Reported>>> = Arc::default();
    if let Peer::Relay { .. } | Peer::ProxyRelay { .. } = case.peer {
        relays::host_server(&mut sim, case, &shared, &made);
    }
    let (peer, len) = (case.peer, case.len);
    let faulty: Rc<RefCell<Option<EchoServer>>> = Rc::default();
    if let Peer::Faulty { faults } = peer {
        faulty::host_server(&mut sim, faults, case.client_high, &shared, &faulty);
    } else {
        let (peer_seen, peer_shared) = (Rc::clone(&seen), shared.clone());
        sim.host(PEER, move || {
            let (seen, shared) = (Rc::clone(&peer_seen), peer_shared.clone());
            async move {
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
                loop {
                    let (stream, _) = listener.accept().await?;
                    drop(shared.spawn(serve_peer(peer, len, stream, Rc::clone(&seen))));
                }
            }
        });
    }
    let (bytes, io, seed) = (Bytes::from(message(case)), case.client_io, case.seed);
    let options = ClientOptions {
        config: echo_core::ClientConfig {
            idle_timeout: Some(Duration::from_millis(case.idle_ms)),
            // A store-and-forward peer answers only after our FIN.
            half_close: case.peer == Peer::AfterEof,
            banner: case.banner.is_some(),
            ..echo_core::ClientConfig::default()
        },
        marks: echo_core::WaterMarks::new(case.client_high, 0).expect("high > 0"),
        ..ClientOptions::default()
    };
    let (slot, client_trace) = (Rc::clone(&verdict), Rc::clone(&trace));
    let client_coverage = Rc::clone(&shared.coverage);
    let client_addr: Rc<RefCell<Option<std::net::SocketAddr>>> = Rc::default();
    let addr_slot = Rc::clone(&client_addr);
    let named: Rc<RefCell<Option<Vec<u8>>>> = Rc::default();
    let banner_slot = Rc::clone(&named);
    sim.client("client", async move {
        let stream = turmoil::net::TcpStream::connect((PEER, PORT)).await?;
        let (host, peer) = (stream.local_addr()?, stream.peer_addr()?);
        *addr_slot.borrow_mut() = Some(host);
        let stream = SimStream::new(stream, io, seed);
        let client = EchoClient::message(bytes, options.config);
        let mut pipe = Pipe::new(None::<tokio::io::Empty>, Vec::new());
        let result = run(
            Connected {
                stream,
                host: host.into(),
                peer: peer.into(),
                handshake: None,
                resumed: false,
            },
            client,
            &mut pipe,
            options,
        )
        .await;
        let at = turmoil::sim_elapsed().unwrap_or_default();
        event(&client_trace, format!("verdict {result:?}"));
        client_coverage
            .borrow_mut()
            .hit(crate::coverage::verdict(Some(&result)));
        if let Some(name) = pipe.banner() {
            event(
                &client_trace,
                format!("banner {}", String::from_utf8_lossy(name)),
            );
        }
        *banner_slot.borrow_mut() = pipe.banner().map(<[u8]>::to_vec);
        *slot.borrow_mut() = Some((result, at));
        Ok(())
    });
    let mut ran = sim.run().map_err(|e| format!("simulation failed: {e}"));
    // Our misbehaving server's books, once its connection has ended.
    if let (Some(server), Peer::Faulty { faults }) = (faulty.borrow().clone(), case.peer) {
        while ran.is_ok() && server.open_connections() > 0 {
            ran = sim
                .step()
                .map(|_| ())
                .map_err(|e| format!("the server never let go of its connection: {e}"));
        }
        if ran.is_ok() {
            ran = faulty::books(&server, &faults, len);
        }
    }
    // Behind a relay, what our server reported of the client.
    if ran.is_ok()
        && let Peer::ProxyRelay { .. } | Peer::Relay { .. } = case.peer
    {
        // An empty echo can be over before the relay's own connection
        // reached the server: give it a simulated second.
        let reported = || {
            !made
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        };
        for _ in 0..1_000 {
            if reported() || sim.step().is_err() {
                break;
            }
        }
        let made = made.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let client = client_addr.borrow().map(Address::Ip);
        ran = relays::reported_right(case, &made, client.as_ref());
    }
    let done = matches!(verdict.borrow().as_ref(), Some((Ok(_), _)));
    let result = ran.and_then(|()| {
        if let Some(panic) = panics.borrow().first() {
            return Err(format!("panic in a spawned task: {panic}"));
        }
        let (verdict, at) = verdict
            .borrow_mut()
            .take()
            .ok_or("the client never reported")?;
        judge(case, &seen.borrow(), &verdict, at)?;
        // The back end's name, as the client reports it: exactly the
        // banner, when one was taken.
        let expected = case
            .banner
            .filter(|&n| n <= echo_core::MAX_BANNER)
            .map(|n| banner_text(n).trim_end_matches('\r').as_bytes().to_vec());
        let named = named.borrow().clone();
        if named != expected {
            return Err(format!(
                "the client named the back end {:?}, not {:?}",
                named.map(|n| String::from_utf8_lossy(&n).into_owned()),
                expected.map(|n| String::from_utf8_lossy(&n).into_owned())
            ));
        }
        Ok(())
    });
    *shared.stats.borrow_mut() = Stats {
        attempts: 1,
        done: u64::from(done),
        cut_short: u64::from(!done),
        ..Stats::default()
    };
    shared.report(result)
}

/// What a verdict is judged by: the case, what the peer did, and the
/// client's outcome and when it came.
struct Judging<'a> {
    case: &'a ZooCase,
    seen: &'a Seen,
    verdict: &'a Result<Summary, ClientError>,
    at: Duration,
    /// The message the client sent.
    sent: Vec<u8>,
}

impl Judging<'_> {
    fn len(&self) -> usize {
        self.sent.len()
    }

    /// Bytes the peer wrote back.
    fn back(&self) -> usize {
        self.seen.wrote.len()
    }

    /// Every byte came back, and the client said so.
    fn done(&self) -> bool {
        let whole = self.len() as u64;
        matches!(self.verdict, Ok(s) if s.sent == whole && s.received == whole)
    }

    /// Cut short after `k` correct bytes: the client says so, never "done":
    /// truncated after exactly `k` when the peer's FIN came, or lost with
    /// at most `k` when the peer's close with unread input turned into a
    /// reset (which may destroy what was still in flight, as in real TCP).
    fn cut_at(&self, k: usize) -> bool {
        match self.verdict {
            Err(ClientError::Echo(EchoError::Truncated { received, .. })) => *received == k as u64,
            Err(ClientError::Echo(EchoError::ConnectionLost {
                reason: CloseReason::Lost(_),
                received,
                ..
            })) => *received <= k as u64,
            _ => false,
        }
    }
}

/// The verdict `case`'s peer earned, given what it did: each family of
/// peers judges its own, beside how it serves.
fn judge(
    case: &ZooCase,
    seen: &Seen,
    verdict: &Result<Summary, ClientError>,
    at: Duration,
) -> Result<(), String> {
    let j = Judging {
        case,
        seen,
        verdict,
        at,
        sent: message(case),
    };
    let ok = match case.peer {
        Peer::CloseOnEof
        | Peer::AfterEof
        | Peer::FirstChunkThenClose
        | Peer::ShortThenClose { .. }
        | Peer::ResetMidEcho { .. } => closing::earned(&j),
        Peer::WrongByte { .. } | Peer::ExtraBytes { .. } => corrupting::earned(&j),
        Peer::Trickle { .. } | Peer::Silent => slow::earned(&j),
        Peer::Relay { .. } | Peer::ProxyRelay { .. } => relays::earned(&j),
        Peer::Faulty { faults } => faulty::earned(&j, &faults),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "against {:?} with a {}-byte message (the peer read {} and wrote back {}, \
             last read at {:?}): the client said {verdict:?} at {at:?}",
            case.peer,
            j.len(),
            seen.read,
            j.back(),
            seen.last_read_at
        ))
    }
}

/// Records what a peer did, as it does it.
struct Log(Rc<RefCell<Seen>>);

impl Log {
    fn read(&self, n: usize) {
        let mut seen = self.0.borrow_mut();
        seen.read += n;
        seen.last_read_at = turmoil::sim_elapsed().unwrap_or_default();
    }

    fn wrote(&self, bytes: &[u8]) {
        self.0.borrow_mut().wrote.extend_from_slice(bytes);
    }
}

/// Serves one connection as `peer` does (its family says how).
async fn serve_peer(
    peer: Peer,
    len: usize,
    stream: turmoil::net::TcpStream,
    seen: Rc<RefCell<Seen>>,
) {
    let log = Log(seen);
    match peer {
        Peer::Relay { .. } | Peer::ProxyRelay { .. } => relays::serve(peer, stream).await,
        Peer::ResetMidEcho { keep } => closing::reset_mid_echo(keep, stream, &log).await,
        Peer::AfterEof => closing::after_eof(stream, &log).await,
        Peer::FirstChunkThenClose => closing::first_chunk(stream, &log).await,
        _ => echo_reads(peer, len, stream, &log).await,
    }
}

/// The loop of the peers that echo what each read brings, shaped by their
/// family: until end-of-file, then close at once (Twisted's default).
async fn echo_reads(peer: Peer, len: usize, mut stream: turmoil::net::TcpStream, log: &Log) {
    let mut buf = vec![0u8; 4_096];
    let mut offset = 0usize;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        log.read(n);
        let mut data = buf[..n].to_vec();
        match peer {
            Peer::Silent => continue,
            Peer::WrongByte { offset: at, seam } => {
                let sent = corrupting::corrupt((at, seam), offset, &mut data, &mut stream, log);
                if sent.await.is_none() {
                    return;
                }
            }
            Peer::ShortThenClose { keep } => closing::short(keep, offset, &mut data),
            _ => {}
        }
        offset += n;
        if let Peer::Trickle { delay_ms } = peer {
            if slow::trickle(delay_ms, &data, &mut stream, log)
                .await
                .is_none()
            {
                return;
            }
            continue;
        }
        if let Peer::ExtraBytes { extra } = peer {
            corrupting::extra(extra, offset, len, &mut data);
        }
        if stream.write_all(&data).await.is_err() {
            return;
        }
        log.wrote(&data);
        if let Peer::ShortThenClose { keep } = peer
            && offset >= keep
        {
            return;
        }
    }
}
