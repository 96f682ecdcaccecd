//! What `echo-server` and `echo-client` share: logging setup and argument
//! parsers that turn bad input into clear usage errors.

#![forbid(unsafe_code)]

pub mod bench;
pub mod hlog;
pub mod plot;
pub mod runtime;

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

/// Parses a duration with its unit for clap: `50ms`, `1.5s`, `250us`,
/// `2m`; a bare number is seconds, as in the other flags.
///
/// # Errors
/// A message when `s` is not a non-negative number with one of those units.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (number, scale) = [
        ("ms", 1e-3),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("s", 1.0),
        ("m", 60.0),
    ]
    .iter()
    .find_map(|(unit, scale)| t.strip_suffix(unit).map(|n| (n, *scale)))
    .unwrap_or((t, 1.0));
    number
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
        .ok_or_else(|| format!("{s:?} is not a duration such as 50ms, 1.5s or 2m"))
}

/// Parses a byte count with an optional unit for clap: `1000`, `64KiB`,
/// `1MB` (KB, MB, GB: powers of 1,000; KiB, MiB, GiB: of 1,024).
///
/// # Errors
/// A message when `s` is not a whole number of bytes in range.
pub fn byte_count(s: &str) -> Result<u64, String> {
    const UNITS: [(&str, u64); 7] = [
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("KB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("B", 1),
    ];
    let t = s.trim();
    let (number, scale) = UNITS
        .iter()
        .find_map(|(unit, scale)| t.strip_suffix(unit).map(|n| (n.trim(), *scale)))
        .unwrap_or((t, 1));
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{s:?} is not a byte count such as 1000, 64KiB or 1MB"))
}

/// Parses a rate in bytes per second for clap: a [`byte_count`], with or
/// without `/s` (`1MB/s`, `64KiB/s`, `5000`), at least 1.
///
/// # Errors
/// A message when `s` is not such a rate.
pub fn byte_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let count = t.strip_suffix("/s").unwrap_or(t);
    match byte_count(count) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a rate such as 1MB/s, 64KiB/s or 5000 (bytes per second, at least 1)"
        )),
    }
}

/// Parses a share from 0 to 1 (`0.25`) into millionths, for clap.
///
/// # Errors
/// A message when `s` is not a number from 0 to 1.
pub fn ratio(s: &str) -> Result<u32, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok((p * 1e6).round() as u32),
        _ => Err(format!("{s:?} is not a share from 0 to 1, such as 0.25")),
    }
}

/// Writes shell completions for the command `C` to standard output.
pub fn print_completions<C: clap::CommandFactory>(shell: clap_complete::Shell) {
    let mut command = C::command();
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
}

/// Writes the command `C`'s man page (roff) to standard output.
#[must_use]
pub fn print_man<C: clap::CommandFactory>() -> std::process::ExitCode {
    match clap_mangen::Man::new(C::command()).render(&mut std::io::stdout()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            complain(format!("cannot write the man page: {e}"));
            std::process::ExitCode::from(EXIT_FAILURE)
        }
    }
}
