//! What to run: the load's settings, checked (no clap here).

use std::time::Duration;

use echo_core::ClientEndpoint;

/// The largest message `bench` sends (a usage error beyond it).
pub const MAX_LEN: usize = 16 << 20;

/// The most memory the messages may take: two buffers of `len` bytes per
/// connection (a usage error beyond it).
pub const MAX_BUFFERS: usize = 1 << 30;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Where the server is.
    pub endpoint: ClientEndpoint,
    /// Concurrent connections.
    pub connections: usize,
    /// Message length in bytes.
    pub len: usize,
    /// Measure for this long (after the warm-up) ...
    pub duration: Option<Duration>,
    /// ... or until exactly this many requests were measured.
    pub requests: Option<u64>,
    /// Run, unmeasured, for this long first.
    pub warmup: Duration,
    /// A request that moves no byte for this long fails (timed out).
    pub timeout: Duration,
    /// Start each connection with this PROXY header.
    pub send_proxy: Option<echo_net::SendProxy>,
    /// `tls:`: accept any server certificate.
    pub insecure: bool,
    /// `tls:`: resume sessions when the server sends tickets (`false`:
    /// every handshake a full one).
    pub resume: bool,
    /// Open loop: this many requests per second in all, spread evenly over
    /// the connections; `None` for closed-loop ping-pong.
    pub rate: Option<f64>,
    /// Open loop: the most requests one connection has in flight; a send
    /// due beyond it is skipped (and counted).
    pub max_in_flight: usize,
    /// Report every this long while measuring (`Interval`).
    pub interval: Option<Duration>,
    /// Open at most this many new connections per second while ramping up
    /// (`None`: as fast as possible).
    pub connect_rate: Option<f64>,
    /// Close each connection after this many messages and open a new one
    /// in its place (connection churn, like netperf's TCP_CRR).
    pub reconnect_every: Option<u64>,
    /// Each connection starts with the server's banner line naming its
    /// back end (`echo-server --banner`): read it, and report per back end.
    pub banner: bool,
    /// Where the run's live figures go (`--metrics`), if anywhere.
    pub live: Option<std::sync::Arc<super::Live>>,
    /// Open loop, many hosts: this host's sends come this much after the
    /// schedule's, so that the shards' sends interleave (shard I of a test
    /// at R requests/s in all: I/R).
    pub shift: Duration,
}

/// The default for [`BenchConfig::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1_000;

impl BenchConfig {
    /// Checks the sizes against [`MAX_LEN`] and [`MAX_BUFFERS`].
    ///
    /// # Errors
    /// A message saying which limit was passed.
    pub fn check(&self) -> Result<(), String> {
        if self.len > MAX_LEN {
            return Err(format!(
                "a {}-byte message is larger than bench allows ({MAX_LEN} bytes)",
                self.len
            ));
        }
        let buffers = self.connections.checked_mul(self.len.saturating_mul(2));
        if buffers.is_none_or(|b| b > MAX_BUFFERS) {
            return Err(format!(
                "{} connections x {} bytes need more than {} MiB of buffers; use fewer or smaller",
                self.connections,
                self.len,
                MAX_BUFFERS >> 20
            ));
        }
        Ok(())
    }
}
