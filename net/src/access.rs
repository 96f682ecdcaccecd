//! Which peers a server serves: `--allow` and `--deny` CIDR blocks, decided
//! on the peer the server reports (the client a PROXY header declared,
//! otherwise the socket's peer).

use echo_core::Address;
use ipnet::IpNet;

/// Allow and deny lists. Empty, everyone is served; with any allow block,
/// only peers in one; a deny block always wins. A Unix-domain peer has no
/// IP address: it is served only when no allow block is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    /// Served, if any are given: only these.
    pub allow: Vec<IpNet>,
    /// Never served.
    pub deny: Vec<IpNet>,
}

impl AccessList {
    /// Whether `peer` may be served.
    #[must_use]
    pub fn admits(&self, peer: &Address) -> bool {
        let Some(ip) = peer.ip().map(|a| a.ip().to_canonical()) else {
            return self.allow.is_empty();
        };
        !self.deny.iter().any(|net| net.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip)))
    }

    /// Whether every peer is served (no lists).
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(allow: &[&str], deny: &[&str]) -> AccessList {
        AccessList {
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn peer(s: &str) -> Address {
        Address::Ip(s.parse().unwrap())
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let l = list(&["10.0.0.0/8", "2001:db8::/32"], &["10.1.0.0/16"]);
        assert!(l.admits(&peer("10.2.3.4:1")));
        assert!(
            !l.admits(&peer("10.1.3.4:1")),
            "denied inside an allowed block"
        );
        assert!(!l.admits(&peer("192.0.2.1:1")), "outside every allow block");
        assert!(l.admits(&peer("[2001:db8::7]:1")));
        assert!(
            !l.admits(&Address::unnamed_unix()),
            "no IP, allow list given"
        );
        let open = AccessList::default();
        assert!(open.is_open() && open.admits(&peer("192.0.2.1:1")));
        assert!(open.admits(&Address::unnamed_unix()));
        // An IPv4 peer on an IPv6 socket (::ffff:a.b.c.d) matches IPv4 blocks.
        assert!(!list(&[], &["127.0.0.0/8"]).admits(&peer("[::ffff:127.0.0.1]:1")));
    }

    /// An independent model of the lists: prefix arithmetic on whole
    /// numbers (`u32` for IPv4, `u128` for IPv6), an IPv4-mapped IPv6
    /// address taken as the IPv4 one (where the simulation cannot reach:
    /// turmoil gives its hosts IPv4 addresses only).
    fn model(allow: &[IpNet], deny: &[IpNet], addr: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let within = |net: &IpNet| match (net, addr) {
            (IpNet::V4(net), IpAddr::V4(a)) => {
                let shift = 32 - u32::from(net.prefix_len());
                let (n, a) = (u32::from(net.network()), u32::from(a));
                shift == 32 || n >> shift == a >> shift
            }
            (IpNet::V6(net), IpAddr::V6(a)) => {
                let shift = 128 - u32::from(net.prefix_len());
                let (n, a) = (u128::from(net.network()), u128::from(a));
                shift == 128 || n >> shift == a >> shift
            }
            _ => false,
        };
        !deny.iter().any(within) && (allow.is_empty() || allow.iter().any(within))
    }

    mod against_a_model {
        use super::*;
        use proptest::prelude::*;
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

        /// Addresses close together, so that blocks and peers meet often:
        /// IPv4, IPv6 and IPv4-mapped IPv6 over a few shared prefixes.
        fn address() -> impl Strategy<Value = IpAddr> {
            let v4 = (0u32..4, any::<u8>())
                .prop_map(|(net, host)| Ipv4Addr::from(0x0a00_0000 | (net << 8) | u32::from(host)));
            prop_oneof![
                v4.clone().prop_map(IpAddr::V4),
                v4.prop_map(|a| IpAddr::V6(a.to_ipv6_mapped())),
                (0u128..4, any::<u16>()).prop_map(|(net, host)| IpAddr::V6(Ipv6Addr::from(
                    (0x2001_0db8_u128 << 96) | (net << 16) | u128::from(host)
                ))),
            ]
        }

        fn block() -> impl Strategy<Value = IpNet> {
            (address(), any::<u8>()).prop_map(|(addr, len)| {
                let net = match addr {
                    IpAddr::V4(a) => IpNet::new(IpAddr::V4(a), len % 33),
                    IpAddr::V6(a) => IpNet::new(IpAddr::V6(a), len % 129),
                };
                net.expect("a prefix within the family").trunc()
            })
        }

        proptest! {
            /// The lists admit exactly whom the model admits, for IPv4,
            /// IPv6 and IPv4-mapped peers alike.
            #[test]
            fn the_lists_admit_exactly_whom_prefix_arithmetic_admits(
                allow in prop::collection::vec(block(), 0..4),
                deny in prop::collection::vec(block(), 0..4),
                addr in address(),
                port in any::<u16>(),
            ) {
                let lists = AccessList { allow: allow.clone(), deny: deny.clone() };
                let peer = Address::Ip(std::net::SocketAddr::new(addr, port));
                prop_assert_eq!(lists.admits(&peer), model(&allow, &deny, addr));
            }
        }
    }
}
