//! Why a request failed, and the count of each kind: what the report says
//! under `errors`, what thresholds on `errors` and `error_rate` read.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Why a connection's request failed; each ends that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The echo differed from what was sent.
    Mismatch,
    /// The server closed before the whole echo came back.
    Closed,
    /// The peer reset the connection.
    Reset,
    /// Another socket error.
    Broken,
    /// No byte moved either way for the timeout (or a reconnect timed out).
    TimedOut,
    /// Still waiting for its echo when the run (and its drain) ended.
    Unfinished,
    /// A reconnect (`--reconnect-every`) was refused.
    Refused,
    /// A reconnect's host name did not resolve.
    NameResolution,
    /// A reconnect's TLS handshake failed.
    Tls,
}

impl Failure {
    /// Every kind, in report order.
    pub const ALL: [Self; 9] = [
        Self::Mismatch,
        Self::Closed,
        Self::Reset,
        Self::Broken,
        Self::TimedOut,
        Self::Unfinished,
        Self::Refused,
        Self::NameResolution,
        Self::Tls,
    ];

    /// The kind of a socket error: TLS's (an alert from the server, say
    /// `certificate_required` under mutual TLS), a reset, or broken.
    pub(crate) fn of_io(error: &std::io::Error) -> Self {
        if echo_net::tls_reason(error).is_some() {
            return Self::Tls;
        }
        match error.kind() {
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => Self::Reset,
            _ => Self::Broken,
        }
    }

    /// The kind of a failed (re)connect.
    pub(crate) fn of_connect(error: &echo_net::ClientError) -> Self {
        match error {
            echo_net::ClientError::Refused { .. } => Self::Refused,
            echo_net::ClientError::ConnectTimeout { .. } => Self::TimedOut,
            echo_net::ClientError::Resolve { .. } => Self::NameResolution,
            echo_net::ClientError::Tls { .. } => Self::Tls,
            _ => Self::Broken,
        }
    }

    /// The JSON key.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Mismatch => "mismatch",
            Self::Closed => "closed",
            Self::Reset => "reset",
            Self::Broken => "broken",
            Self::TimedOut => "timed_out",
            Self::Unfinished => "unfinished",
            Self::Refused => "refused",
            Self::NameResolution => "name_resolution",
            Self::Tls => "tls_handshake",
        }
    }

    /// What a user reads.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Mismatch => "echo mismatch",
            Self::Closed => "closed early by the server",
            Self::Reset => "reset by the server",
            Self::Broken => "connection broken",
            Self::TimedOut => "timed out",
            Self::Unfinished => "no echo by the end of the run",
            Self::Refused => "reconnect refused",
            Self::NameResolution => "reconnect could not resolve the host",
            Self::Tls => "TLS failure (handshake or alert)",
        }
    }

    /// Its place in [`Failure::ALL`] (and in [`Failures`]).
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Failed requests by kind. In JSON an object keyed by [`Failure::key`], in
/// report order, every kind present (zero or not), so a reader can rely on
/// each key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures(pub [u64; 9]);

impl Failures {
    /// How many failed so.
    #[must_use]
    pub fn get(&self, kind: Failure) -> u64 {
        self.0[kind.index()]
    }

    /// Failed requests of every kind.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds `other`'s counts (merging runs).
    pub fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    /// The failures that happened, as `2 closed early by the server, 1 timed
    /// out`; empty when none did.
    #[must_use]
    pub fn describe(&self) -> String {
        Failure::ALL
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{n} {}", kind.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Serialize for Failures {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Failure::ALL.len()))?;
        for kind in Failure::ALL {
            map.serialize_entry(kind.key(), &self.get(kind))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Failures {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = Failures;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("failure counts keyed by kind")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Failures, A::Error> {
                let mut counts = Failures::default();
                while let Some((key, n)) = map.next_entry::<String, u64>()? {
                    let kind = Failure::ALL
                        .iter()
                        .find(|k| k.key() == key)
                        .ok_or_else(|| {
                            serde::de::Error::custom(format!("unknown failure kind {key:?}"))
                        })?;
                    counts.0[kind.index()] = n;
                }
                Ok(counts)
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn failures_are_classified_by_what_the_socket_said() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            Failure::of_io(&Error::from(ErrorKind::ConnectionReset)),
            Failure::Reset
        );
        assert_eq!(
            Failure::of_io(&Error::from(ErrorKind::BrokenPipe)),
            Failure::Reset
        );
        assert_eq!(
            Failure::of_io(&Error::from(ErrorKind::Other)),
            Failure::Broken
        );
        let target = "tcp:x:1".to_owned();
        let refused = echo_net::ClientError::Refused {
            target: target.clone(),
        };
        assert_eq!(Failure::of_connect(&refused), Failure::Refused);
        let timeout = echo_net::ClientError::ConnectTimeout {
            target,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(Failure::of_connect(&timeout), Failure::TimedOut);
        let tls = echo_net::ClientError::Tls {
            target: "tls:x:1".to_owned(),
            reason: "unknown issuer".to_owned(),
        };
        assert_eq!(Failure::of_connect(&tls), Failure::Tls);
        let keys: Vec<&str> = Failure::ALL.iter().map(|f| f.key()).collect();
        assert_eq!(
            keys,
            [
                "mismatch",
                "closed",
                "reset",
                "broken",
                "timed_out",
                "unfinished",
                "refused",
                "name_resolution",
                "tls_handshake"
            ]
        );
        assert!(Failure::ALL.iter().enumerate().all(|(i, k)| k.index() == i));
    }

    #[test]
    fn failure_counts_are_a_json_object_in_report_order_and_read_back() {
        let mut counts = Failures::default();
        counts.0[Failure::TimedOut.index()] = 2;
        let json = serde_json::to_string(&counts).unwrap();
        assert!(
            json.starts_with(r#"{"mismatch":0,"closed":0,"reset":0,"broken":0,"timed_out":2"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Failures>(&json).unwrap(), counts);
        assert!(serde_json::from_str::<Failures>(r#"{"gremlins":1}"#).is_err());
    }
}
