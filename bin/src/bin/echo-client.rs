//! `echo-client`: sends bytes to an echo server and verifies the echo.

#![forbid(unsafe_code)]

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use echo_core::UDP_CLIENT_HEADER;

use bytes::Bytes;
use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use echo_bin::{
    EXIT_FAILURE, client_endpoint, complain, datagram_size, duration, init_logging, level_count,
    positive, positive_duration, positive_size, print_completions, print_man, say, stream_endpoint,
    switch,
};
use echo_core::{
    ClientConfig, ClientEndpoint, EchoClient, UdpClientConfig, UdpClientEvent, UdpEchoClient,
    UdpReport,
};
use echo_net::{
    AnyStream, ClientError, ClientOptions, Connected, Connector, Pipe, SendProxy, connect_udp,
    echo_message_from, now, run, udp_echo,
};

/// Sends a message (or standard input) to an echo server and checks that
/// every byte comes back, byte for byte.
///
/// With no flags it reproduces the Twisted tutorial's client: 10 concurrent
/// connections to localhost:8888, each sending "hello server" and printing
/// the echo. With --stdin it is a verifying `nc` for echo servers: standard
/// input goes out, every echoed byte goes to standard output (and nothing
/// else does), and the exit code says whether everything came back exactly.
///
/// `echo-client bench` is a verifying load generator; `echo-client udp`
/// sends numbered datagrams and accounts for every reply.
#[derive(Debug, Parser)]
#[command(name = "echo-client", version, after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Where to connect, as a Twisted endpoint string (tcp:, unix: or tls:)
    #[arg(env = "ECHO_CLIENT_CONNECT", long, value_name = "DESC", default_value = "tcp:localhost:8888", value_parser = stream_endpoint_or_hint)]
    connect: ClientEndpoint,

    /// Connections, each sending the message and verifying its echo
    #[arg(env = "ECHO_CLIENT_CONNECTIONS", short = 'c', long, visible_short_alias = 'n', value_name = "N", default_value = "10", value_parser = connection_count)]
    connections: usize,

    /// At most this many connections open at once; the rest wait their turn
    /// [default: N, at most 256]
    #[arg(env = "ECHO_CLIENT_CONCURRENCY", long, value_name = "N", value_parser = positive)]
    concurrency: Option<usize>,

    /// The message each connection sends
    #[arg(
        env = "ECHO_CLIENT_MESSAGE",
        short,
        long,
        value_name = "TEXT",
        default_value = "hello server"
    )]
    message: String,

    /// Send SIZE bytes of generated content instead of the message (each
    /// echo is then reported by its size)
    #[arg(env = "ECHO_CLIENT_SIZE", short, long, value_name = "BYTES", conflicts_with = "message", value_parser = message_size)]
    size: Option<usize>,

    /// Stream standard input over one connection instead of sending a message
    #[arg(value_parser = switch, env = "ECHO_CLIENT_STDIN", long, conflicts_with_all = ["connections", "message", "size", "concurrency"])]
    stdin: bool,

    /// Send FIN as soon as the input ends instead of after the whole echo came
    /// back (as `nc -N`). For testing how a server or proxy handles
    /// half-close: servers that take FIN as the end of the connection
    /// (Twisted's default Protocol, socat EXEC, ncat before 7.96 with --exec)
    /// then drop the echo they still owe, and the client says `truncated`
    #[arg(value_parser = switch, env = "ECHO_CLIENT_HALF_CLOSE", long)]
    half_close: bool,

    /// Fail when an echo is owed and nothing moves for this long
    #[arg(env = "ECHO_CLIENT_TIMEOUT", long, value_name = "DURATION", default_value = "30s", value_parser = positive_duration)]
    timeout: Duration,

    /// Retry a failed connect this many times, with back-off
    #[arg(
        env = "ECHO_CLIENT_RETRIES",
        long,
        value_name = "N",
        default_value_t = 0
    )]
    retries: u32,

    #[command(flatten)]
    proxy: ProxyArgs,

    #[command(flatten)]
    tls: TlsArgs,

    /// The server starts each connection with a banner line naming its back
    /// end (echo-server --banner): read it, print it in place of "server",
    /// and verify the echo after it
    #[arg(value_parser = switch, env = "ECHO_CLIENT_BANNER", long)]
    banner: bool,

    #[command(flatten)]
    verbosity: Verbosity,

    /// Print shell completions for SHELL (bash, zsh, fish, elvish,
    /// powershell) and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) and exit; with DIR, write it and one page
    /// per subcommand into DIR instead
    #[arg(long, value_name = "DIR", num_args = 0..=1, exclusive = true)]
    man: Option<Option<std::path::PathBuf>>,
}

/// -v and -q, accepted before or after a subcommand.
/// TLS options for tls: endpoints.
#[derive(Debug, Clone, Copy, clap::Args)]
struct TlsArgs {
    /// tls: endpoints: accept any server certificate, unverified (for
    /// self-signed test servers; said on standard error). Prefer
    /// trustRoots=CA.pem, which echo-server --self-signed writes
    #[arg(value_parser = switch, env = "ECHO_CLIENT_INSECURE", long)]
    insecure: bool,
}

impl TlsArgs {
    /// The connector for `endpoint`, or a usage error (exit 2) for
    /// --insecure without TLS; warns on standard error when insecure.
    fn connector(
        self,
        endpoint: &ClientEndpoint,
        subcommand: Option<&str>,
    ) -> Result<Connector, ClientError> {
        if self.insecure {
            if !matches!(endpoint, ClientEndpoint::Tls { .. }) {
                usage_error(
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
struct ProxyArgs {
    /// Start each connection with a PROXY header, version v1 (text) or v2
    /// (binary), declaring this connection's own address as the client's
    #[arg(env = "ECHO_CLIENT_SEND_PROXY", long, value_name = "VERSION", value_parser = proxy_version())]
    send_proxy: Option<u8>,

    /// Declare this client address in the PROXY header instead; when its
    /// family differs from the server's, both go out as TCP6 with the IPv4
    /// one IPv4-mapped (::ffff:a.b.c.d)
    #[arg(
        env = "ECHO_CLIENT_PROXY_SOURCE",
        long,
        value_name = "IP:PORT",
        requires = "send_proxy"
    )]
    proxy_source: Option<std::net::SocketAddr>,
}

impl ProxyArgs {
    fn header(self) -> Option<SendProxy> {
        self.send_proxy.map(|version| SendProxy {
            version,
            source: self.proxy_source,
        })
    }
}

fn request_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.001..=100_000_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate in requests per second (from 0.001 to 100000000)"
        )),
    }
}

/// `v1` or `v2` (also `1`, `2`): possible values, so that `--help` lists
/// them and the shells complete them.
/// Exits 2 with `message` as clap says a usage error, under the usage of
/// `subcommand` (built, so that it reads `echo-client bench [OPTIONS]`).
fn usage_error(
    subcommand: Option<&str>,
    kind: clap::error::ErrorKind,
    message: impl std::fmt::Display,
) -> ! {
    let mut command = Args::command();
    command.build();
    let command = match subcommand.and_then(|name| command.find_subcommand_mut(name)) {
        Some(sub) => sub,
        None => &mut command,
    };
    command.error(kind, message).exit()
}

fn connect_rate(s: &str) -> Result<f64, String> {
    request_rate(s).map_err(|_| {
        format!("{s:?} is not a rate in connections per second (from 0.001 to 100000000)")
    })
}

fn proxy_version() -> impl clap::builder::TypedValueParser<Value = u8> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("v1").help("text"),
        PossibleValue::new("v2").help("binary"),
        PossibleValue::new("1").hide(true),
        PossibleValue::new("2").hide(true),
    ])
    .map(|s| if s.ends_with('1') { 1 } else { 2 })
}

#[derive(Debug, clap::Args)]
struct Verbosity {
    /// More log output (-v info: one line per finished echo; -vv debug); RUST_LOG overrides
    #[arg(env = "ECHO_CLIENT_VERBOSE", short, long, action = ArgAction::Count, value_parser = level_count, global = true)]
    verbose: u8,

    /// Less log output (-q errors only)
    #[arg(env = "ECHO_CLIENT_QUIET", short, long, action = ArgAction::Count, value_parser = level_count, global = true, conflicts_with = "verbose")]
    quiet: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closed-loop ping-pong load: every connection sends a SIZE-byte message
    /// (different each time), waits for its echo, verifies it, repeats.
    /// Reports requests/s, MB/s, latency percentiles and errors by kind.
    Bench(Box<BenchArgs>),
    /// UDP echo (RFC 862): sends numbered datagrams, waits for the replies
    /// and reports how many were lost, duplicated, reordered or corrupted.
    Udp(UdpArgs),
    /// Draws latency percentile plots (SVG) of .hgrm files (as bench --hgrm
    /// writes them), one line per file, for comparing runs or servers.
    Plot(PlotArgs),
    /// Combines `bench --hlog` files (from several machines, say) into one
    /// summary: requests and latency percentiles, text or JSON.
    Merge(MergeArgs),
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// The .hlog files
    #[arg(required = true, value_name = "FILE.hlog")]
    files: Vec<std::path::PathBuf>,

    /// Print one JSON object instead of text
    #[arg(value_parser = switch, env = "ECHO_MERGE_JSON", long)]
    json: bool,

    /// Also draw a percentile plot (SVG) with one line per file and one for
    /// the merged total
    #[arg(env = "ECHO_MERGE_PLOT", long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
}

/// Reads the .hlog files and prints their sum.
fn run_merge(args: &MergeArgs) -> Result<(), String> {
    use echo_bin::hlog::{TAG_LATENCY, TAG_RAW};
    let mut total: std::collections::BTreeMap<String, hdrhistogram::Histogram<u64>> =
        std::collections::BTreeMap::new();
    let mut series = Vec::new();
    // Files with raw latencies: only open-loop (--rate) runs record them.
    let mut raw_files = 0;
    for path in &args.files {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let logs = echo_bin::hlog::read(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        raw_files += usize::from(logs.contains_key(TAG_RAW));
        for (tag, h) in logs {
            if tag == TAG_LATENCY {
                let label = path.file_stem().map_or_else(
                    || path.display().to_string(),
                    |s| s.to_string_lossy().into_owned(),
                );
                if args.plot.is_some() {
                    series.push(
                        echo_bin::plot::from_histogram(&label, &h).map_err(|e| e.to_string())?,
                    );
                }
            }
            match total.get_mut(&tag) {
                Some(sum) => sum.add(&h).map_err(|e| format!("cannot merge: {e:?}"))?,
                None => {
                    total.insert(tag, h);
                }
            }
        }
    }
    let latency = total
        .get(TAG_LATENCY)
        .ok_or("no latency histograms in these files")?;
    let q = |h: &hdrhistogram::Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1e3;
    let line = |h: &hdrhistogram::Histogram<u64>| {
        format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            q(h, 0.5),
            q(h, 0.9),
            q(h, 0.99),
            q(h, 0.999),
            h.max() as f64 / 1e3
        )
    };
    let json = |h: &hdrhistogram::Histogram<u64>| {
        format!(
            "{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p99_9\":{:.1},\"max\":{:.1}}}",
            q(h, 0.5),
            q(h, 0.9),
            q(h, 0.99),
            q(h, 0.999),
            h.max() as f64 / 1e3
        )
    };
    let raw = total.get(TAG_RAW);
    let out = if args.json {
        let raw = raw.map_or_else(String::new, |h| {
            format!(",\"latency_raw_us\":{},\"raw_files\":{raw_files}", json(h))
        });
        format!(
            "{{\"files\":{},\"requests\":{},\"latency_us\":{}{raw}}}",
            args.files.len(),
            latency.len(),
            json(latency)
        )
    } else {
        let mut text = format!(
            "{} files: {} requests\nlatency us: {}",
            args.files.len(),
            latency.len(),
            line(latency)
        );
        if let Some(h) = raw {
            text.push_str(&format!(
                "\nlatency us (raw, from the actual send; in the {raw_files} of {} files from --rate runs): {}",
                args.files.len(),
                line(h)
            ));
        }
        text
    };
    if !say(out) {
        return Err("cannot write to standard output".into());
    }
    if let Some(path) = &args.plot {
        series.push(echo_bin::plot::from_histogram("merged", latency).map_err(|e| e.to_string())?);
        let title = format!(
            "{} merged runs ({})",
            args.files.len(),
            echo_bin::plot::today()
        );
        let svg = echo_bin::plot::percentile_plot(&title, &series).map_err(|e| e.to_string())?;
        std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct PlotArgs {
    /// The .hgrm files; each line is labelled with its file name
    #[arg(required = true, value_name = "FILE.hgrm")]
    files: Vec<std::path::PathBuf>,

    /// Where to write the SVG
    #[arg(env = "ECHO_PLOT_OUT", short, long, value_name = "FILE.svg")]
    out: std::path::PathBuf,

    /// The plot's title
    #[arg(
        env = "ECHO_PLOT_TITLE",
        long,
        value_name = "TEXT",
        default_value = "round-trip latency"
    )]
    title: String,
}

/// Reads the .hgrm files and writes their plot.
fn run_plot(args: &PlotArgs) -> Result<(), String> {
    let mut series = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let label = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        series.push(echo_bin::plot::from_hgrm(&label, &text).map_err(|e| e.to_string())?);
    }
    let title = format!("{} ({})", args.title, echo_bin::plot::today());
    let svg = echo_bin::plot::percentile_plot(&title, &series).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, svg).map_err(|e| format!("cannot write {}: {e}", args.out.display()))
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Where to connect
    #[arg(env = "ECHO_BENCH_CONNECT", long, value_name = "DESC", default_value = "tcp:localhost:8888", value_parser = stream_endpoint)]
    connect: ClientEndpoint,

    /// Concurrent connections
    #[arg(env = "ECHO_BENCH_CONNECTIONS", short, long, value_name = "N", default_value = "10", value_parser = positive)]
    connections: usize,

    /// Message size in bytes (at most 16 MiB)
    #[arg(env = "ECHO_BENCH_SIZE", short, long, visible_alias = "len", value_name = "BYTES", default_value = "64", value_parser = message_size)]
    size: usize,

    /// Measure for this long [default: 10 unless --requests]
    #[arg(env = "ECHO_BENCH_DURATION", short, long, value_name = "DURATION", value_parser = positive_duration, conflicts_with = "requests")]
    duration: Option<Duration>,

    /// Measure exactly this many requests instead
    #[arg(env = "ECHO_BENCH_REQUESTS", short, long, value_name = "COUNT", value_parser = positive_u64)]
    requests: Option<u64>,

    /// Unmeasured warm-up first
    #[arg(env = "ECHO_BENCH_WARMUP", short, long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    warmup: Duration,

    /// A request whose echo makes no progress for this long fails
    #[arg(env = "ECHO_BENCH_TIMEOUT", long, value_name = "DURATION", default_value = "5s", value_parser = positive_duration)]
    timeout: Duration,

    #[command(flatten)]
    proxy: ProxyArgs,

    #[command(flatten)]
    tls: TlsArgs,

    /// Each connection starts with the server's banner line naming its back
    /// end (echo-server --banner): report connections, requests, p50 and p99
    /// per back end
    #[arg(value_parser = switch, env = "ECHO_BENCH_BANNER", long)]
    banner: bool,

    /// Threads for the load generator, each with its own share of the
    /// connections
    #[arg(env = "ECHO_BENCH_THREADS", long, value_name = "N", default_value = "1", value_parser = positive)]
    threads: usize,

    /// Print one JSON object instead of text
    #[arg(value_parser = switch, env = "ECHO_BENCH_JSON", long)]
    json: bool,

    /// Also write the latency distribution (microseconds) in .hgrm format
    /// (the file is created before the run)
    #[arg(env = "ECHO_BENCH_HGRM", long, value_name = "FILE")]
    hgrm: Option<std::path::PathBuf>,

    /// While measuring, print one line (with --json: one JSON object) per
    /// interval: requests/s, errors, open connections, p50 and p99 of that
    /// interval (for watching a failover or a rolling restart)
    #[arg(env = "ECHO_BENCH_INTERVAL", long, value_name = "DURATION", value_parser = positive_duration)]
    interval: Option<Duration>,

    /// While running, serve live figures for Prometheus over HTTP on this
    /// tcp: endpoint (GET /metrics): requests, errors by kind, open
    /// connections and a latency histogram, e.g. tcp:9091:interface=127.0.0.1
    #[arg(env = "ECHO_BENCH_METRICS", long, value_name = "DESC", value_parser = echo_bin::metrics::metrics_endpoint)]
    metrics: Option<std::net::SocketAddr>,

    /// Open at most this many new connections per second while ramping up
    /// [default: as fast as possible]
    #[arg(env = "ECHO_BENCH_CONNECT_RATE", long, value_name = "CONN/S", value_parser = connect_rate)]
    connect_rate: Option<f64>,

    /// Close each connection after N messages and open a new one in its
    /// place (connection churn: connects per second, like TCP_CRR); the
    /// connect times get their own line
    #[arg(env = "ECHO_BENCH_RECONNECT_EVERY", long, value_name = "N", value_parser = positive_u64, conflicts_with = "rate")]
    reconnect_every: Option<u64>,

    /// Open loop: send this many requests per second in all, spread evenly
    /// over the connections on a fixed schedule, pipelining when echoes are
    /// late; latency then counts from each request's intended send time
    /// (corrected for coordinated omission) as well as from its actual send
    #[arg(env = "ECHO_BENCH_RATE", long, value_name = "REQ/S", value_parser = request_rate, conflicts_with = "requests")]
    rate: Option<f64>,

    /// Open loop: the most requests a connection may have in flight; sends
    /// due beyond it are skipped and counted (the server cannot keep up)
    #[arg(env = "ECHO_BENCH_MAX_IN_FLIGHT", long, value_name = "N", default_value_t = echo_bin::bench::DEFAULT_MAX_IN_FLIGHT, value_parser = positive, requires = "rate")]
    max_in_flight: usize,

    /// Also write the histograms in HdrHistogram's interval-log format
    /// (compressed V2, as Java's HdrHistogram tools read it; values in
    /// nanoseconds), for `echo-client merge` across machines
    #[arg(env = "ECHO_BENCH_HLOG", long, value_name = "FILE")]
    hlog: Option<std::path::PathBuf>,

    /// Also draw the latency percentile plot (SVG) into this file (created
    /// before the run)
    #[arg(env = "ECHO_BENCH_PLOT", long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,

    /// With --interval: also draw requests/s and p99 per interval over time
    /// (SVG) into this file (created before the run)
    #[arg(
        env = "ECHO_BENCH_PLOT_SERIES",
        long,
        value_name = "FILE.svg",
        requires = "interval"
    )]
    plot_series: Option<std::path::PathBuf>,

    /// Instead of load: open N idle connections (each proven live by one
    /// echoed byte) and hold them (for memory measurements)
    #[arg(env = "ECHO_BENCH_IDLE", long, value_name = "N", value_parser = connection_count,
          conflicts_with_all = ["connections", "size", "duration", "requests", "warmup", "threads", "json", "hgrm", "hlog", "plot", "plot_series", "rate", "interval", "connect_rate", "reconnect_every"])]
    idle: Option<usize>,

    /// How long --idle holds the connections
    #[arg(env = "ECHO_BENCH_HOLD", long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration, requires = "idle")]
    hold: Duration,
}

#[derive(Debug, clap::Args)]
struct UdpArgs {
    /// Where to send, as a Twisted endpoint string
    #[arg(env = "ECHO_UDP_CONNECT", long, value_name = "DESC", default_value = "udp:localhost:8888", value_parser = udp_endpoint)]
    connect: ClientEndpoint,

    /// Datagrams to send
    #[arg(env = "ECHO_UDP_COUNT", short = 'c', long, visible_short_alias = 'n', value_name = "N", default_value = "10", value_parser = datagram_count)]
    count: u64,

    /// The text each datagram carries (after the client's 16-byte header)
    #[arg(
        env = "ECHO_UDP_MESSAGE",
        short,
        long,
        value_name = "TEXT",
        default_value = "hello server"
    )]
    message: String,

    /// Send SIZE-byte datagrams (16 to 65507) of generated content instead
    /// of the message
    #[arg(env = "ECHO_UDP_SIZE", short, long, value_name = "BYTES", conflicts_with = "message", value_parser = datagram_size)]
    size: Option<usize>,

    /// Pause between datagrams
    #[arg(env = "ECHO_UDP_INTERVAL", long, value_name = "DURATION", default_value = "10ms", value_parser = duration)]
    interval: Duration,

    /// After the last datagram, wait this long for replies before counting
    /// the missing ones lost
    #[arg(env = "ECHO_UDP_WAIT", long, value_name = "DURATION", default_value = "2s", value_parser = duration)]
    wait: Duration,
}

const AFTER_HELP: &str = "\
Endpoint strings (Twisted's grammar):
  tcp:localhost:8888                          host and port (the default)
  tcp:host=10.0.0.2:port=7:timeout=5          connect timeout in seconds (default 30)
  tcp:example.com:7:bindAddress=10.0.0.1      connect from a given address
  unix:/tmp/echo.sock                         a Unix-domain socket
  udp:localhost:8888                          UDP datagrams (echo-client udp)
  tls:localhost:8443                          TLS, the server's certificate checked
                                              against Mozilla's roots for that name
  tls:localhost:8443:trustRoots=ca.pem        ... against a CA of ours (a PEM file, or a
                                              directory of them; --insecure: none)
  tls:h:8443:certificate=c.pem:privateKey=k.pem
                                              with a client certificate (mutual TLS);
                                              also timeout=, bindAddress= as tcp:

Exit codes: 0 when every echo came back exactly; 1 when any failed (refused,
reset, timed out, truncated, mismatch; for UDP: any datagram lost or
corrupted), with one line per failure on standard error; 2 for usage errors.";

/// The most connections one run may make (each is remembered only while
/// open, but a count beyond this is a typo, not a test).
const MAX_CONNECTIONS: usize = 10_000_000;

/// Default for --concurrency.
const DEFAULT_CONCURRENCY: usize = 256;

fn connection_count(s: &str) -> Result<usize, String> {
    match positive(s)? {
        n if n <= MAX_CONNECTIONS => Ok(n),
        _ => Err(format!("{s} connections is more than {MAX_CONNECTIONS}")),
    }
}

fn datagram_count(s: &str) -> Result<u64, String> {
    connection_count(s)
        .map(|n| n as u64)
        .map_err(|_| format!("{s:?} is not a datagram count from 1 to {MAX_CONNECTIONS}"))
}

fn message_size(s: &str) -> Result<usize, String> {
    match positive_size(s)? {
        n if n <= echo_bin::bench::MAX_LEN => Ok(n),
        _ => Err(format!(
            "{s} bytes is larger than {} (16 MiB)",
            echo_bin::bench::MAX_LEN
        )),
    }
}

fn positive_u64(s: &str) -> Result<u64, String> {
    positive(s).map(|n| n as u64)
}

/// A stream endpoint for the message and --stdin modes; a udp: one gets a
/// pointer to `echo-client udp`.
fn stream_endpoint_or_hint(s: &str) -> Result<ClientEndpoint, String> {
    match client_endpoint(s)? {
        ClientEndpoint::Udp { .. } => Err(format!(
            "UDP echo has its own subcommand: echo-client udp --connect {s}"
        )),
        endpoint => Ok(endpoint),
    }
}

fn udp_endpoint(s: &str) -> Result<ClientEndpoint, String> {
    match client_endpoint(s)? {
        endpoint @ ClientEndpoint::Udp { .. } => Ok(endpoint),
        _ => Err("echo-client udp needs a udp: endpoint, such as udp:localhost:8888".into()),
    }
}

/// First pause before retrying a connect; doubles up to `MAX_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(shell) = args.completions {
        print_completions::<Args>(shell);
        return ExitCode::SUCCESS;
    }
    if let Some(dir) = &args.man {
        return print_man::<Args>(dir.as_deref());
    }
    init_logging(
        tracing::Level::WARN,
        args.verbosity.verbose,
        args.verbosity.quiet,
        &[],
    );
    match args.command {
        Some(Command::Bench(bench)) => return run_bench(*bench),
        Some(Command::Merge(merge)) => return exit_code(run_merge(&merge)),
        Some(Command::Plot(plot)) => return exit_code(run_plot(&plot)),
        Some(Command::Udp(udp)) => {
            return block_on(async move {
                match run_udp(&udp).await {
                    Ok(ok) => ok,
                    Err(e) => {
                        complain(format!("echo-client: {e}"));
                        false
                    }
                }
            });
        }
        None => {}
    }
    block_on(run_all(args))
}

/// Exit code 0 for `Ok`; the message and 1 for `Err`.
fn exit_code(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            complain(format!("echo-client: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs `job` on a fresh runtime; exit code 0 when it returns true.
fn block_on(job: impl Future<Output = bool>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            complain(format!("echo-client: cannot start the runtime: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let ok = runtime.block_on(job);
    // A blocked read of standard input (still open after a failed echo)
    // must not hold the exit up: tokio would wait for that thread forever.
    runtime.shutdown_background();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// Runs the message or --stdin mode; true when every echo succeeded.
async fn run_all(args: Args) -> bool {
    let options = ClientOptions {
        config: ClientConfig {
            idle_timeout: Some(args.timeout),
            half_close: args.half_close,
            banner: args.banner,
            ..ClientConfig::default()
        },
        ..ClientOptions::default()
    };
    let connector = match args.tls.connector(&args.connect, None) {
        Ok(connector) => Arc::new(connector.send_proxy(args.proxy.header())),
        Err(e) => {
            complain(format!("echo-client: {e}"));
            return false;
        }
    };
    if args.stdin {
        return match stream_stdin(&connector, args.retries, options).await {
            Ok(()) => true,
            Err(e) => {
                complain(format!("echo-client: {e}"));
                false
            }
        };
    }
    let message = match args.size {
        Some(size) => Bytes::from(generated(size)),
        None => Bytes::from(args.message.clone().into_bytes()),
    };
    let concurrency = args
        .concurrency
        .unwrap_or(DEFAULT_CONCURRENCY)
        .min(args.connections);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 1;
    let mut ok = true;
    // At most `concurrency` connections at once: memory and descriptors
    // stay bounded whatever -c says.
    loop {
        while next <= args.connections && tasks.len() < concurrency {
            let (connector, message) = (Arc::clone(&connector), message.clone());
            let (n, retries) = (next, args.retries);
            tasks.spawn(async move {
                let started = Instant::now();
                let result = async {
                    let connected = connect_with_retries(&connector, retries).await?;
                    echo_message_from(connected, message, options)
                        .await
                        .map_err(Failed::from)
                }
                .await;
                (n, result, started.elapsed())
            });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined {
            Ok((n, Ok((echo, banner)), took)) => {
                tracing::info!(connection = n, bytes = echo.len(), ?took, "echo complete");
                // "from server": the back end's name when it sent a banner.
                let from = banner.map_or_else(
                    || "server".to_owned(),
                    |b| String::from_utf8_lossy(&b).into_owned(),
                );
                let line = if args.size.is_some() {
                    say(format_args!("> from {from}: {} bytes", echo.len()))
                } else {
                    say(format_args!(
                        "> from {from}: {}",
                        String::from_utf8_lossy(&echo)
                    ))
                };
                if !line && ok {
                    complain("echo-client: cannot write to standard output");
                    ok = false;
                }
            }
            Ok((n, Err(e), _)) => {
                complain(format!("echo-client: connection {n}: {e}"));
                ok = false;
            }
            Err(e) => {
                complain(format!("echo-client: a connection task failed: {e}"));
                ok = false;
            }
        }
    }
    ok
}

/// `size` bytes of varied content (so a server that mixes up bytes shows).
fn generated(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// A failure, with how many connect attempts it took when there were
/// retries.
#[derive(Debug)]
struct Failed {
    error: ClientError,
    attempts: u32,
}

impl From<ClientError> for Failed {
    fn from(error: ClientError) -> Self {
        Self { error, attempts: 1 }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)?;
        if self.attempts > 1 {
            write!(f, " (gave up after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

async fn stream_stdin(
    connector: &Connector,
    retries: u32,
    options: ClientOptions,
) -> Result<(), Failed> {
    let connected = connect_with_retries(connector, retries).await?;
    let client = EchoClient::streaming(options.config);
    let mut pipe = Pipe::new(Some(tokio::io::stdin()), tokio::io::stdout());
    let summary = run(connected, client, &mut pipe, options).await?;
    if let Some(name) = pipe.banner() {
        tracing::info!(backend = %String::from_utf8_lossy(name), "banner");
    }
    tracing::info!(
        sent = summary.sent,
        received = summary.received,
        "echo complete"
    );
    Ok(())
}

/// Sends the datagrams and accounts for the replies; true when every one
/// came back unchanged.
async fn run_udp(args: &UdpArgs) -> Result<bool, String> {
    let body = match args.size {
        None => Bytes::from(args.message.clone().into_bytes()),
        Some(size) => Bytes::from(generated(size.saturating_sub(UDP_CLIENT_HEADER))),
    };
    let config = UdpClientConfig {
        count: args.count,
        interval: args.interval,
        wait: args.wait,
    };
    let client = match UdpEchoClient::new(body, config, now()) {
        Ok(client) => client,
        // A message that cannot fit a datagram is a usage error.
        Err(e) => {
            usage_error(Some("udp"), clap::error::ErrorKind::ValueValidation, e);
        }
    };
    let (socket, server) = connect_udp(&args.connect)
        .await
        .map_err(|e| e.to_string())?;
    let text = args.size.is_none();
    let mut printing = true;
    let report = udp_echo(&socket, server, client, |event| match event {
        UdpClientEvent::Reply { body, .. } if printing => {
            printing = if text {
                say(format_args!(
                    "> from server: {}",
                    String::from_utf8_lossy(body)
                ))
            } else {
                say(format_args!(
                    "> from server: {} bytes",
                    body.len() + UDP_CLIENT_HEADER
                ))
            };
        }
        UdpClientEvent::Duplicate { seq } => tracing::warn!(seq, "duplicate datagram"),
        UdpClientEvent::Corrupt { len } => tracing::warn!(len, "corrupted datagram"),
        _ => {}
    })
    .await
    .map_err(|e| e.to_string())?;
    complain(udp_summary(&report));
    if !printing {
        return Err("cannot write to standard output".into());
    }
    Ok(report.is_complete())
}

/// The one-line account of a UDP run, for standard error.
fn udp_summary(r: &UdpReport) -> String {
    let rtt = match (r.min_rtt, r.max_rtt) {
        (Some(min), Some(max)) => format!("; round trip {min:.1?} to {max:.1?}"),
        _ => String::new(),
    };
    format!(
        "udp: {} sent, {} back, {} lost, {} duplicated, {} reordered, {} corrupted{rtt}",
        r.sent, r.received, r.lost, r.duplicates, r.reordered, r.corrupt
    )
}

/// Connects (a TLS handshake and a PROXY header included), retrying
/// refused or timed-out attempts with bounded back-off; a failed TLS
/// handshake is not retried.
async fn connect_with_retries(
    connector: &Connector,
    retries: u32,
) -> Result<Connected<AnyStream>, Failed> {
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match connector.connect().await {
            Ok(connected) => return Ok(connected),
            Err(
                e @ (ClientError::Refused { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::Connect { .. }),
            ) if attempt <= retries => {
                tracing::info!(error = %e, attempt, retry_in = ?pause, "connect failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
            Err(error) => {
                return Err(Failed {
                    error,
                    attempts: attempt,
                });
            }
        }
    }
}

/// Creates an output file, if one was asked for.
/// An output file, created before the run so that a bad path fails at
/// once, and removed again unless it was written: no failed run leaves an
/// empty file behind.
struct OutputFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    written: bool,
}

impl OutputFile {
    fn create(path: Option<&std::path::Path>) -> Result<Option<Self>, String> {
        let Some(path) = path else {
            return Ok(None);
        };
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Some(Self {
            file,
            path: path.to_owned(),
            written: false,
        }))
    }

    /// Writes what `make` makes into the file, or says why it could not.
    fn fill(
        &mut self,
        make: impl FnOnce(&mut std::fs::File) -> Result<(), String>,
    ) -> Result<(), String> {
        make(&mut self.file).map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.written = true;
        Ok(())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn run_bench(args: BenchArgs) -> ExitCode {
    if let Some(n) = args.idle {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                complain(format!("echo-client: cannot start the runtime: {e}"));
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        return match runtime.block_on(echo_bin::bench::idle(&args.connect, n, args.hold)) {
            Ok(open) => {
                if say(format_args!(
                    "held {open} idle connections for {:?}",
                    args.hold
                )) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_FAILURE)
                }
            }
            Err(e) => {
                complain(format!("echo-client: {e}"));
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    // Checks --insecure and loads the TLS files once before the run, so a
    // bad path fails at once with its own message.
    if let Err(e) = args.tls.connector(&args.connect, Some("bench")) {
        complain(format!("echo-client: {e}"));
        return ExitCode::from(EXIT_FAILURE);
    }
    let mut config = echo_bin::bench::BenchConfig {
        endpoint: args.connect,
        connections: args.connections,
        len: args.size,
        duration: args
            .duration
            .or(args.requests.is_none().then_some(Duration::from_secs(10))),
        requests: args.requests,
        warmup: args.warmup,
        timeout: args.timeout,
        send_proxy: args.proxy.header(),
        insecure: args.tls.insecure,
        rate: args.rate,
        max_in_flight: args.max_in_flight,
        interval: args.interval,
        connect_rate: args.connect_rate,
        reconnect_every: args.reconnect_every,
        banner: args.banner,
        live: None,
    };
    if let Err(e) = config.check() {
        usage_error(Some("bench"), clap::error::ErrorKind::ValueValidation, e);
    }
    // Open the output files first: a bad path must not cost a whole run.
    let outputs = (|| {
        Ok::<_, String>((
            OutputFile::create(args.hgrm.as_deref())?,
            OutputFile::create(args.hlog.as_deref())?,
            OutputFile::create(args.plot.as_deref())?,
            OutputFile::create(args.plot_series.as_deref())?,
        ))
    })();
    let (mut hgrm, mut hlog, mut plot, mut series_file) = match outputs {
        Ok(files) => files,
        Err(e) => {
            complain(format!("echo-client: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if let Some(addr) = args.metrics {
        match serve_live(addr) {
            Ok(live) => config.live = Some(live),
            Err(e) => {
                complain(format!("echo-client: {e:#}"));
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }
    let title = format!(
        "echo-client bench: {} connections x {} B{}, {}, {}",
        config.connections,
        config.len,
        config.rate.map_or_else(String::new, |r| format!(
            " at {} req/s",
            echo_bin::bench::rate_text(r)
        )),
        config.duration.map_or_else(
            || format!("{} requests", config.requests.unwrap_or(0)),
            |d| format!("{d:?}")
        ),
        echo_bin::plot::today()
    );
    let json = args.json;
    let mut intervals = Vec::new();
    let mut on_interval = |i: &echo_bin::bench::Interval| {
        let _ = say(if json { i.json() } else { i.text() });
        intervals.push((
            i.elapsed.as_secs_f64(),
            i.requests as f64 / i.seconds.max(1e-9),
            i.p99_us,
        ));
    };
    let report = match echo_bin::bench::run(config, args.threads, &mut on_interval) {
        Ok(report) => report,
        Err(e) => {
            complain(format!("echo-client: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let printed = if args.json {
        say(report.json())
    } else {
        say(report.text())
    };
    if !printed {
        complain("echo-client: cannot write the report to standard output");
        return ExitCode::from(EXIT_FAILURE);
    }
    let write = |e: std::io::Error| e.to_string();
    let mut written = Ok(());
    if let Some(out) = hgrm.as_mut() {
        written = written.and_then(|()| {
            out.fill(|f| std::io::Write::write_all(f, report.hgrm().as_bytes()).map_err(write))
        });
    }
    if let Some(out) = hlog.as_mut() {
        let start = std::time::SystemTime::now() - report.elapsed;
        let mut histograms = vec![(echo_bin::hlog::TAG_LATENCY, &report.latency)];
        if let Some(open) = &report.open_loop {
            histograms.push((echo_bin::hlog::TAG_RAW, &open.raw));
        }
        written = written.and_then(|()| {
            out.fill(|f| echo_bin::hlog::write(f, &title, start, report.elapsed, &histograms))
        });
    }
    if let Some(out) = plot.as_mut() {
        let drawn = match &report.open_loop {
            None => echo_bin::plot::from_histogram("round trip", &report.latency).map(|s| vec![s]),
            Some(open) => echo_bin::plot::from_histogram(
                "corrected (from the intended send)",
                &report.latency,
            )
            .and_then(|c| {
                echo_bin::plot::from_histogram("raw (from the actual send)", &open.raw)
                    .map(|r| vec![c, r])
            }),
        }
        .and_then(|series| echo_bin::plot::percentile_plot(&title, &series));
        written = written.and_then(|()| {
            out.fill(|f| {
                let svg = drawn.map_err(|e| e.to_string())?;
                std::io::Write::write_all(f, svg.as_bytes()).map_err(write)
            })
        });
    }
    if let Some(out) = series_file.as_mut() {
        written = written.and_then(|()| {
            out.fill(|f| {
                let svg =
                    echo_bin::plot::series_plot(&title, &intervals).map_err(|e| e.to_string())?;
                std::io::Write::write_all(f, svg.as_bytes()).map_err(write)
            })
        });
    }
    if let Err(e) = written {
        complain(format!("echo-client: {e}"));
        return ExitCode::from(EXIT_FAILURE);
    }
    if report.errors() > 0 {
        complain(format!(
            "echo-client: {} requests failed: {}",
            report.errors(),
            report.failure_summary()
        ));
        return ExitCode::from(EXIT_FAILURE);
    }
    ExitCode::SUCCESS
}

/// `bench --metrics`: serves the run's live figures on `addr` (on a thread
/// of its own) and says where, on standard error (standard output is the
/// report's).
fn serve_live(addr: std::net::SocketAddr) -> anyhow::Result<Arc<echo_bin::bench::Live>> {
    use echo_bin::metrics::{Exposition, Health, LoadCollector, MetricsListener};
    let live = Arc::new(echo_bin::bench::Live::default());
    let listener = MetricsListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.start(
        Exposition::of(LoadCollector(Arc::clone(&live))),
        Arc::new(Health::new()),
    )?;
    complain(format!("echo-client: metrics on http://{bound}/metrics"));
    Ok(live)
}
