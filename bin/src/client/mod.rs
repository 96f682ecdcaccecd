//! `echo-client`: its command line and one module per subcommand (vegeta's
//! `attack`/`report`/`plot`, cargo's `commands/`); the binary only calls
//! [`main`].

mod args;
mod bench;
mod compare;
mod echo;
mod merge;
mod output;
mod plot;
mod udp;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use echo_core::ClientEndpoint;

use crate::{
    EXIT_FAILURE, complain, init_logging, level_count, positive, print_completions, print_man,
    switch,
};
use args::{
    ProxyArgs, TlsArgs, connection_count, message_size, positive_duration, stream_endpoint_or_hint,
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
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// Where to connect, as a Twisted endpoint string (tcp:, unix: or tls:)
    #[arg(env = "ECHO_CLIENT_CONNECT", long, value_name = "DESC", default_value = "tcp:localhost:8888", value_parser = stream_endpoint_or_hint)]
    pub(crate) connect: ClientEndpoint,

    /// Connections, each sending the message and verifying its echo
    #[arg(env = "ECHO_CLIENT_CONNECTIONS", short = 'c', long, visible_short_alias = 'n', value_name = "N", default_value = "10", value_parser = connection_count)]
    pub(crate) connections: usize,

    /// At most this many connections open at once; the rest wait their turn
    /// [default: N, at most 256]
    #[arg(env = "ECHO_CLIENT_CONCURRENCY", long, value_name = "N", value_parser = positive)]
    pub(crate) concurrency: Option<usize>,

    /// The message each connection sends
    #[arg(
        env = "ECHO_CLIENT_MESSAGE",
        short,
        long,
        value_name = "TEXT",
        default_value = "hello server"
    )]
    pub(crate) message: String,

    /// Send SIZE bytes of generated content instead of the message (each
    /// echo is then reported by its size)
    #[arg(env = "ECHO_CLIENT_SIZE", short, long, value_name = "BYTES", conflicts_with = "message", value_parser = message_size)]
    pub(crate) size: Option<usize>,

    /// Stream standard input over one connection instead of sending a message
    #[arg(value_parser = switch, env = "ECHO_CLIENT_STDIN", long, conflicts_with_all = ["connections", "message", "size", "concurrency"])]
    pub(crate) stdin: bool,

    /// Send FIN as soon as the input ends instead of after the whole echo came
    /// back (as `nc -N`). For testing how a server or proxy handles
    /// half-close: servers that take FIN as the end of the connection
    /// (Twisted's default Protocol, socat EXEC, ncat before 7.96 with --exec)
    /// then drop the echo they still owe, and the client says `truncated`
    #[arg(value_parser = switch, env = "ECHO_CLIENT_HALF_CLOSE", long)]
    pub(crate) half_close: bool,

    /// Fail when an echo is owed and nothing moves for this long
    #[arg(env = "ECHO_CLIENT_TIMEOUT", long, value_name = "DURATION", default_value = "30s", value_parser = positive_duration)]
    pub(crate) timeout: Duration,

    /// Retry a failed connect this many times, with back-off
    #[arg(
        env = "ECHO_CLIENT_RETRIES",
        long,
        value_name = "N",
        default_value_t = 0
    )]
    pub(crate) retries: u32,

    #[command(flatten)]
    pub(crate) proxy: ProxyArgs,

    #[command(flatten)]
    pub(crate) tls: TlsArgs,

    /// The server starts each connection with a banner line naming its back
    /// end (echo-server --banner): read it, print it in place of "server",
    /// and verify the echo after it
    #[arg(value_parser = switch, env = "ECHO_CLIENT_BANNER", long)]
    pub(crate) banner: bool,

    #[command(flatten)]
    pub(crate) verbosity: Verbosity,

    /// Print shell completions for SHELL (bash, zsh, fish, elvish,
    /// powershell) and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    pub(crate) completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) and exit; with DIR, write it and one page
    /// per subcommand into DIR instead
    #[arg(long, value_name = "DIR", num_args = 0..=1, exclusive = true)]
    pub(crate) man: Option<Option<std::path::PathBuf>>,
}

/// -v and -q, accepted before or after a subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Verbosity {
    /// More log output (-v info: one line per finished echo; -vv debug); RUST_LOG overrides
    #[arg(env = "ECHO_CLIENT_VERBOSE", short, long, action = ArgAction::Count, value_parser = level_count, global = true)]
    pub(crate) verbose: u8,

    /// Less log output (-q errors only)
    #[arg(env = "ECHO_CLIENT_QUIET", short, long, action = ArgAction::Count, value_parser = level_count, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Closed-loop ping-pong load: every connection sends a SIZE-byte message
    /// (different each time), waits for its echo, verifies it, repeats.
    /// Reports requests/s, MB/s, latency percentiles and errors by kind.
    Bench(Box<bench::BenchArgs>),
    /// UDP echo (RFC 862): sends numbered datagrams, waits for the replies
    /// and reports how many were lost, duplicated, reordered or corrupted.
    Udp(udp::UdpArgs),
    /// Draws latency percentile plots (SVG) of .hgrm files (as bench --hgrm
    /// writes them), one line per file, for comparing runs or servers.
    Plot(plot::PlotArgs),
    /// Combines `bench --hlog` files (from several machines, say) into one
    /// summary: requests and latency percentiles, text or JSON.
    Merge(merge::MergeArgs),
    /// Compares two bench results (--json or --save files): each figure
    /// side by side with the ratio and a verdict; exit 99 when NEW is worse
    /// than BASE beyond the tolerance.
    Compare(compare::CompareArgs),
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
corrupted), with one line per failure on standard error; 2 for usage errors;
99 when a bench or merge --threshold was breached, or compare found NEW worse
than BASE beyond its tolerance.";

/// Exits 2 with `message` as clap says a usage error, under the usage of
/// `subcommand` (built, so that it reads `echo-client bench [OPTIONS]`).
pub(crate) fn usage_error(
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

/// Parses the command line and runs what it asks for.
#[must_use]
pub fn main() -> ExitCode {
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
    // Every subcommand's `run` gives its exit code.
    match args.command {
        Some(Command::Bench(bench)) => bench::run(*bench),
        Some(Command::Compare(compare)) => compare::run(&compare),
        Some(Command::Merge(merge)) => merge::run(&merge),
        Some(Command::Plot(plot)) => plot::run(&plot),
        Some(Command::Udp(udp)) => udp::run(&udp),
        None => echo::run(args),
    }
}

/// Exit code 0 for `Ok`; the message and 1 for `Err`.
pub(crate) fn exit_code(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            complain(format!("echo-client: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs `job` on a fresh runtime; exit code 0 when it returns true.
pub(crate) fn block_on(job: impl Future<Output = bool>) -> ExitCode {
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
