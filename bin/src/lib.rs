//! What `echo-server` and `echo-client` share: logging setup and argument
//! parsers that turn bad input into clear usage errors.

#![forbid(unsafe_code)]

pub mod client;
pub mod compare;
pub mod hlog;
pub mod io_model;
pub mod load;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod plot;
pub mod report;
pub mod runtime;
pub mod threshold;

use std::io::IsTerminal;
use std::time::Duration;

use echo_core::{ClientEndpoint, ServerEndpoint};
use tracing_subscriber::EnvFilter;

/// Exit code for a failed run (an echo failed, a bind failed).
pub const EXIT_FAILURE: u8 = 1;

/// Exit code when a `--threshold` was breached, or `compare` found the new
/// run worse (k6's code, which CI users know).
pub const EXIT_BREACHED: u8 = 99;

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

/// The log targets of our own crates (module paths).
const OUR_TARGETS: [&str; 5] = [
    "echo_server",
    "echo_client",
    "echo_net",
    "echo_core",
    "echo_bin",
];

/// The target of the server's `--stats-interval` lines: asked for by a
/// flag, they are written even under `-q`.
pub const STATS_TARGET: &str = "echo_server::stats";

/// The filter directive that keeps [`STATS_TARGET`] at info.
pub const STATS_DIRECTIVE: &str = "echo_server::stats=info";

/// Sends logs to standard error. `RUST_LOG` wins when set; otherwise the
/// level is `default` moved up by `verbose` and down by `quiet` steps.
/// `always` are directives kept whatever the level (`target=info`).
///
/// A `RUST_LOG` with no level of its own (only targets, or a typo that
/// reads as one: `garbage!!`) keeps warnings and errors on, and a target
/// that is none of ours is pointed out: a filter must never silence the
/// warnings without a word.
pub fn init_logging(default: tracing::Level, verbose: u8, quiet: u8, always: &[&str]) {
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
    let with_always = |spec: String| {
        always
            .iter()
            .fold(spec, |spec, directive| format!("{spec},{directive}"))
    };
    let fallback = || EnvFilter::new(with_always(LEVELS[index].as_str().to_ascii_lowercase()));
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            let (floored, foreign) = floor_warnings(&spec);
            for target in foreign {
                complain(format!(
                    "warning: RUST_LOG names {target:?}, which is none of this program's log targets ({}); warnings and errors are logged all the same",
                    OUR_TARGETS.join(", ")
                ));
            }
            EnvFilter::try_new(with_always(floored)).unwrap_or_else(|e| {
                complain(format!(
                    "warning: ignoring RUST_LOG={spec:?} ({e}); logging at the default level"
                ));
                fallback()
            })
        }
        _ => fallback(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// `spec` with `warn` in front when it sets no level for every target,
/// and the targets it names that are none of ours.
fn floor_warnings(spec: &str) -> (String, Vec<String>) {
    let mut global = false;
    let mut foreign = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part
            .parse::<tracing_subscriber::filter::LevelFilter>()
            .is_ok()
        {
            global = true;
            continue;
        }
        let target = part.split(['=', '[']).next().unwrap_or("").trim();
        if !target.is_empty() && !OUR_TARGETS.iter().any(|ours| target.starts_with(ours)) {
            foreign.push(target.to_owned());
        }
    }
    let floored = if global {
        spec.to_owned()
    } else {
        format!("warn,{spec}")
    };
    (floored, foreign)
}

/// Parses a server endpoint string for clap.
///
/// # Errors
/// The parser's message.
pub fn server_endpoint(s: &str) -> Result<ServerEndpoint, String> {
    s.trim()
        .parse::<ServerEndpoint>()
        .map_err(|e| e.to_string())
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
            Err("this mode measures stream echo; use tcp:, unix: or tls:".into())
        }
        endpoint => Ok(endpoint),
    }
}

/// Parses a yes/no value as container and systemd users write it, for
/// every boolean flag's environment variable: `1`/`0`, `true`/`false`,
/// `yes`/`no`, `on`/`off` (any case); empty is no.
///
/// # Errors
/// A message when `s` is none of those.
pub fn switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "n" | "off" => Ok(false),
        _ => Err(format!(
            "{s:?} is not yes or no (1/0, true/false, yes/no, on/off)"
        )),
    }
}

/// Parses `-v`/`-q` as their environment variables give them: a count
/// (`2` is `-vv`), or yes/no as [`switch`] takes it (yes is one step).
///
/// # Errors
/// A message when `s` is neither.
pub fn level_count(s: &str) -> Result<u8, String> {
    s.trim()
        .parse::<u8>()
        .or_else(|_| switch(s).map(u8::from))
        .map_err(|_| format!("{s:?} is not a count (0, 1, 2) or yes/no"))
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
    match byte_count(s).map(usize::try_from) {
        Ok(Ok(n)) if (UDP_CLIENT_HEADER..=MAX_DATAGRAM).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a datagram size from {UDP_CLIENT_HEADER} to {MAX_DATAGRAM} bytes"
        )),
    }
}

/// Parses a duration for clap, the same way for every flag of both
/// binaries: a number with a unit (`500ms`, `1.5s`, `2m`, `1h30m`, `250us`;
/// humantime's units), or a bare number of seconds (`30`, `0.5`).
///
/// # Errors
/// A message when `s` is neither.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bare = t
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .and_then(|n| Duration::try_from_secs_f64(n).ok());
    bare.or_else(|| humantime::parse_duration(t).ok())
        .ok_or_else(|| {
            format!("{s:?} is not a duration such as 500ms, 10s, 2m, 1h30m or 2.5 (seconds)")
        })
}

/// Parses a [`duration`] above 0, for timeouts and periods, where 0 would
/// mean "at once" and is a mistake.
///
/// # Errors
/// A message when `s` is not a duration above 0.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "{s:?} is not a duration above 0, such as 500ms, 10s, 2m, 1h30m or 2.5 (seconds)"
        )),
    }
}

/// Parses a byte count for clap, the same way for every size flag of both
/// binaries: `1000`, `64KiB`, `1MB`, `1.5 MiB` (KB, MB, GB: powers of
/// 1,000; KiB, MiB, GiB: of 1,024; the `bytesize` crate's units).
///
/// # Errors
/// A message when `s` is not a byte count.
pub fn byte_count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() < u64::MAX => Ok(size.as_u64()),
        _ => Err(format!(
            "{s:?} is not a byte count such as 1000, 64KiB or 1MB"
        )),
    }
}

/// Parses a [`byte_count`] of at least 1 that fits in memory, for clap.
///
/// # Errors
/// A message when `s` is not such a size.
pub fn positive_size(s: &str) -> Result<usize, String> {
    match byte_count(s).map(usize::try_from) {
        Ok(Ok(n)) if n > 0 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a size of at least 1 byte, such as 1000, 64KiB or 1MB"
        )),
    }
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
///
/// For bash, the script is made for the name with `_` in place of `-`
/// and registered for the real name: clap_complete's bash script names a
/// subcommand's case `echo__subcmd__client__subcmd__bench` where it sets
/// `cmd=echo__client__subcmd__bench` for a hyphenated name, so nothing
/// after a subcommand would ever complete.
pub fn print_completions<C: clap::CommandFactory>(shell: clap_complete::Shell) {
    use std::io::Write;
    let mut command = C::command();
    let name = command.get_name().to_owned();
    if shell != clap_complete::Shell::Bash {
        clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
        return;
    }
    let alias = name.replace('-', "_");
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, alias.as_str(), &mut script);
    let script =
        String::from_utf8_lossy(&script).replace(&format!(" {alias}\n"), &format!(" {name}\n"));
    let _ = std::io::stdout().lock().write_all(script.as_bytes());
}

/// Writes the command `C`'s man page (roff) to standard output, or with
/// `dir` its page and one per subcommand (which the main page names, as
/// `echo-client-bench(1)`) into `dir`.
#[must_use]
pub fn print_man<C: clap::CommandFactory>(dir: Option<&std::path::Path>) -> std::process::ExitCode {
    let written = match dir {
        None => clap_mangen::Man::new(C::command()).render(&mut std::io::stdout()),
        Some(dir) => clap_mangen::generate_to(C::command(), dir),
    };
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let into = dir.map_or_else(String::new, |d| format!(" into {}", d.display()));
            complain(format!("cannot write the man page{into}: {e}"));
            std::process::ExitCode::from(EXIT_FAILURE)
        }
    }
}
