//! Flag groups and value parsers that several subcommands share.

use echo_core::ClientEndpoint;
use echo_net::{ClientError, Connector, SendProxy};

use crate::{client_endpoint, complain, positive, positive_size, switch};
pub(crate) use crate::{positive_duration, stream_endpoint};

/// TLS options for tls: endpoints.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct TlsArgs {
    /// tls: endpoints: accept any server certificate, unverified (for
    /// self-signed test servers; said on standard error). Prefer
    /// trustRoots=CA.pem, which echo-server --self-signed writes
    #[arg(value_parser = switch, env = "ECHO_CLIENT_INSECURE", long)]
    pub(crate) insecure: bool,
}

impl TlsArgs {
    /// The connector for `endpoint`, or a usage error (exit 2) for
    /// --insecure without TLS; warns on standard error when insecure.
    pub(crate) fn connector(
        self,
        endpoint: &ClientEndpoint,
        subcommand: Option<&str>,
    ) -> Result<Connector, ClientError> {
        if self.insecure {
            if !matches!(endpoint, ClientEndpoint::Tls { .. }) {
                super::usage_error(
                    subcommand,
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("--insecure is for tls: endpoints, and {endpoint} is not one"),
                );
            }
            complain("echo-client: warning: --insecure: the server's certificate is not verified");
        }
        Connector::new(endpoint, self.insecure)
    }
}

/// Speaking the PROXY protocol to a back end or balancer that expects it.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct ProxyArgs {
    /// Start each connection with a PROXY header, version v1 (text) or v2
    /// (binary), declaring this connection's own address as the client's
    #[arg(env = "ECHO_CLIENT_SEND_PROXY", long, value_name = "VERSION", value_parser = proxy_version())]
    pub(crate) send_proxy: Option<u8>,

    /// Declare this client address in the PROXY header instead; when its
    /// family differs from the server's, both go out as TCP6 with the IPv4
    /// one IPv4-mapped (::ffff:a.b.c.d)
    #[arg(
        env = "ECHO_CLIENT_PROXY_SOURCE",
        long,
        value_name = "IP:PORT",
        requires = "send_proxy"
    )]
    pub(crate) proxy_source: Option<std::net::SocketAddr>,
}

impl ProxyArgs {
    pub(crate) fn header(self) -> Option<SendProxy> {
        self.send_proxy.map(|version| SendProxy {
            version,
            source: self.proxy_source,
        })
    }
}

pub(crate) fn request_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.001..=100_000_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate in requests per second (from 0.001 to 100000000)"
        )),
    }
}

pub(crate) fn connect_rate(s: &str) -> Result<f64, String> {
    request_rate(s).map_err(|_| {
        format!("{s:?} is not a rate in connections per second (from 0.001 to 100000000)")
    })
}

/// `v1` or `v2` (also `1`, `2`): possible values, so that `--help` lists
/// them and the shells complete them.
pub(crate) fn proxy_version() -> impl clap::builder::TypedValueParser<Value = u8> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("v1").help("text"),
        PossibleValue::new("v2").help("binary"),
        PossibleValue::new("1").hide(true),
        PossibleValue::new("2").hide(true),
    ])
    .map(|s| if s.ends_with('1') { 1 } else { 2 })
}

/// The most connections one run may make (each is remembered only while
/// open, but a count beyond this is a typo, not a test).
pub(crate) const MAX_CONNECTIONS: usize = 10_000_000;

/// Default for --concurrency.
pub(crate) const DEFAULT_CONCURRENCY: usize = 256;

pub(crate) fn connection_count(s: &str) -> Result<usize, String> {
    match positive(s)? {
        n if n <= MAX_CONNECTIONS => Ok(n),
        _ => Err(format!("{s} connections is more than {MAX_CONNECTIONS}")),
    }
}

pub(crate) fn datagram_count(s: &str) -> Result<u64, String> {
    connection_count(s)
        .map(|n| n as u64)
        .map_err(|_| format!("{s:?} is not a datagram count from 1 to {MAX_CONNECTIONS}"))
}

pub(crate) fn message_size(s: &str) -> Result<usize, String> {
    match positive_size(s)? {
        n if n <= crate::load::MAX_LEN => Ok(n),
        _ => Err(format!(
            "{s} bytes is larger than {} (16 MiB)",
            crate::load::MAX_LEN
        )),
    }
}

pub(crate) fn positive_u64(s: &str) -> Result<u64, String> {
    positive(s).map(|n| n as u64)
}

/// A stream endpoint for the message and --stdin modes; a udp: one gets a
/// pointer to `echo-client udp`.
pub(crate) fn stream_endpoint_or_hint(s: &str) -> Result<ClientEndpoint, String> {
    match client_endpoint(s)? {
        ClientEndpoint::Udp { .. } => Err(format!(
            "UDP echo has its own subcommand: echo-client udp --connect {s}"
        )),
        endpoint => Ok(endpoint),
    }
}

pub(crate) fn udp_endpoint(s: &str) -> Result<ClientEndpoint, String> {
    match client_endpoint(s)? {
        endpoint @ ClientEndpoint::Udp { .. } => Ok(endpoint),
        _ => Err("echo-client udp needs a udp: endpoint, such as udp:localhost:8888".into()),
    }
}
