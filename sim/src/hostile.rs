//! Peers that attack the server's front door: PROXY headers that are
//! malformed, overlong, of the wrong version, split anywhere, trickled or
//! stalled; TLS that is garbage, a truncated record, or a handshake that
//! stops half way; and valid PROXY headers declaring IPv4, IPv6 and
//! IPv4-mapped clients behind an access list. Each attack's bytes and its
//! oracle (what the server must do) sit side by side, one `match` arm
//! each.
//!
//! The headers are built here from the spec's byte layout (HAProxy's
//! proxy-protocol.txt, sections 2.1 and 2.2), not by `echo-core`'s encoder:
//! a bug placed in both the encoder and the decoder does not cancel out.
//!
//! The server must refuse what is wrong (count it, say why in its log,
//! echo nothing, never admit it) and free the connection at once; must
//! wait for a stalled header or handshake exactly its timeout, no less and
//! not much more; and must admit what is right, however slowly it came,
//! judging its access list on the client the header declares.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use echo_core::{Address, ServerConfig, ServerEvent};
use echo_net::{
    AccessList, DriveConfig, EchoServer, HandshakeFailure, IpNet, PROXY_HEADER_TIMEOUT,
    PROXY_REFUSALS, ServerOptions,
};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::check::Scenario;
use crate::io::{LocalSpawner, SimListener, SimStream};
use crate::world::{Report, Shared};

const SERVER: &str = crate::vocab::SERVER;
const PORT: u16 = 7;
/// What the server may take beyond the network's round trip to act.
const SLACK: Duration = Duration::from_millis(50);
/// The message a PROXY peer sends after its header.
const MESSAGE: &[u8] = b"after the header";

/// One attack on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostileCase {
    /// The run's seed (set by the runner).
    pub seed: u64,
    /// Least one-way latency.
    pub min_latency_ms: u64,
    /// Most one-way latency.
    pub max_latency_ms: u64,
    /// What the peer does.
    pub attack: Attack,
    /// The peer writes its bytes in pieces of at most this many...
    pub piece: usize,
    /// ...with this pause after each.
    pub pause_ms: u64,
    /// The TLS server's handshake timeout.
    pub handshake_ms: u64,
}

/// A client address a header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// `TCP4`, family 0x11.
    V4(Ipv4Addr),
    /// `TCP6`, family 0x21.
    V6(Ipv6Addr),
}

impl Declared {
    fn ip(self) -> IpAddr {
        match self {
            Self::V4(ip) => IpAddr::V4(ip),
            Self::V6(ip) => IpAddr::V6(ip),
        }
    }

    /// The IPv4 address it names, directly or IPv4-mapped (`::ffff:a.b.c.d`),
    /// by the bits (RFC 4291 section 2.5.5.2).
    fn v4(self) -> Option<u32> {
        match self {
            Self::V4(ip) => Some(u32::from(ip)),
            Self::V6(ip) => {
                let bits = u128::from(ip);
                (bits >> 32 == 0xffff).then_some(bits as u32)
            }
        }
    }
}

/// What a hostile (or merely slow) peer sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attack {
    /// A well-formed PROXY header (v1 or v2) declaring `source`, then a
    /// message; the server's access list denies `deny` (a CIDR block,
    /// IPv4 or IPv6) if any.
    ProxyValid {
        /// 1 or 2.
        version: u8,
        /// The client it declares.
        source: Declared,
        /// A deny block: (address, prefix length).
        deny: Option<(IpAddr, u8)>,
    },
    /// A valid header trickled so that its last byte arrives at
    /// `per_cent` of the header timeout: just in time is in time.
    ProxyJustInTime {
        /// 1 or 2.
        version: u8,
        /// When the header is complete, in per cent of the timeout.
        per_cent: u8,
    },
    /// A v1 line that never ends (no CRLF in 107 bytes and more).
    ProxyLineTooLong(usize),
    /// A v1 line broken in one place.
    ProxyV1Malformed(V1Flaw),
    /// A v2 header with this version nibble (not 2).
    ProxyV2Version(u8),
    /// A v2 header with this command nibble (not 0 or 1).
    ProxyV2Command(u8),
    /// A v2 header with this family/transport byte (undefined).
    ProxyV2Family(u8),
    /// A v2 header declaring this many bytes after it (more than 4096).
    ProxyV2TooLong(u16),
    /// A v2 TCP4 header whose block is shorter than its 12 addresses' bytes.
    ProxyV2ShortAddress,
    /// No PROXY header at all: another protocol's first bytes.
    ProxyMissing,
    /// The first `keep` bytes of a valid v1 or v2 header, then nothing.
    ProxyStall {
        /// 1 or 2.
        version: u8,
        /// Bytes sent (fewer than the header's).
        keep: usize,
    },
    /// TLS: bytes that are no TLS record.
    TlsGarbage,
    /// TLS: a handshake record's header announcing more than follows, then
    /// the peer's end of input.
    TlsTruncated {
        /// Body bytes sent.
        keep: usize,
    },
    /// TLS: part of the first record, then nothing.
    TlsStallInRecord {
        /// Body bytes sent.
        keep: usize,
    },
    /// TLS: a real ClientHello, then the peer stops sending (its Finished
    /// never arrives).
    TlsStallAfterHello,
    /// Connects and closes without a byte (a TCP health check, a port
    /// scan): neither a bad header nor a failed handshake.
    ClosesAtOnce {
        /// On a TLS server (else a PROXY one).
        tls: bool,
    },
}

/// One broken part of a v1 line (the line still ends in CRLF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Flaw {
    /// `TCP5`.
    Family,
    /// An address with three parts.
    Address,
    /// A port above 65535.
    Port,
    /// A field missing.
    Missing,
    /// A lone LF, no CR.
    NoCr,
}

/// What the server must do with an attack.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Oracle {
    /// Admit the connection as the declared client and echo the message.
    Admit(IpAddr),
    /// Turn the declared client away (its access list), echo nothing.
    Deny,
    /// Refuse: one bad header (PROXY) or failed handshake (TLS), counted
    /// and logged with a reason containing `why`; nothing echoed, nothing
    /// admitted; freed at once, or after `timeout` when the peer stalls.
    Refuse {
        /// Part of the logged reason.
        why: &'static str,
        /// The reason it is counted under (`echo_net::PROXY_REFUSALS`,
        /// `HandshakeFailure::LABELS`): what the metrics show.
        counted: &'static str,
        /// The timer that must free it, if the peer stalls.
        timeout: Option<Duration>,
        /// TLS (a failed handshake) or PROXY (a bad header).
        tls: bool,
    },
    /// Nothing counted, nothing logged above debug: the peer left.
    Ignore,
}

impl HostileCase {
    /// Whether the server speaks TLS (else PROXY).
    fn tls(&self) -> bool {
        matches!(
            self.attack,
            Attack::TlsGarbage
                | Attack::TlsTruncated { .. }
                | Attack::TlsStallInRecord { .. }
                | Attack::TlsStallAfterHello
                | Attack::ClosesAtOnce { tls: true }
        )
    }

    /// The attack's bytes (for a TLS hello: none here, the client makes
    /// them), whether the peer then ends its input, and what the server
    /// must do.
    fn plan(&self, peer: SocketAddr, server: SocketAddr) -> (Vec<u8>, bool, Oracle) {
        let refuse = |why, counted, timeout: Option<Duration>| Oracle::Refuse {
            why,
            counted,
            timeout,
            tls: self.tls(),
        };
        let handshake = Duration::from_millis(self.handshake_ms);
        match &self.attack {
            Attack::ProxyValid {
                version,
                source,
                deny,
            } => {
                let mut bytes = proxy_header(*version, *source, server);
                bytes.extend_from_slice(MESSAGE);
                let denied = deny.is_some_and(|(net, len)| covers(&net, &len, *source));
                let oracle = if denied {
                    Oracle::Deny
                } else {
                    Oracle::Admit(source.ip())
                };
                (bytes, true, oracle)
            }
            Attack::ProxyJustInTime { version, .. } => {
                let source = Declared::V4(Ipv4Addr::new(192, 0, 2, 7));
                let mut bytes = proxy_header(*version, source, server);
                bytes.extend_from_slice(MESSAGE);
                (bytes, true, Oracle::Admit(source.ip()))
            }
            Attack::ProxyLineTooLong(len) => {
                let mut line = b"PROXY TCP4 ".to_vec();
                line.resize(*len, b'1');
                (line, false, refuse("without CRLF", "line_too_long", None))
            }
            Attack::ProxyV1Malformed(flaw) => {
                let (src, dst) = (peer.ip(), server.ip());
                let (sp, dp) = (peer.port(), server.port());
                let line = match flaw {
                    V1Flaw::Family => format!("PROXY TCP5 {src} {dst} {sp} {dp}\r\n"),
                    V1Flaw::Address => format!("PROXY TCP4 10.0.1 {dst} {sp} {dp}\r\n"),
                    V1Flaw::Port => format!("PROXY TCP4 {src} {dst} 70000 {dp}\r\n"),
                    V1Flaw::Missing => format!("PROXY TCP4 {src} {dst} {sp}\r\n"),
                    V1Flaw::NoCr => format!("PROXY TCP4 {src} {dst} {sp} {dp}\n"),
                };
                (
                    line.into_bytes(),
                    false,
                    refuse("malformed PROXY v1 line", "malformed", None),
                )
            }
            Attack::ProxyV2Version(v) => (
                v2(v << 4 | 1, 0x11, &v4_block(peer, server)),
                false,
                refuse("version", "version", None),
            ),
            Attack::ProxyV2Command(c) => (
                v2(0x20 | c, 0x11, &v4_block(peer, server)),
                false,
                refuse("command", "command", None),
            ),
            Attack::ProxyV2Family(f) => (
                v2(0x21, *f, &v4_block(peer, server)),
                false,
                refuse("famil", "family", None),
            ),
            Attack::ProxyV2TooLong(len) => {
                let mut bytes = SIGNATURE.to_vec();
                bytes.extend_from_slice(&[0x21, 0x11]);
                bytes.extend_from_slice(&len.to_be_bytes());
                (bytes, false, refuse("", "too_long", None))
            }
            Attack::ProxyV2ShortAddress => (
                v2(0x21, 0x11, &v4_block(peer, server)[..8]),
                false,
                refuse("", "short_address", None),
            ),
            Attack::ProxyMissing => (
                b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n".to_vec(),
                false,
                refuse("no PROXY header", "missing", None),
            ),
            Attack::ProxyStall { version, keep } => {
                let mut bytes = proxy_header(*version, Declared::V4(Ipv4Addr::LOCALHOST), server);
                bytes.truncate(*keep);
                let why = if *keep == 0 {
                    ""
                } else {
                    "no PROXY header within"
                };
                let oracle = if *keep == 0 {
                    // Nothing sent at all: still a stalled header.
                    refuse(
                        "no PROXY header within",
                        "timed_out",
                        Some(PROXY_HEADER_TIMEOUT),
                    )
                } else {
                    refuse(why, "timed_out", Some(PROXY_HEADER_TIMEOUT))
                };
                (bytes, false, oracle)
            }
            Attack::TlsGarbage => (
                b"\x00\x01garbage, not a TLS record".to_vec(),
                false,
                refuse("", "not_tls", None),
            ),
            Attack::TlsTruncated { keep } => {
                let mut bytes = vec![0x16, 0x03, 0x01, 0x01, 0x00];
                bytes.extend(std::iter::repeat_n(0x01, *keep));
                (bytes, true, refuse("", "closed", None))
            }
            Attack::TlsStallInRecord { keep } => {
                let mut bytes = vec![0x16, 0x03, 0x01, 0x01, 0x00];
                bytes.extend(std::iter::repeat_n(0x01, *keep));
                (
                    bytes,
                    false,
                    refuse("no TLS handshake within", "timed_out", Some(handshake)),
                )
            }
            Attack::TlsStallAfterHello => (
                Vec::new(),
                false,
                refuse("no TLS handshake within", "timed_out", Some(handshake)),
            ),
            Attack::ClosesAtOnce { .. } => (Vec::new(), true, Oracle::Ignore),
        }
    }
}

impl HostileCase {
    /// The pause after each piece of `bytes`: the case's, or for a header
    /// sent just in time, what spreads the header's pieces over `per_cent`
    /// of the timeout (less a round trip and a margin).
    fn pause_ms_for(&self, bytes: &[u8]) -> u64 {
        let Attack::ProxyJustInTime { per_cent, .. } = self.attack else {
            return self.pause_ms;
        };
        let header = bytes.len() - MESSAGE.len();
        let pieces = header.div_ceil(self.piece.max(1)) as u64;
        let timeout = PROXY_HEADER_TIMEOUT.as_millis() as u64;
        let target = (timeout * u64::from(per_cent) / 100)
            .saturating_sub(2 * self.max_latency_ms + SLACK.as_millis() as u64);
        // The last piece is followed by no pause that matters.
        target / pieces.saturating_sub(1).max(1)
    }
}

/// The v2 signature (section 2.2).
const SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];

/// A v2 header: signature, version and command, family, length, block.
fn v2(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut bytes = SIGNATURE.to_vec();
    bytes.push(version_command);
    bytes.push(family);
    bytes.extend_from_slice(&(block.len() as u16).to_be_bytes());
    bytes.extend_from_slice(block);
    bytes
}

fn v4_of(addr: SocketAddr) -> [u8; 4] {
    match addr.ip() {
        IpAddr::V4(ip) => ip.octets(),
        IpAddr::V6(_) => [127, 0, 0, 1],
    }
}

/// A TCP4 address block: source, destination, their ports.
fn v4_block(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut block = v4_of(source).to_vec();
    block.extend_from_slice(&v4_of(destination));
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    block
}

/// A valid header declaring `source` (port 4242) to `server`, in the
/// declared family (an IPv4 server address written as IPv4-mapped for a
/// TCP6 header).
fn proxy_header(version: u8, source: Declared, server: SocketAddr) -> Vec<u8> {
    let server4 = Ipv4Addr::from(v4_of(server));
    let sport = 4242u16;
    let dport = server.port();
    match (version, source) {
        (1, Declared::V4(ip)) => {
            format!("PROXY TCP4 {ip} {server4} {sport} {dport}\r\n").into_bytes()
        }
        (1, Declared::V6(ip)) => {
            let dst = server4.to_ipv6_mapped();
            format!("PROXY TCP6 {ip} {dst} {sport} {dport}\r\n").into_bytes()
        }
        (_, Declared::V4(ip)) => {
            let mut block = ip.octets().to_vec();
            block.extend_from_slice(&server4.octets());
            block.extend_from_slice(&sport.to_be_bytes());
            block.extend_from_slice(&dport.to_be_bytes());
            v2(0x21, 0x11, &block)
        }
        (_, Declared::V6(ip)) => {
            let mut block = ip.octets().to_vec();
            block.extend_from_slice(&server4.to_ipv6_mapped().octets());
            block.extend_from_slice(&sport.to_be_bytes());
            block.extend_from_slice(&dport.to_be_bytes());
            v2(0x21, 0x21, &block)
        }
    }
}

/// Whether the block `net`/`len` covers `source`, by prefix arithmetic on
/// the bits: an IPv4 block covers an IPv4 address and its IPv4-mapped
/// IPv6 form (the peer is an IPv4 one, spelled for an IPv6 socket); an
/// IPv6 block covers IPv6 addresses that are not IPv4-mapped.
fn covers(net: &IpAddr, len: &u8, source: Declared) -> bool {
    let len = u32::from(*len);
    match (net, source) {
        (IpAddr::V4(net), _) => source.v4().is_some_and(|ip| {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            ip & mask == u32::from(*net) & mask
        }),
        (IpAddr::V6(net), Declared::V6(ip)) if source.v4().is_none() => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(ip) & mask == u128::from(*net) & mask
        }
        (IpAddr::V6(_), _) => false,
    }
}

fn declared() -> impl Strategy<Value = Declared> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| Declared::V4(Ipv4Addr::from(o))),
        any::<[u8; 4]>().prop_map(|o| Declared::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
        any::<u64>().prop_map(|low| {
            Declared::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(low)))
        }),
    ]
}

/// A deny block that covers `source` or just misses it: the same address
/// with its last covered bit flipped, at any prefix length, in IPv4 or
/// IPv6 (for a mapped source, both spellings).
fn deny_for(source: Declared, len: u8, miss: bool, as_v6: bool) -> (IpAddr, u8) {
    match (source.v4(), as_v6) {
        (Some(v4), false) => {
            let len = len % 33;
            let flip = if miss && len > 0 {
                1u32 << (32 - len)
            } else {
                0
            };
            (IpAddr::V4(Ipv4Addr::from(v4 ^ flip)), len)
        }
        _ => {
            let bits = u128::from(match source.ip() {
                IpAddr::V6(ip) => ip,
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
            });
            let len = 96 + len % 33;
            let flip = if miss {
                1u128 << (128 - u32::from(len))
            } else {
                0
            };
            (IpAddr::V6(Ipv6Addr::from(bits ^ flip)), len)
        }
    }
}

fn attack() -> impl Strategy<Value = Attack> {
    let valid = (
        1u8..=2,
        declared(),
        proptest::option::of((any::<u8>(), any::<bool>(), any::<bool>())),
    )
        .prop_map(|(version, source, deny)| Attack::ProxyValid {
            version,
            source,
            deny: deny.map(|(len, miss, as_v6)| deny_for(source, len, miss, as_v6)),
        });
    let flaw = prop_oneof![
        Just(V1Flaw::Family),
        Just(V1Flaw::Address),
        Just(V1Flaw::Port),
        Just(V1Flaw::Missing),
        Just(V1Flaw::NoCr),
    ];
    prop_oneof![
        4 => valid,
        1 => (1u8..=2, 50u8..=95).prop_map(|(version, per_cent)| Attack::ProxyJustInTime { version, per_cent }),
        1 => (echo_core::V1_MAX_LINE + 1..300).prop_map(Attack::ProxyLineTooLong),
        2 => flaw.prop_map(Attack::ProxyV1Malformed),
        1 => prop_oneof![Just(0u8), Just(1), 3u8..16].prop_map(Attack::ProxyV2Version),
        1 => (2u8..16).prop_map(Attack::ProxyV2Command),
        1 => prop_oneof![Just(0x03u8), Just(0x14), Just(0x41), Just(0xff)].prop_map(Attack::ProxyV2Family),
        1 => (echo_core::V2_MAX_BLOCK as u16 + 1..=u16::MAX).prop_map(Attack::ProxyV2TooLong),
        1 => Just(Attack::ProxyV2ShortAddress),
        1 => Just(Attack::ProxyMissing),
        2 => (1u8..=2, 0usize..28).prop_map(|(version, keep)| Attack::ProxyStall { version, keep }),
        1 => Just(Attack::TlsGarbage),
        1 => (0usize..200).prop_map(|keep| Attack::TlsTruncated { keep }),
        1 => (0usize..200).prop_map(|keep| Attack::TlsStallInRecord { keep }),
        1 => Just(Attack::TlsStallAfterHello),
        1 => any::<bool>().prop_map(|tls| Attack::ClosesAtOnce { tls }),
    ]
}

/// Attacks, split into pieces of any size with pauses, over any latency.
pub fn hostile_case() -> impl Strategy<Value = HostileCase> {
    (
        attack(),
        (0u64..20, 0u64..40),
        prop_oneof![1usize..8, 8usize..512],
        prop_oneof![2 => Just(0u64), 1 => 1u64..40],
        1_000u64..8_000,
    )
        .prop_map(|(attack, (min, extra), piece, pause_ms, handshake_ms)| {
            // A header trickled so slowly that it outlasts the timeout is
            // a stall; keep valid ones well inside it.
            let pause_ms = match attack {
                Attack::ProxyValid { .. } => pause_ms.min(30),
                _ => pause_ms,
            };
            let piece = match attack {
                Attack::ProxyValid { .. } => piece.max(4),
                _ => piece,
            };
            HostileCase {
                seed: 0,
                min_latency_ms: min,
                max_latency_ms: min + extra,
                attack,
                piece,
                pause_ms,
                handshake_ms,
            }
        })
}

impl Scenario for HostileCase {
    fn seeded(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn run(&self) -> Report {
        run_hostile(self)
    }
}

/// What the peer saw.
#[derive(Debug, Default)]
struct Seen {
    /// When it began to connect.
    began: Duration,
    /// When its last byte went out.
    sent_all: Duration,
    /// When the server freed the connection (end of input or reset).
    freed: Option<Duration>,
    /// What came back.
    received: Vec<u8>,
    /// Its own address, and the server's.
    addrs: Option<(SocketAddr, SocketAddr)>,
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Runs one attack and judges the server.
pub fn run_hostile(case: &HostileCase) -> Report {
    let shared = Shared::default();
    let (result, log, table) = crate::logs::capture(|| attack_and_judge(case, &shared));
    shared.coverage.borrow_mut().add(&table);
    let result = result.and_then(|oracle| judge_log(&oracle, &log, &shared));
    shared.report(result)
}

fn attack_and_judge(case: &HostileCase, shared: &Shared) -> Result<Oracle, String> {
    let latency = (case.min_latency_ms, case.max_latency_ms);
    let mut sim = crate::vocab::network(case.seed, latency, Duration::from_secs(60)).build();
    let server_slot: Rc<RefCell<Option<EchoServer>>> = Rc::default();
    let events: Arc<Mutex<Vec<ServerEvent>>> = Arc::default();
    let (tls_server, tls_client) = crate::tls::pair();
    let tls = case.tls();
    let deny = match case.attack {
        Attack::ProxyValid { deny, .. } => deny,
        _ => None,
    };
    let handshake_timeout = Duration::from_millis(case.handshake_ms);
    {
        let (slot, events, panics) = (
            Rc::clone(&server_slot),
            Arc::clone(&events),
            Rc::clone(&shared.panics),
        );
        sim.host(SERVER, move || {
            let (slot, events, panics) =
                (Rc::clone(&slot), Arc::clone(&events), Rc::clone(&panics));
            let tls_server = tls_server.clone();
            async move {
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
                let server = EchoServer::new(ServerOptions {
                    config: ServerConfig {
                        idle_timeout: Some(Duration::from_secs(30)),
                        ..ServerConfig::default()
                    },
                    drive: DriveConfig {
                        handshake_timeout,
                        ..DriveConfig::default()
                    },
                    count_traffic: true,
                    ..ServerOptions::default()
                });
                if let Some((net, len)) = deny {
                    let net = IpNet::new(net, len).map_err(|e| e.to_string())?;
                    server.restrict(AccessList {
                        allow: Vec::new(),
                        deny: vec![net],
                    });
                }
                server.observe(move |e| {
                    events
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(e.clone());
                });
                *slot.borrow_mut() = Some(server.clone());
                let listener = SimListener::new(listener, crate::io::IoKnobs::PLAIN, 1);
                let spawner = LocalSpawner {
                    panics,
                    quantum: None,
                };
                if tls {
                    server.serve_tls(listener, spawner, tls_server, false).await;
                } else {
                    server.serve_proxied(listener, spawner).await;
                }
                Ok(())
            }
        });
    }
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let oracle: Rc<RefCell<Option<Oracle>>> = Rc::default();
    {
        let (case, seen, oracle_slot) = (case.clone(), Rc::clone(&seen), Rc::clone(&oracle));
        sim.client("peer", async move {
            seen.borrow_mut().began = now();
            let stream = turmoil::net::TcpStream::connect((SERVER, PORT)).await?;
            let (me, server) = (stream.local_addr()?, stream.peer_addr()?);
            seen.borrow_mut().addrs = Some((me, server));
            let (bytes, end_input, oracle) = case.plan(me, server);
            *oracle_slot.borrow_mut() = Some(oracle);
            if case.attack == Attack::TlsStallAfterHello {
                // A real client whose writes stop after its ClientHello.
                let mute = Mute {
                    inner: SimStream::new(stream, crate::io::IoKnobs::PLAIN, case.seed),
                    hello_sent: false,
                };
                let connect = tls_client.connect(crate::tls::SERVER_NAME, mute);
                match tokio::time::timeout(Duration::from_secs(30), connect).await {
                    Ok(Ok(mut stream)) => {
                        seen.borrow_mut().sent_all = now();
                        let mut buf = [0u8; 256];
                        let freed = loop {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break now(),
                                Ok(_) => {}
                            }
                        };
                        seen.borrow_mut().freed = Some(freed);
                    }
                    // The server's timeout ended the handshake before the
                    // client thought it done.
                    Ok(Err(_)) => {
                        let at = now();
                        let mut seen = seen.borrow_mut();
                        seen.sent_all = at;
                        seen.freed = Some(at);
                    }
                    Err(_) => {}
                }
                return Ok(());
            }
            let (mut read, mut write) = stream.into_split();
            let pause_ms = case.pause_ms_for(&bytes);
            let writer = async {
                for piece in bytes.chunks(case.piece.max(1)) {
                    if write.write_all(piece).await.is_err() {
                        return;
                    }
                    seen.borrow_mut().sent_all = now();
                    if pause_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    }
                }
                if end_input {
                    let _ = write.shutdown().await;
                }
                // Kept open (not dropped) until the reader is done.
                std::future::pending::<()>().await;
            };
            let reader = async {
                let mut buf = [0u8; 1024];
                loop {
                    match read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.borrow_mut().received.extend_from_slice(&buf[..n]),
                    }
                }
                seen.borrow_mut().freed = Some(now());
            };
            // Biased: select!'s random branch order is not the simulation's
            // seed, and a replay must be identical.
            tokio::select! {
                biased;
                () = reader => {}
                () = writer => {}
            }
            Ok(())
        });
    }
    sim.run().map_err(|e| format!("simulation failed: {e}"))?;
    if let Some(panic) = shared.panics.borrow().first() {
        return Err(format!("panic in a spawned task: {panic}"));
    }
    let oracle = oracle
        .borrow_mut()
        .take()
        .ok_or("the peer never connected")?;
    let server = server_slot
        .borrow()
        .clone()
        .ok_or("the server never started")?;
    let seen = seen.borrow();
    let events = events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    shared.event(format!(
        "attack {:?}: {oracle:?}, seen {seen:?}",
        case.attack
    ));
    judge(case, &oracle, &seen, &server, &events, shared)?;
    Ok(oracle)
}

/// The server's books, events and timing against the oracle.
fn judge(
    case: &HostileCase,
    oracle: &Oracle,
    seen: &Seen,
    server: &EchoServer,
    events: &[ServerEvent],
    shared: &Shared,
) -> Result<(), String> {
    let t = server.traffic();
    if server.open_connections() != 0 {
        return Err(format!(
            "{} connections still open at the end",
            server.open_connections()
        ));
    }
    let made: Vec<&Address> = events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::ConnectionMade { peer, .. } => Some(peer),
            _ => None,
        })
        .collect();
    let denied = events
        .iter()
        .filter(|e| matches!(e, ServerEvent::ConnectionDenied { .. }))
        .count();
    let round_trip = Duration::from_millis(2 * case.max_latency_ms);
    let freed = seen
        .freed
        .ok_or("the server never freed the connection (no end of input, no reset)")?;
    match oracle {
        Oracle::Admit(ip) => {
            shared.hit("hostile admitted");
            if let Attack::ProxyJustInTime { .. } = case.attack {
                shared.hit("hostile admitted just in time");
            }
            let want = Address::Ip(SocketAddr::new(*ip, 4242));
            if made != [&want] || denied != 0 {
                return Err(format!(
                    "a valid header declaring {want} made {made:?} (denied {denied})"
                ));
            }
            if seen.received != MESSAGE {
                return Err(format!(
                    "the echo after a valid header was {:?}",
                    String::from_utf8_lossy(&seen.received)
                ));
            }
            if t.bad_headers != 0 {
                return Err(format!("a valid header counted bad: {t:?}"));
            }
        }
        Oracle::Deny => {
            shared.hit("hostile denied");
            if !made.is_empty() || denied != 1 || t.denied != 1 {
                return Err(format!(
                    "a header declaring a denied client: made {made:?}, {denied} denial events, {t:?}"
                ));
            }
            if !seen.received.is_empty() {
                return Err(format!(
                    "a denied client got {} bytes back",
                    seen.received.len()
                ));
            }
        }
        Oracle::Refuse {
            timeout,
            tls,
            counted: label,
            ..
        } => {
            let counted = if *tls { t.tls_failures } else { t.bad_headers };
            if counted != 1 || t.accepted != 0 || !made.is_empty() || t.bytes_out != 0 {
                return Err(format!(
                    "{:?} must be refused once, never admitted, nothing echoed: made {made:?}, {t:?}",
                    case.attack
                ));
            }
            let (labels, counts): (&[&str], &[u64]) = if *tls {
                (&HandshakeFailure::LABELS, &t.tls_failed)
            } else {
                (&PROXY_REFUSALS, &t.proxy_refused)
            };
            let by_reason: Vec<(&str, u64)> = labels
                .iter()
                .copied()
                .zip(counts.iter().copied())
                .filter(|(_, n)| *n > 0)
                .collect();
            if by_reason != [(*label, 1)] {
                return Err(format!(
                    "{:?} must be counted as {label}, not {by_reason:?}",
                    case.attack
                ));
            }
            shared.hit(format!(
                "{} counted: {label}",
                if *tls { "tls" } else { "proxy" }
            ));
            if !*tls && !seen.received.is_empty() {
                return Err(format!(
                    "a refused PROXY peer got {} bytes back",
                    seen.received.len()
                ));
            }
            match timeout {
                // Decisive both ways: not before the timeout, not long after.
                Some(timeout) => {
                    shared.hit(if *tls {
                        "hostile stall freed by the handshake timeout"
                    } else {
                        "hostile stall freed by the PROXY header timeout"
                    });
                    let took = freed.saturating_sub(seen.began);
                    if took < *timeout || took > *timeout + round_trip + SLACK {
                        return Err(format!(
                            "a stalled peer was freed after {took:?}: its timeout is {timeout:?} \
                             (plus at most a round trip of {round_trip:?})"
                        ));
                    }
                }
                None => {
                    let late = freed.saturating_sub(seen.sent_all);
                    if late > round_trip + SLACK {
                        return Err(format!(
                            "{:?} was refused {late:?} after its last byte (a round trip is {round_trip:?})",
                            case.attack
                        ));
                    }
                }
            }
        }
        Oracle::Ignore => {
            shared.hit("hostile left before a byte");
            if t.bad_headers != 0 || t.tls_failures != 0 || t.accepted != 0 {
                return Err(format!("a peer that left before a byte was counted: {t:?}"));
            }
        }
    }
    Ok(())
}

/// The log against the oracle: a refusal says why, in one warning; an
/// admitted, denied or vanished peer writes no refusal.
fn judge_log(oracle: &Oracle, log: &str, shared: &Shared) -> Result<(), String> {
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("closing a connection without a valid PROXY header")
                || l.contains("TLS handshake failed")
        })
        .collect();
    match oracle {
        Oracle::Refuse { why, tls, .. } => {
            let [line] = refusals.as_slice() else {
                return Err(format!("a refusal must log one warning, not:\n{log}"));
            };
            if !line.contains(why) {
                return Err(format!("the refusal's reason should say {why:?}: {line}"));
            }
            shared.hit(refusal_label(*tls, line));
            Ok(())
        }
        _ if refusals.is_empty() => Ok(()),
        _ => Err(format!("no refusal, yet the log says:\n{log}")),
    }
}

/// The refusal's reason, as a coverage label (the words before any detail).
fn refusal_label(tls: bool, line: &str) -> String {
    let reason = line
        .split("reason=")
        .nth(1)
        .unwrap_or("?")
        .split([':', '(', '"'])
        .find(|s| !s.trim().is_empty())
        .unwrap_or("?")
        .trim();
    let reason: String = reason
        .split_whitespace()
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ");
    format!("{} refused: {reason}", if tls { "tls" } else { "proxy" })
}

/// A TLS client's socket that passes its first flight (the ClientHello)
/// and swallows every later write: the handshake stops half way.
struct Mute {
    inner: SimStream,
    hello_sent: bool,
}

impl echo_net::Stream for Mute {}

impl AsyncRead for Mute {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if read.is_ready() {
            // The server answered: whatever the client writes next is
            // its second flight.
            self.hello_sent = true;
        }
        read
    }
}

impl AsyncWrite for Mute {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.hello_sent {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::{Declared, covers, deny_for};

    #[test]
    fn an_ipv4_block_covers_the_address_and_its_mapped_form_and_a_flipped_bit_misses() {
        let ip = Ipv4Addr::new(192, 0, 2, 77);
        for source in [Declared::V4(ip), Declared::V6(ip.to_ipv6_mapped())] {
            for len in [0u8, 1, 24, 31, 32] {
                let (net, l) = deny_for(source, len, false, false);
                assert!(covers(&net, &l, source), "{source:?} {net}/{l}");
                let (net, l) = deny_for(source, len, true, false);
                assert_eq!(covers(&net, &l, source), l == 0, "{source:?} {net}/{l}");
            }
        }
        assert!(!covers(
            &IpAddr::V4(ip),
            &32,
            Declared::V4(Ipv4Addr::new(192, 0, 2, 78))
        ));
    }
}
