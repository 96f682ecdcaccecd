//! `--threshold EXPR`: pass/fail criteria on a run's figures, k6's
//! convention for a load tool inside a CI pipeline (a `✓`/`✗` line each,
//! exit 99 when one is breached). An expression is `FIGURE OP VALUE`:
//! `p99<5ms`, `p99.9<=20ms`, `errors==0`, `error_rate<0.1%`, `rps>=50000`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::Summary;

/// A figure a threshold (or `compare`) can judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Figure {
    /// Latency percentile (open loop: corrected), by its index in
    /// [`QUANTILES`].
    Latency(usize),
    /// Open loop: latency from the actual send (closed loop: the latency,
    /// which is measured so).
    Raw(usize),
    /// Connect time: p50, p90, p99, max as 0, 1, 2, 4.
    Connect(usize),
    /// Failed requests.
    Errors,
    /// Failed requests over requests tried.
    ErrorRate,
    /// Requests per second.
    Rps,
    /// Requests measured.
    Requests,
    /// Payload MB per second.
    MbPerSec,
    /// The longest stall: no echo on a connection while one was owed.
    Stall,
}

/// The percentile names, in order.
pub const QUANTILES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

/// What a figure counts, which says how its limit is written and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A time, in microseconds (written `5ms`, `250us`, `1s`).
    Time,
    /// A fraction (written `0.1%` or `0.001`).
    Fraction,
    /// A count or a rate (a plain number).
    Number,
}

impl Figure {
    /// Every figure, in the order `--help` and errors list them.
    #[must_use]
    pub fn all() -> Vec<Self> {
        let mut all: Vec<Self> = (0..5).map(Self::Latency).collect();
        all.extend((0..5).map(Self::Raw));
        all.extend([0, 1, 2, 4].map(Self::Connect));
        all.extend([
            Self::Errors,
            Self::ErrorRate,
            Self::Rps,
            Self::Requests,
            Self::MbPerSec,
            Self::Stall,
        ]);
        all
    }

    /// Its name in expressions and JSON.
    #[must_use]
    pub fn name(self) -> String {
        match self {
            Self::Latency(i) => QUANTILES[i].to_owned(),
            Self::Raw(i) => format!("raw_{}", QUANTILES[i]),
            Self::Connect(i) => format!("connect_{}", QUANTILES[i]),
            Self::Errors => "errors".into(),
            Self::ErrorRate => "error_rate".into(),
            Self::Rps => "rps".into(),
            Self::Requests => "requests".into(),
            Self::MbPerSec => "mb_per_sec".into(),
            Self::Stall => "stall".into(),
        }
    }

    /// How its values are written.
    #[must_use]
    pub fn kind(self) -> Kind {
        match self {
            Self::Latency(_) | Self::Raw(_) | Self::Connect(_) | Self::Stall => Kind::Time,
            Self::ErrorRate => Kind::Fraction,
            _ => Kind::Number,
        }
    }

    /// Whether a larger value is better (throughput) or worse (latency,
    /// errors).
    #[must_use]
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::Rps | Self::Requests | Self::MbPerSec)
    }

    /// Its value in `s`: microseconds for times, a fraction for
    /// `error_rate`.
    #[must_use]
    pub fn measure(self, s: &Summary) -> f64 {
        let pick =
            |p: &crate::model::Percentiles, i: usize| [p.p50, p.p90, p.p99, p.p99_9, p.max][i];
        match self {
            Self::Latency(i) => pick(&s.latency_us, i),
            Self::Raw(i) => pick(
                s.open_loop
                    .as_ref()
                    .map_or(&s.latency_us, |o| &o.latency_raw_us),
                i,
            ),
            Self::Connect(i) => {
                let c = &s.connect_us;
                [c.p50, c.p90, c.p99, c.p99, c.max][i]
            }
            Self::Errors => s.errors as f64,
            Self::ErrorRate => s.error_rate(),
            Self::Rps => s.requests_per_sec,
            Self::Requests => s.requests as f64,
            Self::MbPerSec => s.mb_per_sec,
            Self::Stall => s.stall.as_ref().map_or(0.0, |st| st.longest_us),
        }
    }

    /// A value of this figure for people: `1.25ms`, `0.10%`, `50123`.
    #[must_use]
    pub fn show(self, value: f64) -> String {
        match self.kind() {
            Kind::Time => show_time(value),
            Kind::Fraction => format!("{:.2}%", value * 100.0),
            Kind::Number if value.fract() == 0.0 => format!("{value:.0}"),
            Kind::Number => format!("{value:.1}"),
        }
    }

    /// Every figure's name, for error messages.
    #[must_use]
    pub fn names() -> String {
        Self::all()
            .into_iter()
            .map(Self::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl FromStr for Figure {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        Self::all()
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| name.to_owned())
    }
}

impl TryFrom<String> for Figure {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        name.parse()
            .map_err(|name| format!("unknown figure {name:?}"))
    }
}

impl From<Figure> for String {
    fn from(f: Figure) -> Self {
        f.name()
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Microseconds as people read them: `850.0us`, `1.25ms`, `2.000s`.
#[must_use]
pub fn show_time(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.3}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.1}us")
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
}

impl Op {
    const ALL: [(&'static str, Self); 5] = [
        ("<=", Self::Le),
        (">=", Self::Ge),
        ("==", Self::Eq),
        ("<", Self::Lt),
        (">", Self::Gt),
    ];

    fn holds(self, measured: f64, limit: f64) -> bool {
        match self {
            Self::Lt => measured < limit,
            Self::Le => measured <= limit,
            Self::Gt => measured > limit,
            Self::Ge => measured >= limit,
            Self::Eq => measured == limit,
        }
    }
}

/// One `--threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The expression as given (spaces removed).
    pub text: String,
    /// What it judges.
    pub figure: Figure,
    /// How.
    pub op: Op,
    /// Against this, in the figure's unit (microseconds, a fraction, a
    /// number).
    pub limit: f64,
}

/// Why an expression is not a threshold (a usage error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThresholdError {
    /// No comparison in it.
    NoOperator {
        /// The expression.
        expr: String,
    },
    /// A figure that does not exist.
    UnknownFigure {
        /// The expression.
        expr: String,
        /// The name it gave.
        name: String,
    },
    /// A value that is not one of the figure's.
    BadValue {
        /// The expression.
        expr: String,
        /// The value part.
        value: String,
        /// How the figure's values are written.
        want: &'static str,
    },
}

impl fmt::Display for ThresholdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoOperator { expr } => write!(
                f,
                "{expr:?} is not a threshold: write FIGURE OP VALUE with OP one of < <= > >= == (p99<5ms, errors==0, error_rate<0.1%, rps>=50000)"
            ),
            Self::UnknownFigure { expr, name } => write!(
                f,
                "{expr:?}: no figure is called {name:?}; the figures are {}",
                Figure::names()
            ),
            Self::BadValue { expr, value, want } => {
                write!(f, "{expr:?}: {value:?} is not {want}")
            }
        }
    }
}

impl std::error::Error for ThresholdError {}

impl FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(expr: &str) -> Result<Self, ThresholdError> {
        let text: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
        let at = text
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| ThresholdError::NoOperator { expr: text.clone() })?;
        let (name, rest) = text.split_at(at);
        let (symbol, op) = Op::ALL
            .into_iter()
            .find(|(symbol, _)| rest.starts_with(symbol))
            .ok_or_else(|| ThresholdError::NoOperator { expr: text.clone() })?;
        let value = &rest[symbol.len()..];
        let figure: Figure = name.parse().map_err(|name| ThresholdError::UnknownFigure {
            expr: text.clone(),
            name,
        })?;
        let bad = |want| ThresholdError::BadValue {
            expr: text.clone(),
            value: value.to_owned(),
            want,
        };
        let limit = match figure.kind() {
            Kind::Time => time_us(value)
                .ok_or_else(|| bad("a time with its unit (500us, 5ms, 1.5s; also ns)"))?,
            Kind::Fraction => {
                fraction(value).ok_or_else(|| bad("a fraction (0.1% or 0.001) from 0 to 100%"))?
            }
            Kind::Number => number(value).ok_or_else(|| bad("a number (0 or more)"))?,
        };
        Ok(Self {
            text,
            figure,
            op,
            limit,
        })
    }
}

fn number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

/// `5ms`, `250us`, `250µs`, `1.5s`, `800ns`, in microseconds.
fn time_us(s: &str) -> Option<f64> {
    let units = [
        ("ns", 1e-3),
        ("us", 1.0),
        ("µs", 1.0),
        ("ms", 1e3),
        ("s", 1e6),
    ];
    let (digits, scale) = units
        .iter()
        .find_map(|(unit, scale)| s.strip_suffix(unit).map(|d| (d, *scale)))?;
    number(digits).map(|v| v * scale)
}

/// `0.1%` or `0.001`.
fn fraction(s: &str) -> Option<f64> {
    let value = match s.strip_suffix('%') {
        Some(percent) => number(percent)? / 100.0,
        None => number(s)?,
    };
    (value <= 1.0).then_some(value)
}

/// One threshold judged: what was measured and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The expression.
    pub threshold: String,
    /// The figure it judged.
    pub figure: Figure,
    /// Its measured value (microseconds for times, a fraction for
    /// `error_rate`).
    pub measured: f64,
    /// The measured value for people (`1.25ms`, `0.10%`).
    pub shown: String,
    /// Whether it held.
    pub held: bool,
}

impl Threshold {
    /// Judges this threshold against `summary`.
    #[must_use]
    pub fn judge(&self, summary: &Summary) -> Verdict {
        let measured = self.figure.measure(summary);
        Verdict {
            threshold: self.text.clone(),
            figure: self.figure,
            measured,
            shown: self.figure.show(measured),
            held: self.op.holds(measured, self.limit),
        }
    }
}

/// Judges every threshold against `summary`, recording the verdicts in it;
/// true when all held.
pub fn judge_all(thresholds: &[Threshold], summary: &mut Summary) -> bool {
    summary.thresholds = thresholds.iter().map(|t| t.judge(summary)).collect();
    summary.thresholds.iter().all(|v| v.held)
}

impl Figure {
    /// Its value for the run so far, while it runs; none for a figure that
    /// is known only at the end (connects, raw latency, the request count).
    #[must_use]
    pub fn so_far(self, s: &crate::model::SoFar) -> Option<f64> {
        let p = &s.latency_us;
        match self {
            Self::Latency(i) => Some([p.p50, p.p90, p.p99, p.p99_9, p.max][i]),
            Self::Errors => Some(s.errors as f64),
            Self::ErrorRate => {
                let tried = s.requests + s.errors;
                Some(if tried == 0 {
                    0.0
                } else {
                    s.errors as f64 / tried as f64
                })
            }
            Self::Rps => Some(s.requests as f64 / s.seconds.max(1e-9)),
            Self::Stall => Some(s.stall_us),
            Self::Raw(_) | Self::Connect(_) | Self::Requests | Self::MbPerSec => None,
        }
    }
}

/// `--abort-on-fail`: judges the thresholds on the run so far after each
/// interval and stops the run at the first breach (k6's `abortOnFail`).
#[derive(Debug)]
pub struct AbortOnFail<'a> {
    /// The thresholds.
    pub thresholds: &'a [Threshold],
    /// The first breach: the threshold, its value then, and when.
    pub breach: Option<(String, String, f64)>,
}

impl crate::observe::Observer for AbortOnFail<'_> {
    fn interval(&mut self, interval: &crate::model::Interval) -> crate::observe::Flow {
        use crate::observe::Flow;
        let so_far = &interval.so_far;
        for t in self.thresholds {
            if let Some(value) = t.figure.so_far(so_far)
                && !t.op.holds(value, t.limit)
            {
                self.breach = Some((t.text.clone(), t.figure.show(value), so_far.seconds));
                return Flow::Stop;
            }
        }
        Flow::Continue
    }
}

/// A clap value parser for `--threshold`.
///
/// # Errors
/// The [`ThresholdError`], in words.
pub fn parse(s: &str) -> Result<Threshold, String> {
    s.parse().map_err(|e: ThresholdError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(expr: &str) -> Threshold {
        expr.parse().unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    #[test]
    fn an_expression_is_a_figure_an_operator_and_a_value_in_the_figures_unit() {
        let t = parsed("p99<5ms");
        assert_eq!(
            (t.figure, t.op, t.limit),
            (Figure::Latency(2), Op::Lt, 5_000.0)
        );
        assert_eq!(parsed("p99.9 <= 20ms").figure, Figure::Latency(3));
        assert_eq!(parsed("p99.9 <= 20ms").text, "p99.9<=20ms");
        assert_eq!(parsed("raw_p99<250us").limit, 250.0);
        assert_eq!(parsed("max<1.5s").limit, 1_500_000.0);
        assert_eq!(parsed("connect_p99<800ns").limit, 0.8);
        assert_eq!(parsed("errors==0").op, Op::Eq);
        assert_eq!(parsed("error_rate<0.1%").limit, 0.001);
        assert_eq!(parsed("error_rate<0.001").limit, 0.001);
        assert_eq!(parsed("rps>=50000").op, Op::Ge);
    }

    #[test]
    fn a_bad_expression_names_the_bad_part_and_what_would_do() {
        let error = |expr: &str| expr.parse::<Threshold>().unwrap_err().to_string();
        let unknown = error("p98<5ms");
        assert!(unknown.contains("\"p98\""), "{unknown}");
        assert!(
            unknown.contains("p99.9") && unknown.contains("error_rate"),
            "{unknown}"
        );
        let unitless = error("p99<5");
        assert!(
            unitless.contains("\"5\"") && unitless.contains("5ms"),
            "{unitless}"
        );
        assert!(error("errors").contains("FIGURE OP VALUE"));
        assert!(error("errors=!0").contains("FIGURE OP VALUE"));
        assert!(error("error_rate<150%").contains("\"150%\""));
        assert!(error("rps>=-1").contains("\"-1\""));
        assert!(error("rps>=NaN").contains("\"NaN\""));
    }

    #[test]
    fn verdicts_compare_the_measured_value_with_the_limit() {
        let summary = sample();
        let held = parsed("p99<5ms").judge(&summary);
        assert!(held.held);
        // HDR's 3 significant digits: within 0.1 % of the value recorded.
        assert!((held.measured - 900.0).abs() < 1.0, "{held:?}");
        assert!(held.shown.starts_with("900.") && held.shown.ends_with("us"));
        assert!(!parsed("p99<800us").judge(&summary).held);
        assert!(!parsed("errors==0").judge(&summary).held);
        let rate = parsed("error_rate<1%").judge(&summary);
        assert_eq!(rate.shown, "0.50%");
        assert!(rate.held);
        assert!(parsed("rps>=100").judge(&summary).held);
        assert!(!parsed("rps>=10000").judge(&summary).held);
        // A closed loop measures from the actual send: raw is the latency.
        let raw = parsed("raw_p99<1ms").judge(&summary);
        assert_eq!(raw.measured, held.measured);
    }

    #[test]
    fn verdicts_read_back_from_json() {
        let verdict = parsed("p99<5ms").judge(&sample());
        let json = serde_json::to_string(&verdict).unwrap();
        assert!(json.contains(r#""figure":"p99""#), "{json}");
        assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), verdict);
    }

    fn sample() -> Summary {
        let mut latency = crate::model::new_histogram();
        for us in [100, 200, 900] {
            latency.record(us * 1_000).unwrap();
        }
        let mut failures = crate::model::Failures::default();
        failures.0[0] = 1;
        crate::model::Run {
            requests: 199,
            elapsed: std::time::Duration::from_secs(1),
            failures,
            len: 64,
            connections: 1,
            ..crate::model::Run::of_latencies(latency, None)
        }
        .summary()
    }
}
