//! `echo-client bench`: its flags, the plan they make (every usage error
//! found before the run), and the run: load, then the reporters, then the
//! thresholds' verdict.

use std::process::ExitCode;
use std::time::Duration;

use echo_core::ClientEndpoint;

use super::args::{
    ProxyArgs, TlsArgs, connect_rate, connection_count, message_size, positive_u64, request_rate,
    stream_endpoint,
};
use super::output::OutputFile;
use super::usage_error;
use crate::load::BenchConfig;
use crate::model::{Run, Summary};
use crate::observe::{All, Lines, Observer, Series};
use crate::threshold::{AbortOnFail, Threshold};
use crate::{
    EXIT_BREACHED, EXIT_FAILURE, complain, duration, positive, positive_duration, say, switch,
};

/// `echo-client bench`'s flags (clap only; [`BenchArgs::plan`] checks them).
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Where to connect
    #[arg(env = "ECHO_BENCH_CONNECT", long, value_name = "DESC", default_value = "tcp:localhost:8888", value_parser = stream_endpoint)]
    pub(crate) connect: ClientEndpoint,

    /// Concurrent connections
    #[arg(env = "ECHO_BENCH_CONNECTIONS", short, long, value_name = "N", default_value = "10", value_parser = positive)]
    pub(crate) connections: usize,

    /// Message size in bytes (at most 16 MiB)
    #[arg(env = "ECHO_BENCH_SIZE", short, long, visible_alias = "len", value_name = "BYTES", default_value = "64", value_parser = message_size)]
    pub(crate) size: usize,

    /// Measure for this long [default: 10 unless --requests]
    #[arg(env = "ECHO_BENCH_DURATION", short, long, value_name = "DURATION", value_parser = positive_duration, conflicts_with = "requests")]
    pub(crate) duration: Option<Duration>,

    /// Measure exactly this many requests instead
    #[arg(env = "ECHO_BENCH_REQUESTS", short, long, value_name = "COUNT", value_parser = positive_u64)]
    pub(crate) requests: Option<u64>,

    /// Unmeasured warm-up first
    #[arg(env = "ECHO_BENCH_WARMUP", short, long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub(crate) warmup: Duration,

    /// A request whose echo makes no progress for this long fails
    #[arg(env = "ECHO_BENCH_TIMEOUT", long, value_name = "DURATION", default_value = "5s", value_parser = positive_duration)]
    pub(crate) timeout: Duration,

    #[command(flatten)]
    pub(crate) proxy: ProxyArgs,

    #[command(flatten)]
    pub(crate) tls: TlsArgs,

    /// tls: endpoints: resume no TLS session, so that every handshake is a
    /// full one (by default the client keeps the session tickets a server
    /// sends, echo-server's sessionTickets=N, and resumes with them)
    #[arg(value_parser = switch, env = "ECHO_BENCH_NO_RESUME", long)]
    pub(crate) no_resume: bool,

    /// Each connection starts with the server's banner line naming its back
    /// end (echo-server --banner): report connections, requests, p50 and p99
    /// per back end
    #[arg(value_parser = switch, env = "ECHO_BENCH_BANNER", long)]
    pub(crate) banner: bool,

    /// Threads for the load generator, each with its own share of the
    /// connections
    #[arg(env = "ECHO_BENCH_THREADS", long, value_name = "N", default_value = "1", value_parser = positive)]
    pub(crate) threads: usize,

    /// Print one JSON object instead of text
    #[arg(value_parser = switch, env = "ECHO_BENCH_JSON", long)]
    pub(crate) json: bool,

    /// Also write the latency distribution (microseconds) in .hgrm format
    /// (the file is created before the run)
    #[arg(env = "ECHO_BENCH_HGRM", long, value_name = "FILE")]
    pub(crate) hgrm: Option<std::path::PathBuf>,

    /// While measuring, print one line (with --json: one JSON object) per
    /// interval: requests/s, errors, open connections, p50 and p99 of that
    /// interval (for watching a failover or a rolling restart)
    #[arg(env = "ECHO_BENCH_INTERVAL", long, value_name = "DURATION", value_parser = positive_duration)]
    pub(crate) interval: Option<Duration>,

    /// While running, serve live figures for Prometheus over HTTP on this
    /// tcp: endpoint (GET /metrics): requests, errors by kind, open
    /// connections and a latency histogram, e.g. tcp:9091:interface=127.0.0.1
    #[arg(env = "ECHO_BENCH_METRICS", long, value_name = "DESC", value_parser = crate::metrics::metrics_endpoint)]
    pub(crate) metrics: Option<std::net::SocketAddr>,

    /// Open at most this many new connections per second while ramping up
    /// [default: as fast as possible]
    #[arg(env = "ECHO_BENCH_CONNECT_RATE", long, value_name = "CONN/S", value_parser = connect_rate)]
    pub(crate) connect_rate: Option<f64>,

    /// Close each connection after N messages and open a new one in its
    /// place (connection churn: connects per second, like TCP_CRR); the
    /// connect times get their own line
    #[arg(env = "ECHO_BENCH_RECONNECT_EVERY", long, value_name = "N", value_parser = positive_u64, conflicts_with = "rate")]
    pub(crate) reconnect_every: Option<u64>,

    /// Open loop: send this many requests per second in all, spread evenly
    /// over the connections on a fixed schedule, pipelining when echoes are
    /// late; latency then counts from each request's intended send time
    /// (corrected for coordinated omission) as well as from its actual send
    #[arg(env = "ECHO_BENCH_RATE", long, value_name = "REQ/S", value_parser = request_rate, conflicts_with = "requests")]
    pub(crate) rate: Option<f64>,

    /// Open loop: the most requests a connection may have in flight; sends
    /// due beyond it are skipped and counted (the server cannot keep up)
    #[arg(env = "ECHO_BENCH_MAX_IN_FLIGHT", long, value_name = "N", default_value_t = crate::load::DEFAULT_MAX_IN_FLIGHT, value_parser = positive, requires = "rate")]
    pub(crate) max_in_flight: usize,

    /// Also write the histograms in HdrHistogram's interval-log format
    /// (compressed V2, as Java's HdrHistogram tools read it; values in
    /// nanoseconds), for `echo-client merge` across machines
    #[arg(env = "ECHO_BENCH_HLOG", long, value_name = "FILE")]
    pub(crate) hlog: Option<std::path::PathBuf>,

    /// Also draw the latency percentile plot (SVG) into this file (created
    /// before the run)
    #[arg(env = "ECHO_BENCH_PLOT", long, value_name = "FILE.svg")]
    pub(crate) plot: Option<std::path::PathBuf>,

    /// With --interval: also draw requests/s and p99 per interval over time
    /// (SVG) into this file (created before the run)
    #[arg(
        env = "ECHO_BENCH_PLOT_SERIES",
        long,
        value_name = "FILE.svg",
        requires = "interval"
    )]
    pub(crate) plot_series: Option<std::path::PathBuf>,

    /// Pass/fail criterion, repeatable: FIGURE OP VALUE, as p99<5ms,
    /// p99.9<=20ms, errors==0, error_rate<0.1%, rps>=50000, connect_p99<10ms,
    /// raw_p99<2ms. Judged at the end: a THRESHOLDS block (and
    /// "thresholds" in --json), exit 99 when one is breached, 0 when all
    /// hold (failed requests then count only through thresholds)
    #[arg(env = "ECHO_BENCH_THRESHOLD", long = "threshold", value_name = "EXPR", value_parser = crate::threshold::parse, value_delimiter = ',')]
    pub(crate) thresholds: Vec<Threshold>,

    /// Judge the thresholds on the run so far after every interval (each
    /// second without --interval) and stop at the first breach (exit 99);
    /// figures known only at the end (connect_*, raw_*, requests,
    /// mb_per_sec) wait for it
    #[arg(value_parser = switch, env = "ECHO_BENCH_ABORT_ON_FAIL", long, requires = "thresholds")]
    pub(crate) abort_on_fail: bool,

    /// Also save the whole run (summary and histograms, JSON) for `merge`
    /// and `compare`; created before the run
    #[arg(env = "ECHO_BENCH_SAVE", long, value_name = "FILE.json")]
    pub(crate) save: Option<std::path::PathBuf>,

    /// Instead of load: open N idle connections (each proven live by one
    /// echoed byte) and hold them (for memory measurements)
    #[arg(env = "ECHO_BENCH_IDLE", long, value_name = "N", value_parser = connection_count,
          conflicts_with_all = ["connections", "size", "duration", "requests", "warmup", "threads", "json", "hgrm", "hlog", "plot", "plot_series", "save", "thresholds", "rate", "interval", "connect_rate", "reconnect_every"])]
    pub(crate) idle: Option<usize>,

    /// Many hosts, one test: begin (warm-up, then measurement) at this
    /// wall-clock instant, the same on every host: RFC 3339 (as
    /// 2026-12-07T10:00:00Z) or unix seconds; how late this host began is
    /// reported. More than 1 s in the past, or more than a day ahead, is
    /// refused
    #[arg(env = "ECHO_BENCH_START_AT", long, value_name = "TIME", value_parser = start_at)]
    pub(crate) start_at: Option<std::time::SystemTime>,

    /// Many hosts, one test: this host is shard I of N (0 <= I < N) and takes
    /// its share of --connections and --rate, its sends offset to interleave
    /// with the others'
    #[arg(env = "ECHO_BENCH_SHARD", long, value_name = "I/N", value_parser = shard_arg, conflicts_with = "shards")]
    pub(crate) shard: Option<crate::model::Shard>,

    /// Many hosts, one test, as a Kubernetes Indexed Job runs it: N shards,
    /// this host's index from JOB_COMPLETION_INDEX
    #[arg(env = "ECHO_BENCH_SHARDS", long, value_name = "N", value_parser = positive_u64)]
    pub(crate) shards: Option<u64>,

    /// The test's name, the same on every host: in --json, --save and
    /// --hlog, so that merge refuses runs of different tests [default: from
    /// --start-at]
    #[arg(env = "ECHO_BENCH_RUN_ID", long, value_name = "ID")]
    pub(crate) run_id: Option<String>,

    /// How long --idle holds the connections
    #[arg(env = "ECHO_BENCH_HOLD", long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration, requires = "idle")]
    pub(crate) hold: Duration,
}

/// `--start-at`: RFC 3339 or unix seconds.
fn start_at(s: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(secs) = s.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| std::time::UNIX_EPOCH.checked_add(d))
            .ok_or_else(|| format!("{s:?} is not a time this machine can reach (unix seconds)"));
    }
    humantime::parse_rfc3339_weak(s.trim()).map_err(|e| {
        format!("{s:?} is not a time: RFC 3339 (2026-12-07T10:00:00Z) or unix seconds ({e})")
    })
}

/// `--shard I/N`.
fn shard_arg(s: &str) -> Result<crate::model::Shard, String> {
    s.parse()
}

/// How far in the past `--start-at` may be (a host that starts later than
/// this would skew the shared schedule, so it refuses instead).
const START_LATE: Duration = Duration::from_secs(1);

/// How far ahead `--start-at` may be: further is taken for a typo (unix
/// milliseconds for seconds, a wrong year), which would otherwise wait in
/// silence for years.
const START_AHEAD: Duration = Duration::from_secs(24 * 60 * 60);

/// What a bench run is to do, checked: the load, the outputs, the
/// thresholds (ripgrep's high-level args, apart from clap's).
#[derive(Debug)]
struct Plan {
    /// Begin at this wall-clock instant (`--start-at`).
    start_at: Option<std::time::SystemTime>,
    /// Which test and which share.
    identity: crate::model::Identity,
    config: BenchConfig,
    threads: usize,
    json: bool,
    /// Print a line per interval (`--interval`).
    lines: bool,
    thresholds: Vec<Threshold>,
    /// Judge the thresholds while running (`--abort-on-fail`).
    abort_on_fail: bool,
    outputs: Outputs,
    /// Serve live figures here (`--metrics`).
    metrics: Option<std::net::SocketAddr>,
}

/// How often `--abort-on-fail` judges the run without `--interval`.
const ABORT_CHECK: Duration = Duration::from_secs(1);

/// The files a run writes, each created before it.
#[derive(Debug)]
struct Outputs {
    hgrm: Option<OutputFile>,
    hlog: Option<OutputFile>,
    plot: Option<OutputFile>,
    series: Option<OutputFile>,
    save: Option<OutputFile>,
}

/// Why a plan could not be made.
#[derive(Debug)]
enum PlanError {
    /// Bad input: exit 2 with clap's usage.
    Usage(String),
    /// An output file cannot be created: exit 1.
    Output(String),
}

impl BenchArgs {
    /// The checked plan; opens the output files first, so a bad path
    /// fails at once and never after a whole run.
    fn plan(self) -> Result<Plan, PlanError> {
        let shard = match (self.shard, self.shards) {
            (Some(shard), _) => Some(shard),
            (None, Some(count)) => {
                let index = std::env::var("JOB_COMPLETION_INDEX").map_err(|_| {
                    PlanError::Usage(
                        "--shards N needs this host's index in JOB_COMPLETION_INDEX (as a \
                         Kubernetes Indexed Job sets it); or say --shard I/N"
                            .into(),
                    )
                })?;
                let index: u32 = index.trim().parse().map_err(|_| {
                    PlanError::Usage(format!(
                        "JOB_COMPLETION_INDEX={index:?} is not a shard number"
                    ))
                })?;
                let count = u32::try_from(count)
                    .map_err(|_| PlanError::Usage(format!("--shards {count} is too many")))?;
                Some(crate::model::Shard::new(index, count).map_err(PlanError::Usage)?)
            }
            (None, None) => None,
        };
        if let Some(at) = self.start_at
            && let Ok(ahead) = at.duration_since(std::time::SystemTime::now())
            && ahead > START_AHEAD
        {
            return Err(PlanError::Usage(format!(
                "--start-at is {:.1} h ahead, more than a day: unix seconds (not milliseconds) \
                 or RFC 3339, as now + 30 s",
                ahead.as_secs_f64() / 3600.0
            )));
        }
        if let Some(at) = self.start_at
            && let Ok(late) = std::time::SystemTime::now().duration_since(at)
            && late > START_LATE
        {
            return Err(PlanError::Usage(format!(
                "--start-at is {:.1} s in the past: every host must start at the same \
                 instant, and this one would start late (give a time ahead, as now + 30 s)",
                late.as_secs_f64()
            )));
        }
        let connections = match shard {
            Some(shard) => {
                let part = shard.part(self.connections);
                if part == 0 {
                    return Err(PlanError::Usage(format!(
                        "--connections {} leaves shard {shard} without one: give at least one \
                         connection per shard",
                        self.connections
                    )));
                }
                part
            }
            None => self.connections,
        };
        let count = shard.map_or(1.0, |s| f64::from(s.count));
        let rate = self.rate.map(|r| r / count);
        // The shards' sends interleave: shard I starts I sends (of the
        // whole test's rate) after shard 0.
        let shift = match (shard, self.rate) {
            (Some(shard), Some(total)) => Duration::from_secs_f64(f64::from(shard.index) / total),
            _ => Duration::ZERO,
        };
        let run_id = self.run_id.clone().or_else(|| {
            self.start_at.map(|at| {
                let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                format!("start-{}", secs.as_secs())
            })
        });
        let identity = crate::model::Identity {
            run_id,
            shard,
            start_skew_us: None,
        };
        let config = BenchConfig {
            endpoint: self.connect,
            connections,
            len: self.size,
            duration: self
                .duration
                .or(self.requests.is_none().then_some(Duration::from_secs(10))),
            requests: self.requests,
            warmup: self.warmup,
            timeout: self.timeout,
            send_proxy: self.proxy.header(),
            insecure: self.tls.insecure,
            resume: !self.no_resume,
            rate,
            max_in_flight: self.max_in_flight,
            // --abort-on-fail judges once a second without --interval.
            interval: self.interval.or(self.abort_on_fail.then_some(ABORT_CHECK)),
            connect_rate: self.connect_rate,
            reconnect_every: self.reconnect_every,
            banner: self.banner,
            live: None,
            shift,
        };
        config.check().map_err(PlanError::Usage)?;
        let create =
            |path: Option<&std::path::Path>| OutputFile::create(path).map_err(PlanError::Output);
        let outputs = Outputs {
            hgrm: create(self.hgrm.as_deref())?,
            hlog: create(self.hlog.as_deref())?,
            plot: create(self.plot.as_deref())?,
            series: create(self.plot_series.as_deref())?,
            save: create(self.save.as_deref())?,
        };
        Ok(Plan {
            start_at: self.start_at,
            identity,
            config,
            threads: self.threads,
            json: self.json,
            lines: self.interval.is_some(),
            thresholds: self.thresholds,
            abort_on_fail: self.abort_on_fail,
            metrics: self.metrics,
            outputs,
        })
    }
}

/// Runs `--idle`: holds idle connections.
fn idle(connect: &ClientEndpoint, n: usize, hold: Duration) -> ExitCode {
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
    match runtime.block_on(crate::load::idle(connect, n, hold)) {
        Ok(open) => {
            if say(format_args!("held {open} idle connections for {hold:?}")) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
        Err(e) => {
            complain(format!("echo-client: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs `echo-client bench`.
pub(super) fn run(args: BenchArgs) -> ExitCode {
    if let Some(n) = args.idle {
        return idle(&args.connect, n, args.hold);
    }
    if args.no_resume && !matches!(args.connect, ClientEndpoint::Tls { .. }) {
        super::usage_error(
            Some("bench"),
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--no-resume is for tls: endpoints, and {} is not one",
                args.connect
            ),
        );
    }
    // Checks --insecure and loads the TLS files once before the run, so a
    // bad path fails at once with its own message.
    if let Err(e) = args.tls.connector(&args.connect, Some("bench")) {
        complain(format!("echo-client: {e}"));
        return ExitCode::from(EXIT_FAILURE);
    }
    let mut plan = match args.plan() {
        Ok(plan) => plan,
        Err(PlanError::Usage(e)) => {
            usage_error(Some("bench"), clap::error::ErrorKind::ValueValidation, e)
        }
        Err(PlanError::Output(e)) => {
            complain(format!("echo-client: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if let Some(addr) = plan.metrics {
        match serve_live(addr) {
            Ok(live) => plan.config.live = Some(live),
            Err(e) => {
                complain(format!("echo-client: {e:#}"));
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }
    let title = title(&plan.config);
    let mut lines = Lines { json: plan.json };
    let mut series = Series::default();
    let mut abort = AbortOnFail {
        thresholds: &plan.thresholds,
        breach: None,
    };
    let mut observers: Vec<&mut dyn Observer> = Vec::new();
    if plan.lines {
        observers.push(&mut lines);
    }
    if plan.outputs.series.is_some() {
        observers.push(&mut series);
    }
    if plan.abort_on_fail {
        observers.push(&mut abort);
    }
    let mut observer = All(observers);
    let skew = plan.start_at.map(wait_until);
    let run = match crate::load::run(plan.config.clone(), plan.threads, &mut observer) {
        Ok(mut run) => {
            run.identity = crate::model::Identity {
                start_skew_us: skew,
                ..plan.identity.clone()
            };
            run
        }
        Err(e) => {
            complain(format!("echo-client: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    drop(observer);
    let mut summary = run.summary();
    let mut held = crate::threshold::judge_all(&plan.thresholds, &mut summary);
    if let Some((threshold, value, at)) = &abort.breach {
        complain(format!(
            "echo-client: --abort-on-fail: {threshold} breached {at:.1}s in ({value}); the run stopped there"
        ));
        held = false;
    }
    if !print(&summary, plan.json) {
        complain("echo-client: cannot write the report to standard output");
        return ExitCode::from(EXIT_FAILURE);
    }
    if let Err(e) = write_outputs(&mut plan.outputs, &run, &title, &series.0) {
        complain(format!("echo-client: {e}"));
        return ExitCode::from(EXIT_FAILURE);
    }
    verdict(&summary, !plan.thresholds.is_empty(), held)
}

/// Sleeps until `at` (the last 2 ms spinning: a sleep can wake late by
/// more than that on a busy host); returns how late it woke, in
/// microseconds (negative: early, when `at` was already past by less than
/// the allowed second).
fn wait_until(at: std::time::SystemTime) -> f64 {
    const SPIN: Duration = Duration::from_millis(2);
    loop {
        match at.duration_since(std::time::SystemTime::now()) {
            Ok(left) if left > SPIN => std::thread::sleep(left - SPIN),
            Ok(left) if !left.is_zero() => std::hint::spin_loop(),
            _ => break,
        }
    }
    match std::time::SystemTime::now().duration_since(at) {
        Ok(late) => late.as_secs_f64() * 1e6,
        Err(early) => -early.duration().as_secs_f64() * 1e6,
    }
}

/// The plots' and `.hlog`'s title.
fn title(config: &BenchConfig) -> String {
    format!(
        "echo-client bench: {} connections x {} B{}, {}, {}",
        config.connections,
        config.len,
        config.rate.map_or_else(String::new, |r| format!(
            " at {} req/s",
            crate::report::text::rate_text(r)
        )),
        config.duration.map_or_else(
            || format!("{} requests", config.requests.unwrap_or(0)),
            |d| format!("{d:?}")
        ),
        crate::plot::today()
    )
}

/// Prints the summary, text or JSON; false when standard output is gone.
pub(super) fn print(summary: &Summary, json: bool) -> bool {
    if json {
        match crate::report::json::summary(summary) {
            Ok(line) => say(line),
            Err(_) => false,
        }
    } else {
        say(crate::report::text::summary(summary))
    }
}

/// The exit code of a finished run: with thresholds, theirs (99 when one
/// was breached, 0 when all held); without, 1 when any request failed.
pub(super) fn verdict(summary: &Summary, judged: bool, held: bool) -> ExitCode {
    if judged {
        if held {
            return ExitCode::SUCCESS;
        }
        let breached: Vec<&str> = summary
            .thresholds
            .iter()
            .filter(|v| !v.held)
            .map(|v| v.threshold.as_str())
            .collect();
        complain(format!(
            "echo-client: thresholds breached: {}",
            breached.join(", ")
        ));
        return ExitCode::from(EXIT_BREACHED);
    }
    if summary.errors > 0 {
        complain(format!(
            "echo-client: {} requests failed: {}",
            summary.errors,
            summary.failures.describe()
        ));
        return ExitCode::from(EXIT_FAILURE);
    }
    ExitCode::SUCCESS
}

/// Writes each asked-for file; the first failure, in words.
fn write_outputs(
    outputs: &mut Outputs,
    run: &Run,
    title: &str,
    intervals: &[crate::plot::SeriesPoint],
) -> Result<(), String> {
    let write = |e: std::io::Error| e.to_string();
    if let Some(out) = outputs.hgrm.as_mut() {
        let text = crate::report::hgrm::hgrm(&run.latency);
        out.fill(|f| std::io::Write::write_all(f, text.as_bytes()).map_err(write))?;
    }
    if let Some(out) = outputs.hlog.as_mut() {
        let start = std::time::SystemTime::now() - run.elapsed;
        let mut histograms = vec![(crate::hlog::TAG_LATENCY, &run.latency)];
        if let Some(open) = &run.open_loop {
            histograms.push((crate::hlog::TAG_RAW, &open.raw));
        }
        out.fill(|f| crate::hlog::write(f, title, &run.identity, start, run.elapsed, &histograms))?;
    }
    if let Some(out) = outputs.plot.as_mut() {
        let svg = crate::plot::run_plot(title, run).map_err(|e| e.to_string());
        out.fill(|f| std::io::Write::write_all(f, svg?.as_bytes()).map_err(write))?;
    }
    if let Some(out) = outputs.series.as_mut() {
        let svg = crate::plot::series_plot(title, intervals).map_err(|e| e.to_string());
        out.fill(|f| std::io::Write::write_all(f, svg?.as_bytes()).map_err(write))?;
    }
    if let Some(out) = outputs.save.as_mut() {
        out.fill(|f| crate::model::file::save(f, run).map_err(|e| e.to_string()))?;
    }
    Ok(())
}

/// `bench --metrics`: serves the run's live figures on `addr` (on a thread
/// of its own) and says where, on standard error (standard output is the
/// report's).
fn serve_live(addr: std::net::SocketAddr) -> anyhow::Result<std::sync::Arc<crate::load::Live>> {
    use crate::metrics::{Exposition, Health, LoadCollector, MetricsListener};
    use std::sync::Arc;
    let live = Arc::new(crate::load::Live::default());
    let listener = MetricsListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.start(
        Exposition::of(LoadCollector(Arc::clone(&live))),
        Arc::new(Health::new()),
    )?;
    // On standard error, where the report is not; worded as echo-server's
    // line, not as a complaint ("echo-client: ..." prefixes failures).
    complain(format!("metrics on http://{bound}/metrics"));
    Ok(live)
}
