//! The PROXY header decoder: every version and family, every split down to
//! one byte, malformed and oversized headers, and the payload after the
//! header never lost.

#[allow(unused_imports)]
use super::prelude::*;

use core::net::SocketAddr;

use proptest::prelude::*;

use crate::{ProxyDecoder, ProxyError, ProxyHeader, Tlvs, V2_SIGNATURE};

/// Feeds `bytes` in pieces of `sizes` (cycled); returns the result and what
/// followed the header.
fn decode(bytes: &[u8], sizes: &[usize]) -> (Result<ProxyHeader, ProxyError>, Vec<u8>) {
    let mut decoder = ProxyDecoder::new();
    let (mut at, mut i) = (0, 0);
    while at < bytes.len() {
        let n = sizes[i % sizes.len()].max(1).min(bytes.len() - at);
        i += 1;
        let piece = &bytes[at..at + n];
        match decoder.feed(piece) {
            Ok(None) => at += n,
            Ok(Some((header, used))) => {
                let mut rest = piece[used..].to_vec();
                rest.extend_from_slice(&bytes[at + n..]);
                return (Ok(header), rest);
            }
            Err(e) => return (Err(e), Vec::new()),
        }
    }
    (Err(ProxyError::Missing), b"incomplete".to_vec())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn proxied(version: u8, src: &str, dst: &str) -> ProxyHeader {
    ProxyHeader::Proxied {
        version,
        source: addr(src),
        destination: addr(dst),
        tlvs: Tlvs::default(),
    }
}

/// A declared client of the other family than the server must reach the
/// server, not vanish into UNKNOWN: both go out as TCP6, the IPv4 side
/// IPv4-mapped, and the declared IPv6 client is decoded as declared.
#[test]
fn a_source_and_destination_of_different_families_are_sent_as_tcp6_with_the_ipv4_one_mapped() {
    let header = proxied(1, "[2001:db8::5]:99", "127.0.0.1:8888");
    assert_eq!(
        header.encode(1),
        b"PROXY TCP6 2001:db8::5 ::ffff:127.0.0.1 99 8888\r\n".to_vec()
    );
    for version in [1, 2] {
        let (decoded, _) = decode(&header.encode(version), &[1000]);
        assert_eq!(
            decoded,
            Ok(proxied(
                version,
                "[2001:db8::5]:99",
                "[::ffff:127.0.0.1]:8888"
            ))
        );
    }
    let reverse = proxied(2, "192.0.2.7:1", "[::1]:443");
    assert_eq!(
        decode(&reverse.encode(2), &[1000]).0,
        Ok(proxied(2, "[::ffff:192.0.2.7]:1", "[::1]:443"))
    );
}

#[test]
fn v1_tcp4_and_tcp6_give_the_declared_addresses() {
    let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nhello";
    for sizes in [&[1][..], &[3, 1, 7], &[1000]] {
        assert_eq!(
            decode(line, sizes),
            (
                Ok(proxied(1, "192.0.2.7:56324", "198.51.100.1:443")),
                b"hello".to_vec()
            )
        );
    }
    let line = b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
    assert_eq!(
        decode(line, &[1]),
        (Ok(proxied(1, "[2001:db8::1]:1", "[::1]:65535")), Vec::new())
    );
}

#[test]
fn v1_unknown_with_or_without_addresses_keeps_the_real_peer() {
    for line in [
        &b"PROXY UNKNOWN\r\nx"[..],
        b"PROXY UNKNOWN ffff::1 ::1 1 2\r\nx",
    ] {
        assert_eq!(
            decode(line, &[1]),
            (Ok(ProxyHeader::Unknown { version: 1 }), b"x".to_vec())
        );
    }
}

#[test]
fn malformed_v1_lines_are_refused_with_a_reason() {
    let cases: [(&[u8], ProxyError); 9] = [
        (b"GET / HTTP/1.1\r\n", ProxyError::Missing),
        (b"PROXZ TCP4\r\n", ProxyError::Missing),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            ProxyError::Malformed("the line must end with CRLF"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            ProxyError::Malformed("bad port"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            ProxyError::Malformed("bad port"),
        ),
        (
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            ProxyError::Malformed("extra fields"),
        ),
        (
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            ProxyError::Malformed("bad IPv4 address"),
        ),
        (
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            ProxyError::Malformed("protocol not TCP4, TCP6 or UNKNOWN"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            ProxyError::Malformed("extra fields"),
        ),
    ];
    for (line, error) in cases {
        assert_eq!(
            decode(line, &[1]).0,
            Err(error),
            "{}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(decode(line, &[200]).0, Err(error));
    }
}

#[test]
fn a_v1_line_without_crlf_in_107_bytes_is_refused_at_107() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(200, b'a');
    let mut decoder = ProxyDecoder::new();
    assert_eq!(decoder.feed(&line[..106]), Ok(None));
    assert_eq!(decoder.feed(&line[106..]), Err(ProxyError::LineTooLong));
}

fn v2(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(cmd);
    out.push(fam);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(block);
    out
}

#[test]
fn v2_inet_inet6_local_unix_and_unspec() {
    let mut v4 = vec![192, 0, 2, 7, 10, 0, 0, 1, 0xdc, 0x04, 0x01, 0xbb];
    // TLVs: ALPN "h2", AUTHORITY "example.com", NOOP, UNIQUE_ID "abc".
    v4.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
    v4.extend_from_slice(&[0x02, 0, 11]);
    v4.extend_from_slice(b"example.com");
    v4.extend_from_slice(&[0x04, 0, 0, 0x05, 0, 3, b'a', b'b', b'c']);
    let mut bytes = v2(0x21, 0x11, &v4);
    bytes.extend_from_slice(b"payload");
    let expected = ProxyHeader::Proxied {
        version: 2,
        source: addr("192.0.2.7:56324"),
        destination: addr("10.0.0.1:443"),
        tlvs: Tlvs {
            alpn: Some("h2".into()),
            authority: Some("example.com".into()),
            unique_id: Some("abc".into()),
        },
    };
    for sizes in [&[1][..], &[5, 11, 2], &[4096]] {
        assert_eq!(
            decode(&bytes, sizes),
            (Ok(expected.clone()), b"payload".to_vec())
        );
    }
    let mut v6 = [0u8; 36];
    v6[15] = 1;
    v6[31] = 2;
    v6[32..].copy_from_slice(&[0, 80, 1, 0]);
    assert_eq!(
        decode(&v2(0x21, 0x21, &v6), &[1]).0,
        Ok(proxied(2, "[::1]:80", "[::2]:256"))
    );
    // LOCAL skips whatever length it declares.
    assert_eq!(
        decode(&[v2(0x20, 0x11, &[9; 12]), b"x".to_vec()].concat(), &[3]),
        (Ok(ProxyHeader::Local), b"x".to_vec())
    );
    assert_eq!(
        decode(&v2(0x21, 0x31, &[0; 216]), &[7]).0,
        Ok(ProxyHeader::Unknown { version: 2 })
    );
    assert_eq!(
        decode(&v2(0x21, 0x00, &[]), &[1]).0,
        Ok(ProxyHeader::Unknown { version: 2 })
    );
}

#[test]
fn malformed_v2_headers_are_refused_with_a_reason() {
    let cases: [(Vec<u8>, ProxyError); 6] = [
        (v2(0x11, 0x11, &[0; 12]), ProxyError::Version(1)),
        (v2(0x22, 0x11, &[0; 12]), ProxyError::Command(2)),
        (v2(0x21, 0x41, &[0; 12]), ProxyError::Family(0x41)),
        (v2(0x21, 0x11, &[0; 11]), ProxyError::ShortAddress),
        (
            v2(0x21, 0x11, &[[0; 12].as_slice(), &[0x01, 0, 9, 1]].concat()),
            ProxyError::BadTlv,
        ),
        (v2(0x21, 0x11, &[0; 5000]), ProxyError::TooLong(5000)),
    ];
    for (bytes, error) in cases {
        assert_eq!(decode(&bytes, &[1]).0, Err(error));
        assert_eq!(decode(&bytes, &[10_000]).0, Err(error));
    }
    // A wrong signature byte is caught where it appears.
    let mut bad = v2(0x21, 0x11, &[0; 12]);
    bad[7] = b'X';
    let mut decoder = ProxyDecoder::new();
    assert_eq!(decoder.feed(&bad[..7]), Ok(None));
    assert_eq!(decoder.feed(&bad[7..8]), Err(ProxyError::Missing));
}

#[test]
fn errors_read_well() {
    assert_eq!(
        ProxyError::Malformed("bad port").to_string(),
        "malformed PROXY v1 line: bad port"
    );
    assert_eq!(
        ProxyError::TooLong(5000).to_string(),
        "PROXY v2 header declares 5000 bytes (at most 4096 taken)"
    );
}

fn header() -> impl Strategy<Value = ProxyHeader> {
    let v4 = (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p)));
    let v6 = (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p)));
    prop_oneof![
        (1u8..=2, v4.clone(), v4).prop_map(|(version, source, destination)| {
            ProxyHeader::Proxied {
                version,
                source,
                destination,
                tlvs: Tlvs::default(),
            }
        }),
        (1u8..=2, v6.clone(), v6).prop_map(|(version, source, destination)| {
            ProxyHeader::Proxied {
                version,
                source,
                destination,
                tlvs: Tlvs::default(),
            }
        }),
        (1u8..=2).prop_map(|version| ProxyHeader::Unknown { version }),
        Just(ProxyHeader::Local),
    ]
}

proptest! {
    /// Encoded then decoded at any split, a header comes back as it was
    /// (v1 has no LOCAL: it says UNKNOWN) and the payload is intact.
    #[test]
    fn any_header_at_any_split_decodes_the_same(
        header in header(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
        sizes in prop::collection::vec(1usize..40, 1..8),
    ) {
        let version = match &header {
            ProxyHeader::Proxied { version, .. } | ProxyHeader::Unknown { version } => *version,
            _ => 2,
        };
        let bytes = [header.encode(version), payload.clone()].concat();
        let (decoded, rest) = decode(&bytes, &sizes);
        prop_assert_eq!(decoded, Ok(header));
        prop_assert_eq!(rest, payload);
    }

    /// Arbitrary bytes never panic the decoder, and never make it hold more
    /// than a header's worth.
    #[test]
    fn arbitrary_bytes_are_refused_or_decoded_never_a_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        sizes in prop::collection::vec(1usize..40, 1..8),
    ) {
        let _ = decode(&bytes, &sizes);
        let mut prefixed = V2_SIGNATURE.to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = decode(&prefixed, &sizes);
        let _ = decode(&[b"PROXY ".as_slice(), &bytes].concat(), &sizes);
    }
}
