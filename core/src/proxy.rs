//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`), v1 (text) and
//! v2 (binary): the header a load balancer puts in front of a connection to
//! say whom it relays. Sans-IO, like the rest of the crate: fed the stream's
//! first bytes in any chunking, down to one byte, it gives the same header
//! and says where the header ends, so the bytes after it (the first echo
//! bytes) are never lost.
//!
//! Unlike Twisted's `haproxy:` wrapper it takes a header split across reads,
//! accepts the bare `PROXY UNKNOWN\r\n` line the spec allows, and bounds
//! everything: a v1 line is at most 107 bytes, a v2 block at most
//! [`V2_MAX_BLOCK`].

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 line, CRLF included (`PROXY TCP6` with two full IPv6
/// addresses and ports).
pub const V1_MAX_LINE: usize = 107;

/// The v2 signature (`\r\n\r\n\0\r\nQUIT\n`).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The most bytes of addresses and TLVs a v2 header may declare: a UNIX
/// address block (216 bytes) with room for the TLVs balancers send.
pub const V2_MAX_BLOCK: usize = 4096;

/// What a PROXY header says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// The balancer relays a client: its address (`source`) and the address
    /// it reached (`destination`).
    Proxied {
        /// 1 or 2.
        version: u8,
        /// The client.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
        /// What v2 TLVs carried, if anything.
        tlvs: Tlvs,
    },
    /// A header that declares no IP addresses (v1 `UNKNOWN`, v2 UNSPEC or
    /// UNIX): the connection's real addresses stand.
    Unknown {
        /// 1 or 2.
        version: u8,
    },
    /// v2 LOCAL: the balancer's own connection, a health check; the real
    /// addresses stand.
    Local,
}

/// The v2 TLVs worth logging; the rest are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tlvs {
    /// 0x01: the negotiated application protocol.
    pub alpn: Option<String>,
    /// 0x02: the host name the client asked for (SNI).
    pub authority: Option<String>,
    /// 0x05: the balancer's id for the connection.
    pub unique_id: Option<String>,
}

/// Why a header was refused. The connection is then closed: the spec says
/// to abort "as soon as possible" on a mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The first bytes are neither `PROXY ` nor the v2 signature.
    Missing,
    /// No CRLF within the first 107 bytes.
    LineTooLong,
    /// The v1 line does not follow the grammar; says which part.
    Malformed(&'static str),
    /// v2 with a version other than 2.
    Version(u8),
    /// v2 with a command other than LOCAL (0) or PROXY (1).
    Command(u8),
    /// v2 with an address family or transport byte the spec does not
    /// define.
    Family(u8),
    /// v2 declaring more than [`V2_MAX_BLOCK`] bytes after the header.
    TooLong(usize),
    /// v2 whose address block is shorter than its family needs.
    ShortAddress,
    /// v2 whose TLVs run past the declared length.
    BadTlv,
}

impl ProxyError {
    /// Each refusal's label (in the order of [`label`](Self::label)'s
    /// indices): what the metrics count a refused header by.
    pub const LABELS: [&'static str; 9] = [
        "missing",
        "line_too_long",
        "malformed",
        "version",
        "command",
        "family",
        "too_long",
        "short_address",
        "bad_tlv",
    ];

    /// This refusal's index in [`LABELS`](Self::LABELS).
    #[must_use]
    pub fn index(&self) -> usize {
        match self {
            Self::Missing => 0,
            Self::LineTooLong => 1,
            Self::Malformed(_) => 2,
            Self::Version(_) => 3,
            Self::Command(_) => 4,
            Self::Family(_) => 5,
            Self::TooLong(_) => 6,
            Self::ShortAddress => 7,
            Self::BadTlv => 8,
        }
    }

    /// This refusal's label, e.g. `line_too_long`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no PROXY header (the first bytes are not one)"),
            Self::LineTooLong => write!(f, "PROXY v1 line without CRLF in {V1_MAX_LINE} bytes"),
            Self::Malformed(what) => write!(f, "malformed PROXY v1 line: {what}"),
            Self::Version(v) => write!(f, "PROXY v2 header with version {v}"),
            Self::Command(c) => write!(f, "PROXY v2 header with unknown command {c}"),
            Self::Family(b) => write!(f, "PROXY v2 header with unknown family byte {b:#04x}"),
            Self::TooLong(n) => write!(
                f,
                "PROXY v2 header declares {n} bytes (at most {V2_MAX_BLOCK} taken)"
            ),
            Self::ShortAddress => f.write_str("PROXY v2 address block too short for its family"),
            Self::BadTlv => f.write_str("PROXY v2 TLV runs past the header"),
        }
    }
}

/// Reads a PROXY header from the start of a stream, in any chunking.
#[derive(Debug, Default)]
pub struct ProxyDecoder {
    /// The header's bytes so far (at most 16 + [`V2_MAX_BLOCK`]).
    buf: Vec<u8>,
}

impl ProxyDecoder {
    /// A decoder at the start of a stream.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the stream's next bytes.
    ///
    /// `Ok(None)`: the header is not complete yet, feed more (every byte of
    /// `data` was taken). `Ok(Some((header, used)))`: the header ended after
    /// the first `used` bytes of `data`; the rest of `data` is the stream's
    /// payload. After an error or a header, feeding again starts over.
    ///
    /// # Errors
    /// [`ProxyError`] as soon as the bytes cannot be a valid header.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
        let mut used = 0;
        while used < data.len() {
            let wanted = self.wanted()?;
            if wanted == 0 {
                break;
            }
            let rest = &data[used..];
            let take = match self.buf.first() {
                // v1: up to and including the first LF.
                Some(b'P') => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1)
                    .min(wanted),
                _ => rest.len().min(wanted),
            };
            self.buf.extend_from_slice(&rest[..take]);
            used += take;
            self.check_prefix()?;
            if let Some(header) = self.complete()? {
                self.buf = Vec::new();
                return Ok(Some((header, used)));
            }
        }
        Ok(None)
    }

    /// How many more bytes the header may still take (an upper bound for
    /// v1, exact for v2).
    fn wanted(&self) -> Result<usize, ProxyError> {
        match self.buf.first() {
            None => Ok(1),
            Some(b'P') => Ok(V1_MAX_LINE - self.buf.len()),
            Some(_) if self.buf.len() < 16 => Ok(16 - self.buf.len()),
            Some(_) => {
                let len = usize::from(u16::from_be_bytes([self.buf[14], self.buf[15]]));
                if len > V2_MAX_BLOCK {
                    return Err(ProxyError::TooLong(len));
                }
                Ok(16 + len - self.buf.len())
            }
        }
    }

    /// Fails as soon as the bytes so far cannot start a header.
    fn check_prefix(&self) -> Result<(), ProxyError> {
        let b = &self.buf;
        match b.first() {
            Some(b'P') => {
                let n = b.len().min(6);
                if b[..n] != b"PROXY "[..n] {
                    return Err(ProxyError::Missing);
                }
                if b.len() >= V1_MAX_LINE && b.last() != Some(&b'\n') {
                    return Err(ProxyError::LineTooLong);
                }
            }
            Some(b'\r') => {
                let n = b.len().min(12);
                if b[..n] != V2_SIGNATURE[..n] {
                    return Err(ProxyError::Missing);
                }
                if b.len() >= 13 && b[12] >> 4 != 2 {
                    return Err(ProxyError::Version(b[12] >> 4));
                }
                if b.len() >= 13 && b[12] & 0x0f > 1 {
                    return Err(ProxyError::Command(b[12] & 0x0f));
                }
                if b.len() >= 14 && (b[13] >> 4 > 3 || b[13] & 0x0f > 2) {
                    return Err(ProxyError::Family(b[13]));
                }
            }
            Some(_) => return Err(ProxyError::Missing),
            None => {}
        }
        Ok(())
    }

    /// The header, once all of it is here.
    fn complete(&self) -> Result<Option<ProxyHeader>, ProxyError> {
        match self.buf.first() {
            Some(b'P') if self.buf.last() == Some(&b'\n') => parse_v1(&self.buf).map(Some),
            Some(b'\r') if self.buf.len() >= 16 && self.wanted()? == 0 => {
                parse_v2(&self.buf).map(Some)
            }
            _ => Ok(None),
        }
    }
}

fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return Err(ProxyError::Malformed("the line must end with CRLF"));
    };
    let text = core::str::from_utf8(body).map_err(|_| ProxyError::Malformed("not ASCII"))?;
    let rest = text
        .strip_prefix("PROXY ")
        .ok_or(ProxyError::Malformed("no PROXY"))?;
    if rest == "UNKNOWN" || rest.starts_with("UNKNOWN ") {
        // "The receiver must ignore anything presented before the CRLF."
        return Ok(ProxyHeader::Unknown { version: 1 });
    }
    let mut fields = rest.split(' ');
    let mut next = |what| fields.next().ok_or(ProxyError::Malformed(what));
    let family = next("no protocol")?;
    let (src, dst) = (next("no source address")?, next("no destination address")?);
    let (sport, dport) = (next("no source port")?, next("no destination port")?);
    if fields.next().is_some() {
        return Err(ProxyError::Malformed("extra fields"));
    }
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        match family {
            "TCP4" => s
                .parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| ProxyError::Malformed("bad IPv4 address")),
            "TCP6" => s
                .parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| ProxyError::Malformed("bad IPv6 address")),
            _ => Err(ProxyError::Malformed("protocol not TCP4, TCP6 or UNKNOWN")),
        }
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match s.parse::<u16>() {
            Ok(p) if digits && (s == "0" || !s.starts_with('0')) => Ok(p),
            _ => Err(ProxyError::Malformed("bad port")),
        }
    };
    Ok(ProxyHeader::Proxied {
        version: 1,
        source: SocketAddr::new(ip(src)?, port(sport)?),
        destination: SocketAddr::new(ip(dst)?, port(dport)?),
        tlvs: Tlvs::default(),
    })
}

fn parse_v2(b: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let block = &b[16..];
    if b[12] & 0x0f == 0 {
        // LOCAL: "must not assume zero" length; skipped above.
        return Ok(ProxyHeader::Local);
    }
    let (addrs, tlv_start) = match b[13] {
        0x11 | 0x12 => (Some(inet_pair(block, 4)?), 12),
        0x21 | 0x22 => (Some(inet_pair(block, 16)?), 36),
        0x31 | 0x32 => {
            if block.len() < 216 {
                return Err(ProxyError::ShortAddress);
            }
            (None, 216)
        }
        _ => (None, 0), // UNSPEC: the addresses, if any, are to be ignored
    };
    let tlvs = parse_tlvs(block.get(tlv_start..).unwrap_or_default())?;
    Ok(match addrs {
        // DGRAM over a stream connection: take the addresses all the same.
        Some((source, destination)) => ProxyHeader::Proxied {
            version: 2,
            source,
            destination,
            tlvs,
        },
        None => ProxyHeader::Unknown { version: 2 },
    })
}

/// The source and destination of a v2 address block with `n`-byte
/// addresses (4 or 16): both addresses, then both ports, big-endian.
fn inet_pair(block: &[u8], n: usize) -> Result<(SocketAddr, SocketAddr), ProxyError> {
    let b = block.get(..2 * n + 4).ok_or(ProxyError::ShortAddress)?;
    let ip = |at: usize| -> IpAddr {
        let mut octets = [0u8; 16];
        octets[..n].copy_from_slice(&b[at..at + n]);
        if n == 4 {
            IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(octets))
        }
    };
    let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    Ok((
        SocketAddr::new(ip(0), port(2 * n)),
        SocketAddr::new(ip(n), port(2 * n + 2)),
    ))
}

fn parse_tlvs(mut b: &[u8]) -> Result<Tlvs, ProxyError> {
    let mut tlvs = Tlvs::default();
    while !b.is_empty() {
        if b.len() < 3 {
            return Err(ProxyError::BadTlv);
        }
        let len = usize::from(u16::from_be_bytes([b[1], b[2]]));
        let value = b.get(3..3 + len).ok_or(ProxyError::BadTlv)?;
        let text = || Some(String::from_utf8_lossy(value).into_owned());
        match b[0] {
            0x01 => tlvs.alpn = text(),
            0x02 => tlvs.authority = text(),
            0x05 => tlvs.unique_id = text(),
            _ => {} // CRC32C, NOOP, SSL, NETNS, custom: skipped
        }
        b = &b[3 + len..];
    }
    Ok(tlvs)
}

impl ProxyHeader {
    /// The header as a sender writes it: v1 text or v2 binary. A v1
    /// `Local` is written as `UNKNOWN` (v1 has no LOCAL); TLVs are not
    /// written. A source and destination of different families are both
    /// written as IPv6 (TCP6), the IPv4 one IPv4-mapped (`::ffff:a.b.c.d`):
    /// the header has one family, and a declared client must never vanish
    /// into `UNKNOWN`.
    #[must_use]
    pub fn encode(&self, version: u8) -> Vec<u8> {
        let addresses = match self {
            Self::Proxied {
                source,
                destination,
                ..
            } => Some(one_family(*source, *destination)),
            _ => None,
        };
        if version == 1 {
            return match addresses {
                Some((source, destination)) => {
                    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
                    alloc::format!(
                        "PROXY {family} {} {} {} {}\r\n",
                        source.ip(),
                        destination.ip(),
                        source.port(),
                        destination.port()
                    )
                    .into_bytes()
                }
                None => b"PROXY UNKNOWN\r\n".to_vec(),
            };
        }
        let mut out = V2_SIGNATURE.to_vec();
        match (self, addresses) {
            (_, Some((SocketAddr::V4(s), SocketAddr::V4(d)))) => {
                out.extend_from_slice(&[0x21, 0x11, 0, 12]);
                out.extend_from_slice(&s.ip().octets());
                out.extend_from_slice(&d.ip().octets());
                out.extend_from_slice(&s.port().to_be_bytes());
                out.extend_from_slice(&d.port().to_be_bytes());
            }
            (_, Some((SocketAddr::V6(s), SocketAddr::V6(d)))) => {
                out.extend_from_slice(&[0x21, 0x21, 0, 36]);
                out.extend_from_slice(&s.ip().octets());
                out.extend_from_slice(&d.ip().octets());
                out.extend_from_slice(&s.port().to_be_bytes());
                out.extend_from_slice(&d.port().to_be_bytes());
            }
            (Self::Local, _) => out.extend_from_slice(&[0x20, 0x00, 0, 0]),
            _ => out.extend_from_slice(&[0x21, 0x00, 0, 0]),
        }
        out
    }
}

/// `source` and `destination` in one family: as they are when they share
/// one, else both IPv6 with the IPv4 one mapped.
fn one_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    if source.is_ipv4() == destination.is_ipv4() {
        return (source, destination);
    }
    let mapped = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    };
    (mapped(source), mapped(destination))
}
