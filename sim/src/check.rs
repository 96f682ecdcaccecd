//! Runs a property over many seeded cases: committed regression seeds first,
//! a determinism self-check on a sample, shrinking on failure, and a replay
//! command in every failure message.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::case::Case;
use crate::coverage::Coverage;
use crate::run::run_case;
use crate::vocab::mix;
use crate::world::{Report, Stats};

/// A simulated scenario that a property draws from a strategy and runs.
pub trait Scenario: Clone + std::fmt::Debug {
    /// The same scenario with its run seed set.
    #[must_use]
    fn seeded(self, seed: u64) -> Self;
    /// Runs it and checks its invariants.
    fn run(&self) -> Report;
}

impl Scenario for Case {
    fn seeded(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn run(&self) -> Report {
        run_case(self)
    }
}

/// Stops the whole test binary, naming the property and the seed, when one
/// case runs for longer than `SIM_WATCHDOG_SECS` (default 120) of wall-clock
/// time. Simulated time moves only between steps, so a task that never
/// yields (a busy loop) would otherwise hang the run with no message.
struct Watchdog {
    /// The seed now running and since when; `None` once done.
    current: Arc<Mutex<Option<(u64, Instant)>>>,
}

impl Watchdog {
    fn start(name: &str) -> Self {
        let limit = Duration::from_secs(env_u64("SIM_WATCHDOG_SECS").unwrap_or(120));
        let current: Arc<Mutex<Option<(u64, Instant)>>> = Arc::default();
        let watched = Arc::clone(&current);
        let name = name.to_owned();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                if Arc::strong_count(&watched) == 1 {
                    return; // the property finished (or failed and unwound)
                }
                let running = *watched.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((seed, since)) = running
                    && since.elapsed() > limit
                {
                    // Write errors ignored: when whoever reads stderr is
                    // gone, `eprintln!` would panic this thread and leave
                    // the busy loop spinning for good.
                    let _ = writeln!(
                        std::io::stderr(),
                        "watchdog: property {name}, seed {seed}: one case ran for more than {limit:?} \
                         of wall-clock time (a task that never yields?)\nreplay: SIM_SEED={seed} \
                         SIM_TRACE=1 cargo test -p sim {name}"
                    );
                    std::process::exit(101);
                }
            }
        });
        Self { current }
    }

    fn case(&self, seed: u64) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((seed, Instant::now()));
    }

    fn stop(self) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Every how-many cases the determinism self-check runs a case twice.
const DOUBLE_RUN_EVERY: u64 = 8;
/// Shrinking stops after this many runs.
const MAX_SHRINK_RUNS: u32 = 300;

/// Totals over a property run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Cases run (double runs counted once).
    pub cases: u64,
    /// Simulations run (double runs counted twice).
    pub sims: u64,
    /// Summed coverage counters.
    pub stats: Stats,
    /// What the cases reached, summed.
    pub coverage: Coverage,
    /// The property's name.
    pub name: String,
    /// Whether this was a full run (the default cases or more, not a
    /// replay): only then must it reach everything.
    pub full_run: bool,
    /// Wall-clock seconds.
    pub seconds: f64,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn tree<S: Strategy>(strategy: &S, seed: u64) -> S::Tree {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    strategy
        .new_tree(&mut runner)
        .expect("strategies here never reject")
}

/// The case that `seed` generates (what `SIM_SEED` replays).
pub fn case_for<S: Strategy<Value: Scenario>>(strategy: &S, seed: u64) -> S::Value {
    tree(strategy, seed).current().seeded(seed)
}

fn trace_hash(report: &Report) -> u64 {
    let mut hasher = DefaultHasher::new();
    report.trace.hash(&mut hasher);
    format!("{:?}", report.result).hash(&mut hasher);
    hasher.finish()
}

/// Regression seeds committed in `sim/regressions/<name>.seeds` (one per
/// line, `#` comments); they run first, every time.
fn regression_seeds(name: &str) -> Vec<u64> {
    let path = format!("{}/regressions/{name}.seeds", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split('#').next()?.trim().parse().ok())
        .collect()
}

/// Checks `name` over `default_cases` seeded cases from `strategy`
/// (`SIM_CASES` overrides the count, `SIM_BASE` the first seed, `SIM_SEED`
/// runs one seed, `SIM_TRACE=1` prints traces). Panics with the seed, the
/// replay command, the shrunk case and its trace on the first failure;
/// with `SIM_FAIL_FAST=1`, exits the process at the first failure instead,
/// unshrunk (for mutation testing).
pub fn check<S: Strategy<Value: Scenario>>(name: &str, strategy: S, default_cases: u64) -> Summary {
    let started = Instant::now();
    let print_trace = std::env::var_os("SIM_TRACE").is_some_and(|v| v != "0");
    let replay = env_u64("SIM_SEED").is_some();
    let full_run = !replay && env_u64("SIM_CASES").is_none_or(|n| n >= default_cases);
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let base = env_u64("SIM_BASE").unwrap_or(0);
            let cases = env_u64("SIM_CASES").unwrap_or(default_cases);
            regression_seeds(name)
                .into_iter()
                .chain((0..cases).map(|i| mix(base.wrapping_add(i))))
                .collect()
        }
    };
    let mut summary = Summary::default();
    let watchdog = Watchdog::start(name);
    for (i, seed) in seeds.into_iter().enumerate() {
        let case = case_for(&strategy, seed);
        watchdog.case(seed);
        let report = case.run();
        summary.cases += 1;
        summary.sims += 1;
        summary.stats.add(&report.stats);
        summary.coverage.add(&report.coverage);
        if print_trace {
            eprintln!(
                "--- seed {seed} ---\n{case:#?}\n{}\n=> {:?}",
                report.trace.join("\n"),
                report.result
            );
        }
        if let Err(violation) = &report.result {
            fail(name, &strategy, (i, seed), &case, violation, &report);
        }
        if (i as u64).is_multiple_of(DOUBLE_RUN_EVERY) {
            let again = case.run();
            summary.sims += 1;
            if trace_hash(&again) != trace_hash(&report) {
                let diverged = report
                    .trace
                    .iter()
                    .zip(&again.trace)
                    .position(|(a, b)| a != b)
                    .unwrap_or(report.trace.len().min(again.trace.len()));
                panic!(
                    "non-deterministic replay of seed {seed} (property {name}); traces diverge at line {diverged}:\n  first:  {:?}\n  second: {:?}\nreplay: SIM_SEED={seed} SIM_TRACE=1 cargo test -p sim {name}",
                    report.trace.get(diverged),
                    again.trace.get(diverged)
                );
            }
        }
    }
    watchdog.stop();
    summary.seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{name}: {} cases, {} sims in {:.1}s ({:.0} sims/s); attempts={} retries={} faults mid-traffic={} crashes={} echoes done={} cut short={} handshakes cut={} udp lost={} dup={} reordered={} denied={} held_full={} app failures={} cut off={} spared={}",
        summary.cases,
        summary.sims,
        summary.seconds,
        summary.sims as f64 / summary.seconds.max(1e-9),
        summary.stats.attempts,
        summary.stats.retries,
        summary.stats.faults_mid_traffic,
        summary.stats.crashes,
        summary.stats.done,
        summary.stats.cut_short,
        summary.stats.handshakes_cut,
        summary.stats.lost,
        summary.stats.duplicates,
        summary.stats.reordered,
        summary.stats.denied,
        summary.stats.held_full,
        summary.stats.broken,
        summary.stats.cut,
        summary.stats.spared,
    );
    if std::env::var_os("SIM_COVERAGE").is_some_and(|v| v != "0") {
        eprintln!(
            "{name}: reached over {} cases:\n{}",
            summary.cases,
            summary.coverage.table(&[])
        );
    }
    summary.name = name.to_owned();
    summary.full_run = full_run;
    summary
}

impl Summary {
    /// The coverage gate: every label in `required` was reached at least
    /// once over a full run. (`SIM_COVERAGE=1` prints every property's
    /// table.)
    ///
    /// # Panics
    /// On a full run that missed any of them.
    pub fn must_have_reached(&self, required: &[&str]) {
        let missing = self.coverage.missing(required);
        assert!(
            !self.full_run || missing.is_empty(),
            "coverage gate: property {} never reached {missing:?} in {} cases; its cases no \
             longer exercise them. What they reached (* = required):\n{}",
            self.name,
            self.cases,
            self.coverage.table(required)
        );
    }
}

fn fail<S: Strategy<Value: Scenario>>(
    name: &str,
    strategy: &S,
    (index, seed): (usize, u64),
    case: &S::Value,
    violation: &str,
    report: &Report,
) -> ! {
    // Mutation testing wants a verdict, not a minimal case: report the
    // first failure and stop the whole binary, whose other properties
    // would otherwise run to their ends.
    if std::env::var_os("SIM_FAIL_FAST").is_some_and(|v| v != "0") {
        // Straight to the process's stderr: the test harness's capture
        // of `eprintln!` would die with the process unprinted.
        let _ = writeln!(
            std::io::stderr(),
            "property {name} failed for seed {seed} (case {}): {violation}\n\
             replay: SIM_SEED={seed} SIM_TRACE=1 cargo test -p sim {name}",
            index + 1
        );
        std::process::exit(101);
    }
    // Shrink: proptest's value tree, driven by hand, keeping the seed.
    let mut tree = tree(strategy, seed);
    let mut minimal = (case.clone(), violation.to_owned(), report.trace.clone());
    let mut runs = 0;
    if tree.simplify() {
        while runs < MAX_SHRINK_RUNS {
            runs += 1;
            let candidate = tree.current().seeded(seed);
            let outcome = candidate.run();
            match outcome.result {
                Ok(()) => {
                    if !tree.complicate() {
                        break;
                    }
                }
                Err(v) => {
                    minimal = (candidate, v, outcome.trace);
                    if !tree.simplify() {
                        break;
                    }
                }
            }
        }
    }
    let (small, small_violation, small_trace) = minimal;
    let tail: Vec<&String> = small_trace
        .iter()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    panic!(
        "property {name} failed for seed {seed} (case {}): {violation}\n\
         replay: SIM_SEED={seed} SIM_TRACE=1 cargo test -p sim {name}\n\
         (add the seed to sim/regressions/{name}.seeds to keep it)\n\
         shrunk in {runs} runs to: {small_violation}\n{small:#?}\nlast trace lines:\n{}",
        index + 1,
        tail.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
