//! `echo-server`: an RFC 862 echo server over TCP, TLS, Unix-domain
//! sockets and UDP.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, CommandFactory, Parser};
use echo_bin::{
    EXIT_FAILURE, byte_count, byte_rate, complain, duration, init_logging, level_count, positive,
    positive_duration, positive_size, print_completions, print_man, ratio, say, server_endpoint,
    switch,
};
use echo_core::{
    Cutoff, FaultConfig, ServerConfig, ServerEndpoint, ServerTls, UdpConfig, UdpStats, WaterMarks,
};
use echo_net::{
    AccessList, AnyListener, DriveConfig, EchoServer, IpNet, Issued, KeyKind, ServerOptions,
    ShutdownOutcome, ThrowawayCa, TlsServer, TokioSpawner, bind_udp,
};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use echo_bin::io_model::{self, IoModel};
use echo_bin::metrics::{Exposition, Health, MetricsListener, metrics_endpoint};
use tokio::signal::unix::{SignalKind, signal};

/// Echoes back every byte it receives (RFC 862), over TCP, TLS or
/// Unix-domain sockets, with backpressure, optional connection limits and idle timeouts;
/// and every datagram it receives over UDP, when a udp: endpoint is listed.
///
/// On SIGINT or SIGTERM it stops accepting at once, keeps serving open
/// connections until their peers close or the grace period ends, then
/// flushes what it owes each one, closes them and exits 0. A second signal
/// exits at once.
#[derive(Debug, Parser)]
#[command(name = "echo-server", version, after_help = ENDPOINT_HELP)]
struct Args {
    /// Where to listen, as a Twisted endpoint string (repeat for several,
    /// or separate them with commas)
    #[arg(env = "ECHO_SERVER_LISTEN", 
        short,
        long = "listen",
        value_name = "DESC",
        default_value = "tcp:8888:interface=127.0.0.1",
        value_parser = server_endpoint,
        value_delimiter = ','
    )]
    listen: Vec<ServerEndpoint>,

    /// Refuse new connections while this many are open
    #[arg(env = "ECHO_SERVER_MAX_CONNECTIONS", long, value_name = "N", value_parser = positive)]
    max_connections: Option<usize>,

    /// Close connections with no traffic for this long [default: never]
    #[arg(env = "ECHO_SERVER_IDLE_TIMEOUT", long, value_name = "DURATION", value_parser = positive_duration)]
    idle_timeout: Option<Duration>,

    /// On shutdown, wait this long for open connections to finish
    #[arg(env = "ECHO_SERVER_GRACE", long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    grace: Duration,

    /// Pause reading a connection while more than this many bytes wait to be echoed
    #[arg(env = "ECHO_SERVER_HIGH_WATER", long, value_name = "BYTES", default_value_t = WaterMarks::DEFAULT_HIGH, value_parser = positive_size)]
    high_water: usize,

    /// UDP: datagrams per second each source address may have echoed (in
    /// bursts of one second's worth); 0 for no limit. UDP echo answers
    /// whatever address a datagram claims to come from, so without a limit
    /// anyone could aim it at a third party
    #[arg(env = "ECHO_SERVER_UDP_RATE", long, value_name = "N", default_value_t = UdpConfig::DEFAULT_RATE, value_parser = udp_rate)]
    udp_rate: u32,

    /// Serve TCP on N single-threaded workers, a thread each with its own
    /// listener on the same port (SO_REUSEPORT: the kernel spreads new
    /// connections among them), with no work stealing. 0: one
    /// multi-threaded runtime for everything
    #[arg(env = "ECHO_SERVER_WORKERS", long, value_name = "N", default_value_t = 0, value_parser = worker_count)]
    workers: usize,

    /// What drives the TCP sockets: epoll (tokio's readiness; every
    /// endpoint), uring (io_uring completions, one ring and thread per
    /// listener, or per worker with --workers; tcp: and ssl: endpoints and
    /// their haproxy: forms only; Linux 6.0 or later where no seccomp filter forbids
    /// it, else an error) or auto (io_uring where it works for those
    /// endpoints, epoll for the rest and as the fallback, saying why)
    #[arg(
        env = "ECHO_IO",
        long = "io",
        value_name = "MODEL",
        default_value = "epoll",
        value_enum
    )]
    io: IoModel,

    /// io_uring only: while completions come fast (at least 4 expected in
    /// the window), a turn of the loop waits up to this long for more, so
    /// that one system call serves several (0.16 to 0.33 per echo instead of
    /// 0.4 to 1.3 at 64 B). Each echo may come up to this much later, which a
    /// latency measurement through this server would see. 0: off. At most
    /// 10ms; needs Linux 6.12 (else a warning, and no waiting)
    #[arg(env = "ECHO_SERVER_BATCH_WAIT", long, value_name = "DURATION", default_value = "0", value_parser = io_model::batch_wait)]
    batch_wait: Duration,

    /// Serve only peers in this CIDR block (repeatable; e.g. 10.0.0.0/8,
    /// 2001:db8::/32, 127.0.0.1). Decided on the peer the server reports:
    /// behind a haproxy: endpoint the client its PROXY header declared,
    /// otherwise the socket's peer. Others are closed at once, before any
    /// echo, and counted as denied (apart from the limit's refusals); a
    /// balancer's health checks (PROXY LOCAL/UNKNOWN) are not judged
    #[arg(env = "ECHO_SERVER_ALLOW", long, value_name = "CIDR", value_parser = cidr, value_delimiter = ',')]
    allow: Vec<IpNet>,

    /// Never serve peers in this CIDR block (repeatable; wins over --allow)
    #[arg(env = "ECHO_SERVER_DENY", long, value_name = "CIDR", value_parser = cidr, value_delimiter = ',')]
    deny: Vec<IpNet>,

    /// Send this line at the start of every connection, before echoing:
    /// the back end's name for clients behind a balancer (echo-client
    /// --banner). {hostname}, {pid} and {listen} (the first --listen as
    /// given, without TLS file names) are filled in; at most 256 bytes once
    /// filled. Off by default (plain RFC 862)
    #[arg(env = "ECHO_SERVER_BANNER", long, value_name = "TEXT", value_parser = banner_text)]
    banner: Option<String>,

    /// For ssl: endpoints: make a throw-away CA and a certificate for
    /// localhost, 127.0.0.1, ::1 and each ssl: endpoint's interface (on
    /// every interface: this host's name and addresses) at start, print its SHA-256
    /// fingerprint, write the CA certificate to a file in the temporary
    /// directory (removed at a clean shutdown) and print the client command
    /// that trusts it (no files needed; the endpoints must not name
    /// privateKey or certKey)
    #[arg(value_parser = switch, env = "ECHO_SERVER_SELF_SIGNED", long, help_heading = TLS)]
    self_signed: bool,

    /// ssl: endpoints: close a connection whose TLS handshake has not
    /// finished after this long (counted as a failed handshake)
    #[arg(env = "ECHO_SERVER_HANDSHAKE_TIMEOUT", long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration, help_heading = TLS)]
    handshake_timeout: Duration,

    /// Log a line with open connections, accepted, refused, bytes in and
    /// out, and connections lost by reason since the last line, this often
    /// (e.g. 10s); nothing when nothing happened
    #[arg(env = "ECHO_SERVER_STATS_INTERVAL", long, value_name = "DURATION", value_parser = positive_duration)]
    stats_interval: Option<Duration>,

    /// Serve Prometheus metrics (GET /metrics: the stats line's counters),
    /// /healthz (200 while alive) and /readyz (503 from the moment a
    /// shutdown begins) over HTTP on this tcp: endpoint, e.g.
    /// tcp:9090:interface=127.0.0.1 (tcp:9090 is every interface). Off by
    /// default
    #[arg(env = "ECHO_SERVER_METRICS", long, value_name = "DESC", value_parser = metrics_endpoint)]
    metrics: Option<SocketAddr>,

    /// Echo every received chunk this long after it arrived (e.g. 50ms);
    /// delayed bytes count against --high-water
    #[arg(env = "ECHO_SERVER_DELAY", long, value_name = "DURATION", value_parser = duration, help_heading = MISBEHAVE)]
    delay: Option<Duration>,

    /// Add a random extra delay of up to this much per chunk (order kept)
    #[arg(env = "ECHO_SERVER_JITTER", long, value_name = "DURATION", value_parser = duration, help_heading = MISBEHAVE)]
    jitter: Option<Duration>,

    /// Echo at most this many bytes per second per connection (e.g. 1MB/s,
    /// 64KiB/s)
    #[arg(env = "ECHO_SERVER_THROTTLE", long, value_name = "RATE", value_parser = byte_rate, help_heading = MISBEHAVE)]
    throttle: Option<u64>,

    /// Echo this many bytes (e.g. 1000, 64KiB), then close cleanly
    #[arg(env = "ECHO_SERVER_CLOSE_AFTER", long, value_name = "BYTES", value_parser = byte_count, group = "cutoff", help_heading = MISBEHAVE)]
    close_after: Option<u64>,

    /// Echo this many bytes, then reset the connection (RST)
    #[arg(env = "ECHO_SERVER_RESET_AFTER", long, value_name = "BYTES", value_parser = byte_count, group = "cutoff", help_heading = MISBEHAVE)]
    reset_after: Option<u64>,

    /// Echo this many bytes, then stop reading and echoing but keep the
    /// connection open (a black hole) until --idle-timeout, if any
    #[arg(env = "ECHO_SERVER_STALL_AFTER", long, value_name = "BYTES", value_parser = byte_count, group = "cutoff", help_heading = MISBEHAVE)]
    stall_after: Option<u64>,

    /// Apply the cut-off above to this share of connections only (0 to 1),
    /// chosen reproducibly by --seed
    #[arg(env = "ECHO_SERVER_FAULT_RATIO", long, value_name = "P", default_value = "1", value_parser = ratio, requires = "cutoff", help_heading = MISBEHAVE)]
    fault_ratio: u32,

    /// Seed for --fault-ratio's choice of connections and for --jitter
    #[arg(env = "ECHO_SERVER_SEED", long, value_name = "N", default_value_t = 0, help_heading = MISBEHAVE)]
    seed: u64,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(env = "ECHO_SERVER_VERBOSE", short, long, action = ArgAction::Count, value_parser = level_count)]
    verbose: u8,

    /// Less log output (-q warnings only, -qq errors only)
    #[arg(env = "ECHO_SERVER_QUIET", short, long, action = ArgAction::Count, value_parser = level_count, conflicts_with = "verbose")]
    quiet: u8,

    /// Print shell completions for SHELL (bash, zsh, fish, elvish,
    /// powershell) and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) and exit; with DIR, write it and one page
    /// per subcommand into DIR instead
    #[arg(long, value_name = "DIR", num_args = 0..=1, exclusive = true)]
    man: Option<Option<std::path::PathBuf>>,
}

/// The help heading of the TLS options.
const TLS: &str = "TLS (ssl: endpoints)";

/// The help heading of the fault knobs.
const MISBEHAVE: &str = "Misbehaving on purpose (for testing proxies and clients)";

fn banner_text(s: &str) -> Result<String, String> {
    if s.contains(['\n', '\r']) || s.len() > echo_core::MAX_BANNER {
        return Err(format!(
            "a banner is one line of at most {} bytes",
            echo_core::MAX_BANNER
        ));
    }
    Ok(s.to_owned())
}

/// The banner with its placeholders filled in, kept for the process's
/// life (the core takes a `&'static str`); too long once filled, a usage
/// error's message.
fn banner(args: &Args) -> Result<Option<&'static str>, String> {
    let Some(text) = args.banner.as_deref() else {
        return Ok(None);
    };
    let listen = args.listen.first().map(public).unwrap_or_default();
    let filled = text
        .replace("{hostname}", &hostname())
        .replace("{pid}", &std::process::id().to_string())
        .replace("{listen}", &listen);
    if filled.len() > echo_core::MAX_BANNER {
        return Err(format!(
            "--banner is {} bytes once its placeholders are filled in ({filled:?}); a banner is at most {} bytes",
            filled.len(),
            echo_core::MAX_BANNER
        ));
    }
    Ok(Some(Box::leak(filled.into_boxed_str())))
}

/// This machine's host name.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// `endpoint` as every client may read it: the canonical form without the
/// TLS files (key, certificate and CA paths are nobody else's business).
fn public(endpoint: &ServerEndpoint) -> String {
    match endpoint {
        ServerEndpoint::Ssl {
            port,
            interface,
            backlog,
            tls,
        } => {
            let mut bare = tls.clone();
            bare.private_key = None;
            bare.cert_key = None;
            bare.extra_cert_chain = None;
            bare.ca_certs = None;
            bare.dh_parameters = None;
            ServerEndpoint::Ssl {
                port: *port,
                interface: *interface,
                backlog: *backlog,
                tls: bare,
            }
            .to_string()
        }
        ServerEndpoint::Haproxy(inner) => format!("haproxy:{}", public(inner)),
        other => other.to_string(),
    }
}

/// Usage errors that need more than one flag to see (exit 2).
fn check_usage(args: &Args) -> Result<(), String> {
    if let Some(metrics) = args.metrics
        && let Some(listen) = echo_bin::metrics::collision(metrics, &args.listen)
    {
        return Err(echo_bin::metrics::MetricsError::Collides {
            metrics: metrics.to_string(),
            listen: listen.to_string(),
        }
        .to_string());
    }
    if args.self_signed {
        let ssl: Vec<&ServerTls> = args.listen.iter().filter_map(ssl_of).collect();
        if ssl.is_empty() {
            return Err(
                "--self-signed is for ssl: endpoints, and no --listen is one (try --listen ssl:8443 --self-signed)"
                    .into(),
            );
        }
        if ssl.iter().any(|tls| {
            tls.private_key.is_some() || tls.cert_key.is_some() || tls.extra_cert_chain.is_some()
        }) {
            return Err(
                "--self-signed makes the certificate, and an ssl: endpoint names its own files: leave out --self-signed, or privateKey/certKey/extraCertChain"
                    .into(),
            );
        }
    }
    io_model::check_usage(args.io, &args.listen)?;
    if args.io == IoModel::Epoll && !args.batch_wait.is_zero() {
        return Err(
            "--batch-wait is a wait of the io_uring loop, and --io epoll has none: use --io uring or --io auto, or leave out --batch-wait"
                .into(),
        );
    }
    banner(args).map(|_| ())
}

/// The TLS settings of an `ssl:` or `haproxy:ssl:` endpoint.
fn ssl_of(endpoint: &ServerEndpoint) -> Option<&ServerTls> {
    match endpoint {
        ServerEndpoint::Ssl { tls, .. } => Some(tls),
        ServerEndpoint::Haproxy(inner) => ssl_of(inner),
        _ => None,
    }
}

fn cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{s:?} is not an IP address or CIDR block such as 10.0.0.0/8"))
}

impl Args {
    /// The fault knobs as the core takes them.
    fn faults(&self) -> FaultConfig {
        let cutoff = match (self.close_after, self.reset_after, self.stall_after) {
            (Some(n), _, _) => Some(Cutoff::CloseAfter(n)),
            (_, Some(n), _) => Some(Cutoff::ResetAfter(n)),
            (_, _, Some(n)) => Some(Cutoff::StallAfter(n)),
            _ => None,
        };
        FaultConfig {
            delay: self.delay.unwrap_or_default(),
            jitter: self.jitter.unwrap_or_default(),
            throttle: self.throttle,
            cutoff,
            cutoff_per_million: self.fault_ratio,
            seed: self.seed,
        }
    }
}

const ENDPOINT_HELP: &str = "\
Endpoint strings (Twisted's grammar):
  tcp:8888                              port 8888 on every IPv4 interface
  tcp:port=8888:interface=127.0.0.1     loopback only (the default)
  tcp6:8888                             every IPv6 interface
  tcp:0:interface=127.0.0.1             a free port, printed at start
  unix:/tmp/echo.sock:mode=660          a Unix-domain socket
  udp:8888:interface=127.0.0.1          UDP echo (only when listed; see --udp-rate)
  haproxy:tcp:8888                      behind a load balancer: each connection starts
                                        with a PROXY header (v1 or v2), whose client
                                        is the peer logged and checked by --allow/--deny
  ssl:8443:privateKey=key.pem:certKey=cert.pem
                                        TLS (Twisted's names; certKey defaults to the key
                                        file, which defaults to server.pem); also
                                        extraCertChain=PEM, sslmethod=TLSv1_2_METHOD
                                        or TLSv1_3_METHOD, and caCerts=CA.pem (ours) to
                                        require client certificates from that CA
  ssl:8443 --self-signed                TLS with a throw-away certificate
  haproxy:ssl:8443:...                  a PROXY header, then TLS (as HAProxy sends it)

Exit codes: 0 after a clean shutdown, 1 when listening fails, 2 for usage errors.";

/// Most `--workers` (one thread each).
const MAX_WORKERS: usize = 1024;

fn worker_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= MAX_WORKERS => Ok(n),
        _ => Err(format!(
            "{s:?} is not a worker count from 0 to {MAX_WORKERS}"
        )),
    }
}

fn udp_rate(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| {
        format!(
            "{s:?} is not a whole number of datagrams per second from 0 (no limit) to {}",
            u32::MAX
        )
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(shell) = args.completions {
        print_completions::<Args>(shell);
        return ExitCode::SUCCESS;
    }
    if let Some(dir) = &args.man {
        return print_man::<Args>(dir.as_deref());
    }
    if let Err(message) = check_usage(&args) {
        Args::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit();
    }
    // The stats lines --stats-interval asks for are written under -q too.
    let stats: &[&str] = if args.stats_interval.is_some() {
        &[echo_bin::STATS_DIRECTIVE]
    } else {
        &[]
    };
    init_logging(tracing::Level::INFO, args.verbose, args.quiet, stats);
    let runtime = match echo_bin::runtime::server_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            complain(format!("echo-server: cannot start the runtime: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            complain(format!("echo-server: {e:#}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let options = ServerOptions {
        config: ServerConfig {
            max_connections: args.max_connections,
            idle_timeout: args.idle_timeout,
            faults: args.faults(),
            banner: banner(&args).map_err(anyhow::Error::msg)?,
        },
        marks: WaterMarks::new(args.high_water, 0)?,
        count_traffic: args.stats_interval.is_some() || args.metrics.is_some(),
        drive: DriveConfig {
            handshake_timeout: args.handshake_timeout,
            batch_wait: args.batch_wait,
            ..DriveConfig::default()
        },
    };
    let self_signed = if args.self_signed {
        Some(SelfSigned::make(&args.listen)?)
    } else {
        None
    };
    // Install signal handlers before announcing that we listen.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let server = EchoServer::new(options);
    let access = AccessList {
        allow: args.allow.clone(),
        deny: args.deny.clone(),
    };
    if !access.is_open() {
        server.restrict(access);
    }
    let uring = io_model::resolve(args.io).map_err(anyhow::Error::msg)?;
    if !uring && !args.batch_wait.is_zero() {
        // --io auto fell back: the wait asked for does not exist here.
        tracing::warn!("--batch-wait has no effect: the server runs on epoll");
    }
    let mut listeners = Vec::new();
    let mut rings: Vec<io_model::Ring> = Vec::new();
    // ssl: listeners on rings, for the self-signed certificate's hint.
    let mut ring_tls = Vec::new();
    let mut shards: Vec<Vec<std::net::TcpListener>> = Vec::new();
    let mut udp_sockets = Vec::new();
    let mut descriptions = Vec::new();
    for endpoint in &args.listen {
        let on_ring = io_model::uring_endpoint(endpoint).filter(|_| uring);
        let description = if let Some(ring) = on_ring {
            let group = AnyListener::bind_tcp_shards(&ring.tcp, args.workers.max(1))
                .with_context(|| format!("cannot listen on {endpoint}"))?;
            let addr = group[0].local_addr()?;
            let ServerEndpoint::Tcp { backlog, .. } = ring.tcp else {
                unreachable!("io_uring listens on tcp: sockets")
            };
            let tls = match ring.tls {
                Some(tls) => Some(tls_server(tls, self_signed.as_ref(), addr.port())?),
                None => None,
            };
            let canonical = match ring.tls {
                Some(tls) => ServerEndpoint::Ssl {
                    port: addr.port(),
                    interface: addr.ip(),
                    backlog,
                    tls: Box::new(tls.clone()),
                },
                None => ServerEndpoint::Tcp {
                    port: addr.port(),
                    interface: addr.ip(),
                    backlog,
                },
            };
            if tls.is_some() && !ring.proxied {
                ring_tls.push(addr);
            }
            rings.extend(group.into_iter().map(|l| (l, ring.proxied, tls.clone())));
            if ring.proxied {
                format!("haproxy:{canonical} (io_uring)")
            } else {
                format!("{canonical} (io_uring)")
            }
        } else if let (ServerEndpoint::Tcp { backlog, .. }, 1..) = (endpoint, args.workers) {
            let group = AnyListener::bind_tcp_shards(endpoint, args.workers)
                .with_context(|| format!("cannot listen on {endpoint}"))?;
            let addr = group[0].local_addr()?;
            shards.push(group);
            ServerEndpoint::Tcp {
                port: addr.port(),
                interface: addr.ip(),
                backlog: *backlog,
            }
            .to_string()
        } else if let ServerEndpoint::Udp { interface, .. } = endpoint {
            let socket = bind_udp(endpoint)
                .await
                .with_context(|| format!("cannot listen on {endpoint}"))?;
            let port = socket.local_addr()?.port();
            udp_sockets.push(socket);
            ServerEndpoint::Udp {
                port,
                interface: *interface,
            }
            .to_string()
        } else {
            let listener = AnyListener::bind(endpoint)
                .await
                .with_context(|| format!("cannot listen on {endpoint}"))?;
            let description = listener.describe(endpoint)?;
            let (proxied, inner) = match endpoint {
                ServerEndpoint::Haproxy(inner) => (true, &**inner),
                other => (false, other),
            };
            let mode = match inner {
                ServerEndpoint::Ssl { tls, port, .. } => Mode::Tls {
                    tls: tls_server(tls, self_signed.as_ref(), *port)?,
                    proxied,
                },
                _ if proxied => Mode::Proxied,
                _ => Mode::Plain,
            };
            listeners.push((listener, mode));
            description
        };
        descriptions.push(description);
    }
    let metrics = args.metrics.map(MetricsListener::bind).transpose()?;
    // Announce only once every endpoint is bound: a later failure must not
    // follow "listening on" lines for endpoints that are then closed.
    for description in descriptions {
        if !say(format_args!("listening on {description}")) {
            tracing::warn!(%description, "cannot write to standard output; listening anyway");
        }
    }
    if let Some(metrics) = &metrics {
        let addr = metrics.local_addr()?;
        say(format_args!(
            "metrics on http://{addr}/metrics (and /healthz, /readyz)"
        ));
    }
    if let Some(made) = &self_signed {
        made.announce(&listeners, &ring_tls);
    }
    let _ = std::io::stdout().flush(); // a closed stdout must not stop the server
    for (listener, mode) in listeners {
        let server = server.clone();
        match mode {
            Mode::Plain => tokio::spawn(async move { server.serve(listener, TokioSpawner).await }),
            Mode::Proxied => {
                tokio::spawn(async move { server.serve_proxied(listener, TokioSpawner).await })
            }
            Mode::Tls { tls, proxied } => tokio::spawn(async move {
                server.serve_tls(listener, TokioSpawner, tls, proxied).await;
            }),
        };
    }
    let workers = start_workers(&server, shards, args.workers)?;
    let (ring_failed, mut ring_failures) = tokio::sync::mpsc::unbounded_channel();
    let ring_threads =
        io_model::start(&server, rings, &ring_failed).context("cannot start an io_uring thread")?;
    let udp = UdpConfig {
        rate: args.udp_rate,
        ..UdpConfig::default()
    };
    let mut udp_tasks = tokio::task::JoinSet::new();
    for socket in udp_sockets {
        let server = server.clone();
        udp_tasks.spawn(async move { server.serve_udp(socket, udp).await });
    }

    if let Some(every) = args.stats_interval {
        tokio::spawn(log_stats(server.clone(), every));
    }
    let health = Arc::new(Health::new());
    if let Some(metrics) = metrics {
        let source = server.clone();
        metrics.start(
            Exposition::new(move || source.traffic()),
            Arc::clone(&health),
        )?;
    }
    let faults = args.faults();
    if !faults.is_off() {
        tracing::warn!(%faults, "misbehaving on purpose");
    }
    let first = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
        Some(failure) = ring_failures.recv() => {
            server.stop_accepting();
            server.close_all();
            anyhow::bail!(failure);
        }
    };
    // Not ready from this moment: a balancer drains this server while its
    // open connections finish within the grace period.
    health.shutting_down();
    tracing::info!(signal = first, grace = ?args.grace, "shutting down: no longer accepting");
    let outcome = tokio::select! {
        biased;
        _ = sigint.recv() => second_signal(130, self_signed.as_ref()),
        _ = sigterm.recv() => second_signal(143, self_signed.as_ref()),
        outcome = server.shutdown(args.grace) => outcome,
    };
    while let Some(Ok(stats)) = udp_tasks.join_next().await {
        log_udp(&stats);
    }
    for worker in workers.into_iter().chain(ring_threads) {
        // Each ends once no connection is open anywhere, as shutdown did.
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    }
    drop(self_signed); // its CA file with it
    let (accepted, refused) = server.totals();
    match outcome {
        ShutdownOutcome::Drained => {
            tracing::info!(accepted, refused, "all connections finished; bye")
        }
        ShutdownOutcome::GraceExpired { closed } => {
            tracing::info!(
                accepted,
                refused,
                closed,
                "grace period expired; remaining connections closed; bye"
            );
        }
    }
    Ok(())
}

/// What a listener's connections go through before their echo.
enum Mode {
    Plain,
    Proxied,
    Tls { tls: TlsServer, proxied: bool },
}

/// `--self-signed`: a throw-away CA and the server certificate it signed,
/// with the CA written where a client can name it. The file goes with this
/// value: at a clean shutdown, a failed start-up or a second signal alike.
struct SelfSigned {
    server: Issued,
    ca_file: PathBuf,
    names: Vec<String>,
}

/// The names the throw-away certificate always carries.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

impl SelfSigned {
    /// `check_usage` has made sure some endpoint is `ssl:` without files.
    fn make(listen: &[ServerEndpoint]) -> anyhow::Result<Self> {
        let names = certificate_names(listen);
        let ca = ThrowawayCa::new("echo-server throw-away CA", KeyKind::EcdsaP256)?;
        let server = ca.server(&names.iter().map(String::as_str).collect::<Vec<_>>())?;
        let ca_file =
            std::env::temp_dir().join(format!("echo-server-{}-ca.pem", std::process::id()));
        std::fs::write(&ca_file, ca.pem())
            .with_context(|| format!("cannot write the CA certificate to {}", ca_file.display()))?;
        Ok(Self {
            server,
            ca_file,
            names,
        })
    }

    /// Prints the fingerprint, the CA file and a client command per
    /// ssl: endpoint (after the "listening on" lines).
    fn announce(&self, listeners: &[(AnyListener, Mode)], on_rings: &[std::net::SocketAddr]) {
        say(format_args!(
            "self-signed certificate for {}: SHA-256 {}",
            self.names.join(", "),
            self.server.fingerprint()
        ));
        say(format_args!(
            "CA certificate written to {}",
            self.ca_file.display()
        ));
        // Plain ssl: listeners only (a haproxy:ssl: one wants a PROXY
        // header first, which echo-client sends only with --send-proxy).
        let bound = listeners
            .iter()
            .filter_map(|(l, mode)| match mode {
                Mode::Tls { proxied: false, .. } => l.tcp_addr(),
                _ => None,
            })
            .chain(on_rings.iter().copied());
        for addr in bound {
            // A name the certificate carries, that reaches this listener.
            let ip = addr.ip();
            let host = if ip.is_unspecified() || ip == IpAddr::from([127, 0, 0, 1]) {
                "localhost".to_owned()
            } else {
                ip.to_string().replace(':', "\\:")
            };
            let arg = format!(
                "tls:{host}:{}:trustRoots={}",
                addr.port(),
                self.ca_file.display()
            );
            let arg = if arg.contains(['\\', ' ', '\'', '"', '$']) {
                format!("'{}'", arg.replace('\'', "'\\''"))
            } else {
                arg
            };
            say(format_args!("try: echo-client --connect {arg}"));
        }
    }
}

impl Drop for SelfSigned {
    fn drop(&mut self) {
        // Throw-away: gone with the server.
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// What `--self-signed`'s certificate names: localhost and the loopback
/// addresses, each ssl: endpoint's interface, and for one on every
/// interface (0.0.0.0, ::) this host's name and the addresses it resolves
/// to, so that a client can connect by any of them.
fn certificate_names(listen: &[ServerEndpoint]) -> Vec<String> {
    let mut names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let mut add = |name: String| {
        if !names.contains(&name) {
            names.push(name);
        }
    };
    for endpoint in listen {
        let inner = match endpoint {
            ServerEndpoint::Haproxy(inner) => inner,
            other => other,
        };
        let ServerEndpoint::Ssl { interface, .. } = inner else {
            continue;
        };
        if interface.is_unspecified() {
            let host = hostname();
            if let Ok(addrs) = (host.as_str(), 0).to_socket_addrs() {
                for addr in addrs {
                    add(addr.ip().to_canonical().to_string());
                }
            }
            add(host);
        } else {
            add(IpAddr::to_string(interface));
        }
    }
    names
}

/// The TLS side of one ssl: endpoint: its files, or the throw-away
/// certificate (with the endpoint's caCerts, if any, for mutual TLS).
fn tls_server(
    tls: &ServerTls,
    self_signed: Option<&SelfSigned>,
    port: u16,
) -> anyhow::Result<TlsServer> {
    if tls.dh_parameters.is_some() {
        tracing::warn!(
            port,
            "dhParameters is ignored: rustls offers no finite-field Diffie-Hellman suites"
        );
    }
    let Some(made) = self_signed else {
        return TlsServer::from_files(tls).with_context(|| format!("ssl:{port}"));
    };
    let ca = match &tls.ca_certs {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("cannot read {path}"))?),
        None => None,
    };
    TlsServer::from_pem(
        made.server.cert_pem.as_bytes(),
        made.server.key_pem.as_bytes(),
        ca.as_deref(),
        tls.method,
    )
    .and_then(|server| server.with_session_tickets(tls.session_tickets))
    .with_context(|| format!("ssl:{port}"))
}

/// Starts `n` worker threads, each a single-threaded runtime serving its
/// share of every TCP endpoint's listeners (`shards[endpoint][worker]`)
/// until the server stops accepting and no connection is open.
fn start_workers(
    server: &EchoServer,
    shards: Vec<Vec<std::net::TcpListener>>,
    n: usize,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut per_worker: Vec<Vec<std::net::TcpListener>> = (0..n).map(|_| Vec::new()).collect();
    for group in shards {
        for (i, listener) in group.into_iter().enumerate() {
            per_worker[i].push(listener);
        }
    }
    let mut handles = Vec::with_capacity(n);
    for (i, mine) in per_worker.into_iter().enumerate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a worker runtime")?;
        let server = server.clone();
        let handle = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut loops = tokio::task::JoinSet::new();
                    for listener in mine {
                        match AnyListener::adopt(listener) {
                            Ok(listener) => {
                                let server = server.clone();
                                loops.spawn(
                                    async move { server.serve(listener, TokioSpawner).await },
                                );
                            }
                            Err(error) => {
                                tracing::error!(%error, "worker cannot adopt its listener")
                            }
                        }
                    }
                    while loops.join_next().await.is_some() {}
                    // The accept loops end at shutdown; this worker's
                    // connections live on this runtime until they finish.
                    server.wait_idle().await;
                });
            })
            .context("cannot start a worker thread")?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Logs what happened since the last line, every `every`, when anything did.
async fn log_stats(server: EchoServer, every: Duration) {
    // From zero, not from a first snapshot: whatever happened between the
    // listening line and this task's start belongs in the first line (a
    // connection refused or a handshake failed at once was lost before).
    let mut last = echo_net::Traffic::default();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticks.tick().await;
        let now = server.traffic();
        let delta = now.since(&last);
        if !delta.is_quiet() {
            tracing::info!(target: echo_bin::STATS_TARGET, "stats {delta}");
        }
        last = now;
    }
}

fn log_udp(stats: &UdpStats) {
    tracing::info!(
        received = stats.received,
        echoed = stats.echoed,
        rate_limited = stats.rate_limited,
        loop_ports = stats.loop_ports,
        not_sent = stats.not_sent,
        "udp datagrams"
    );
}

/// Exits at once; `std::process::exit` runs no destructor, so the
/// throw-away CA file is removed here.
fn second_signal(code: i32, self_signed: Option<&SelfSigned>) -> ! {
    tracing::warn!("second signal: exiting at once");
    if let Some(made) = self_signed {
        let _ = std::fs::remove_file(&made.ca_file);
    }
    std::process::exit(code)
}
