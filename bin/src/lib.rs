//! What `echo-server` and `echo-client` share: logging setup and argument
//! parsers that turn bad input into clear usage errors.

#![forbid(unsafe_code)]

pub mod bench;

use std::io::IsTerminal;
use std::time::Duration;

use echo_core::{ClientEndpoint, ServerEndpoint};
use tracing_subscriber::EnvFilter;

/// Exit code for a failed run (an echo failed, a bind failed).
pub const EXIT_FAILURE: u8 = 1;

/// Writes a line to standard output. Returns `false` if it could not be
/// written (a closed pipe, as in `echo-client | head -1`): never panics.
pub fn say(line: impl std::fmt::Display) -> bool {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}").is_ok()
}

/// Writes a line to standard error, ignoring failure: with standard error
/// gone there is nowhere left to report it, and panicking would be worse.
pub fn complain(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Sends logs to standard error. `RUST_LOG` wins when set; otherwise the
/// level is `default` moved up by `verbose` and down by `quiet` steps.
pub fn init_logging(default: tracing::Level, verbose: u8, quiet: u8) {
    use tracing::Level;
    const LEVELS: [Level; 5] = [
        Level::ERROR,
        Level::WARN,
        Level::INFO,
        Level::DEBUG,
        Level::TRACE,
    ];
    let base = LEVELS.iter().position(|l| *l == default).unwrap_or(2) as i32;
    let index = (base + i32::from(verbose) - i32::from(quiet)).clamp(0, 4) as usize;
    let fallback = || EnvFilter::new(LEVELS[index].as_str().to_ascii_lowercase());
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            complain(format!(
                "warning: ignoring RUST_LOG={spec:?} ({e}); logging at the default level"
            ));
            fallback()
        }),
        _ => fallback(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Parses a server endpoint string for clap.
///
/// # Errors
/// The parser's message.
pub fn server_endpoint(s: &str) -> Result<ServerEndpoint, String> {
    s.parse::<ServerEndpoint>().map_err(|e| e.to_string())
}

/// Parses a client endpoint string for clap.
///
/// # Errors
/// The parser's message.
pub fn client_endpoint(s: &str) -> Result<ClientEndpoint, String> {
    s.parse::<ClientEndpoint>().map_err(|e| e.to_string())
}

/// Parses a client endpoint for a stream-only mode (the benchmark).
///
/// # Errors
/// The parser's message, or a note that the mode needs a stream.
pub fn stream_endpoint(s: &str) -> Result<ClientEndpoint, String> {
    match client_endpoint(s)? {
        ClientEndpoint::Udp { .. } => {
            Err("this mode measures stream echo; use tcp: or unix:".into())
        }
        endpoint => Ok(endpoint),
    }
}

/// Parses seconds (fractions allowed) for clap.
///
/// # Errors
/// A message when `s` is not a non-negative finite number of seconds.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

/// Parses a positive number of seconds (fractions allowed) for clap: for
/// timeouts and durations, where 0 would mean "at once" and is a mistake.
///
/// # Errors
/// A message when `s` is not a finite number of seconds above 0.
pub fn positive_seconds(s: &str) -> Result<Duration, String> {
    match seconds(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{s:?} is not a number of seconds above 0")),
    }
}

/// Parses a positive whole number for clap.
///
/// # Errors
/// A message when `s` is not a whole number of at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// Parses a UDP datagram size for clap: room for the client's header, and
/// no more than one IPv4 datagram carries.
///
/// # Errors
/// A message when `s` is not a whole number in that range.
pub fn datagram_size(s: &str) -> Result<usize, String> {
    use echo_core::{MAX_DATAGRAM, UDP_CLIENT_HEADER};
    match s.parse::<usize>() {
        Ok(n) if (UDP_CLIENT_HEADER..=MAX_DATAGRAM).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a datagram size from {UDP_CLIENT_HEADER} to {MAX_DATAGRAM} bytes"
        )),
    }
}
