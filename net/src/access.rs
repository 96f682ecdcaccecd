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
}
