//! `echo-client`: sends bytes to an echo server and verifies the echo.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use echo_core::datagram::client::HEADER;

use bytes::Bytes;
use clap::{ArgAction, Parser, Subcommand};
use echo_bin::{
    EXIT_FAILURE, client_endpoint, complain, datagram_size, init_logging, positive, say, seconds,
    stream_endpoint,
};
use echo_core::{
    ClientConfig, ClientEndpoint, EchoClient, UdpClientConfig, UdpClientEvent, UdpEchoClient,
    UdpReport,
};
use echo_net::{
    AnyStream, ClientError, ClientOptions, Connected, Pipe, connect, connect_udp, echo_message,
    now, run, udp_echo,
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
/// With a udp: endpoint it sends numbered datagrams instead (-n of them,
/// --interval apart), waits --wait for the last replies, and reports how
/// many were lost, duplicated, reordered or corrupted.
#[derive(Debug, Parser)]
#[command(version, after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Where to connect, as a Twisted endpoint string
    #[arg(short, long, value_name = "DESC", default_value = "tcp:localhost:8888", value_parser = client_endpoint)]
    connect: ClientEndpoint,

    /// Concurrent connections, each sending the message (udp: datagrams)
    #[arg(short = 'n', long, value_name = "N", default_value = "10", value_parser = positive)]
    connections: usize,

    /// The message each connection sends
    #[arg(short, long, value_name = "TEXT", default_value = "hello server")]
    message: String,

    /// Stream standard input over one connection instead of sending a message
    #[arg(long, conflicts_with_all = ["connections", "message"])]
    stdin: bool,

    /// Send FIN as soon as the input ends instead of after the whole echo came
    /// back (as `nc -N`). For testing how a server or proxy handles
    /// half-close: servers that take FIN as the end of the connection
    /// (Twisted's default Protocol, socat EXEC, ncat before 7.96 with --exec)
    /// then drop the echo they still owe, and the client says `truncated`
    #[arg(long)]
    half_close: bool,

    /// Fail when an echo is owed and nothing moves for this long
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds)]
    timeout: Duration,

    /// Retry a failed connect this many times, with back-off
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,

    /// UDP: pause between datagrams
    #[arg(long, value_name = "SECS", default_value = "0.01", value_parser = seconds)]
    interval: Duration,

    /// UDP: after the last datagram, wait this long for replies before
    /// counting the missing ones lost
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = seconds)]
    wait: Duration,

    /// UDP: send BYTES-byte datagrams (16 to 65507) of generated content
    /// instead of the message
    #[arg(long, value_name = "BYTES", conflicts_with = "message", value_parser = datagram_size)]
    size: Option<usize>,

    /// More log output (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,

    /// Less log output (-q errors only)
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closed-loop ping-pong load: every connection sends a LEN-byte message
    /// (different each time), waits for its echo, verifies it, repeats.
    /// Reports requests/s, MB/s, latency percentiles and errors.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Where to connect
    #[arg(long, value_name = "DESC", default_value = "tcp:localhost:8888", value_parser = stream_endpoint)]
    connect: ClientEndpoint,

    /// Concurrent connections
    #[arg(short, long, value_name = "CONNS", default_value = "10", value_parser = positive)]
    connections: usize,

    /// Message length in bytes
    #[arg(short, long, value_name = "LEN", default_value = "64", value_parser = positive)]
    len: usize,

    /// Measure for this long [default: 10 unless --requests]
    #[arg(short, long, value_name = "SECS", value_parser = seconds, conflicts_with = "requests")]
    duration: Option<Duration>,

    /// Measure this many requests instead
    #[arg(short, long, value_name = "REQUESTS")]
    requests: Option<u64>,

    /// Unmeasured warm-up first
    #[arg(short, long, value_name = "SECS", default_value = "1", value_parser = seconds)]
    warmup: Duration,

    /// Threads for the load generator, each with its own share of the
    /// connections
    #[arg(long, value_name = "N", default_value = "1", value_parser = positive)]
    threads: usize,

    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,

    /// Also write the latency distribution (microseconds) in .hgrm format
    #[arg(long, value_name = "FILE")]
    hgrm: Option<std::path::PathBuf>,

    /// Instead of load: open N idle connections (each proven live by one
    /// echoed byte) and hold them (for memory measurements)
    #[arg(long, value_name = "N", value_parser = positive)]
    idle: Option<usize>,

    /// How long --idle holds the connections
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds, requires = "idle")]
    hold: Duration,
}

const AFTER_HELP: &str = "\
Endpoint strings (Twisted's grammar):
  tcp:localhost:8888                          host and port (the default)
  tcp:host=10.0.0.2:port=7:timeout=5          connect timeout in seconds (default 30)
  tcp:example.com:7:bindAddress=10.0.0.1      connect from a given address
  unix:/tmp/echo.sock                         a Unix-domain socket
  udp:localhost:8888                          UDP datagrams

Exit codes: 0 when every echo came back exactly; 1 when any failed (refused,
reset, timed out, truncated, mismatch; for UDP: any datagram lost or
corrupted), with one line per failure on standard error; 2 for usage errors.";

/// First pause before retrying a connect; doubles up to `MAX_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(tracing::Level::WARN, args.verbose, args.quiet);
    if let Some(Command::Bench(bench)) = args.command {
        return run_bench(bench);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            complain(format!("echo-client: cannot start the runtime: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let ok = runtime.block_on(run_all(args));
    // A blocked read of standard input (still open after a failed echo)
    // must not hold the exit up: tokio would wait for that thread forever.
    runtime.shutdown_background();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// Runs the chosen mode; true when every echo succeeded.
async fn run_all(args: Args) -> bool {
    let options = ClientOptions {
        config: ClientConfig {
            idle_timeout: Some(args.timeout),
            half_close: args.half_close,
            ..ClientConfig::default()
        },
        ..ClientOptions::default()
    };
    if let ClientEndpoint::Udp { .. } = args.connect {
        return match run_udp(&args).await {
            Ok(ok) => ok,
            Err(e) => {
                complain(format!("echo-client: {e}"));
                false
            }
        };
    }
    if args.stdin {
        return match stream_stdin(&args, options).await {
            Ok(()) => true,
            Err(e) => {
                complain(format!("echo-client: {e}"));
                false
            }
        };
    }
    let message = Bytes::from(args.message.clone().into_bytes());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=args.connections {
        let (endpoint, message) = (args.connect.clone(), message.clone());
        let retries = args.retries;
        tasks.spawn(async move {
            let result = async {
                let connected = connect_with_retries(&endpoint, retries).await?;
                echo_message(connected, message, options).await
            }
            .await;
            (n, result)
        });
    }
    let mut ok = true;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((_, Ok(echo))) => {
                if !say(format_args!(
                    "> from server: {}",
                    String::from_utf8_lossy(&echo)
                )) && ok
                {
                    complain("echo-client: cannot write to standard output");
                    ok = false;
                }
            }
            Ok((n, Err(e))) => {
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

async fn stream_stdin(args: &Args, options: ClientOptions) -> Result<(), ClientError> {
    let connected = connect_with_retries(&args.connect, args.retries).await?;
    let client = EchoClient::streaming(options.config, now());
    let mut pipe = Pipe::new(Some(tokio::io::stdin()), tokio::io::stdout());
    let summary = run(connected, client, &mut pipe, options).await?;
    tracing::info!(
        sent = summary.sent,
        received = summary.received,
        "echo complete"
    );
    Ok(())
}

/// Sends the datagrams and accounts for the replies; true when every one
/// came back unchanged.
async fn run_udp(args: &Args) -> Result<bool, String> {
    if args.stdin {
        return Err("--stdin needs a stream endpoint (tcp: or unix:)".into());
    }
    let body = match args.size {
        None => Bytes::from(args.message.clone().into_bytes()),
        Some(size) => (0..size.saturating_sub(HEADER))
            .map(|i| (i % 251) as u8)
            .collect(),
    };
    let config = UdpClientConfig {
        count: args.connections as u64,
        interval: args.interval,
        wait: args.wait,
    };
    let client = UdpEchoClient::new(body, config, now()).map_err(|e| e.to_string())?;
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
                say(format_args!("> from server: {} bytes", body.len() + HEADER))
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

/// Connects, retrying refused or timed-out attempts with bounded back-off.
async fn connect_with_retries(
    endpoint: &ClientEndpoint,
    retries: u32,
) -> Result<Connected<AnyStream>, ClientError> {
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempt = 0;
    loop {
        match connect(endpoint).await {
            Ok(connected) => return Ok(connected),
            Err(
                e @ (ClientError::Refused { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::Connect { .. }),
            ) if attempt < retries => {
                attempt += 1;
                tracing::info!(error = %e, attempt, retry_in = ?pause, "connect failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
            Err(e) => return Err(e),
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
    let config = echo_bin::bench::BenchConfig {
        endpoint: args.connect,
        connections: args.connections,
        len: args.len,
        duration: args
            .duration
            .or(args.requests.is_none().then_some(Duration::from_secs(10))),
        requests: args.requests,
        warmup: args.warmup,
    };
    let report = match echo_bin::bench::run(config, args.threads) {
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
    if let Some(path) = args.hgrm
        && let Err(e) = std::fs::write(&path, report.hgrm())
    {
        complain(format!("echo-client: cannot write {}: {e}", path.display()));
        return ExitCode::from(EXIT_FAILURE);
    }
    if report.errors > 0 {
        complain(format!(
            "echo-client: {} echoes failed verification or broke",
            report.errors
        ));
        return ExitCode::from(EXIT_FAILURE);
    }
    ExitCode::SUCCESS
}
