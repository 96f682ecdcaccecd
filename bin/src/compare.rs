//! Comparing two runs (`echo-client compare BASE NEW`): each figure side by
//! side with the ratio NEW/BASE and a verdict within a noise margin, so a
//! CI job can fail a build that got slower than its baseline.

use std::fmt;

use serde::Serialize;

use crate::model::Summary;
use crate::threshold::Figure;

/// The default noise margin: 5 %.
pub const DEFAULT_TOLERANCE: f64 = 0.05;

/// How far a figure may move before it counts as better or worse: one
/// margin for all, overridable per figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerances {
    /// For every figure not named.
    pub default: f64,
    /// Per figure.
    pub per_figure: Vec<(Figure, f64)>,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            default: DEFAULT_TOLERANCE,
            per_figure: Vec::new(),
        }
    }
}

impl Tolerances {
    /// The margin for `figure`.
    #[must_use]
    pub fn of(&self, figure: Figure) -> f64 {
        self.per_figure
            .iter()
            .rev()
            .find(|(f, _)| *f == figure)
            .map_or(self.default, |(_, t)| *t)
    }

    /// Adds one `--tolerance`: `5%`, `0.05`, or `FIGURE=PCT` (`max=50%`).
    ///
    /// # Errors
    /// What is wrong with it, naming the figures when the name is unknown.
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let (figure, value) = match spec.split_once('=') {
            Some((name, value)) => {
                let figure = name.trim().parse::<Figure>().map_err(|name| {
                    format!(
                        "--tolerance {spec}: no figure is called {name:?}; the figures are {}",
                        Figure::names()
                    )
                })?;
                (Some(figure), value)
            }
            None => (None, spec),
        };
        let value = value.trim();
        let margin = match value.strip_suffix('%') {
            Some(percent) => percent.parse::<f64>().map(|p| p / 100.0),
            None => value.parse::<f64>(),
        }
        .ok()
        .filter(|m| m.is_finite() && *m >= 0.0)
        .ok_or_else(|| {
            format!("--tolerance {spec}: {value:?} is not a margin such as 5% or 0.05")
        })?;
        match figure {
            Some(figure) => self.per_figure.push((figure, margin)),
            None => self.default = margin,
        }
        Ok(())
    }
}

/// A figure's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// Better beyond the margin.
    Better,
    /// Within the margin.
    Same,
    /// Worse beyond the margin.
    Worse,
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Better => "✓ better",
            Self::Same => "= same",
            Self::Worse => "✗ worse",
        })
    }
}

/// One figure of both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Which.
    pub figure: Figure,
    /// BASE's value (microseconds for times, a fraction for `error_rate`).
    pub base: f64,
    /// NEW's.
    pub new: f64,
    /// NEW / BASE; none when BASE is 0.
    pub ratio: Option<f64>,
    /// The margin applied.
    pub tolerance: f64,
    /// The verdict.
    pub verdict: Judgement,
}

/// Why two runs cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareError {
    /// One is open loop (`--rate`), the other closed loop.
    Loops {
        /// Which one is open loop.
        open: &'static str,
    },
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Loops { open } => write!(
                f,
                "{open} is an open-loop run (--rate) and the other a closed loop: not comparable are its latencies (p50, p90, p99, p99.9, max: from the intended send there, from the actual send here) and rps (set by the schedule there, by the server here); run both the same way"
            ),
        }
    }
}

impl std::error::Error for CompareError {}

/// The figures compared, in table order.
fn figures(open_loop: bool) -> Vec<Figure> {
    let mut figures = vec![Figure::Rps];
    figures.extend((0..5).map(Figure::Latency));
    if open_loop {
        figures.extend((0..5).map(Figure::Raw));
    }
    figures.extend([
        Figure::MbPerSec,
        Figure::Connect(2),
        Figure::Stall,
        Figure::Errors,
        Figure::ErrorRate,
    ]);
    figures
}

/// Compares NEW with BASE, figure by figure.
///
/// # Errors
/// [`CompareError`] when the runs measured different things.
pub fn compare(
    base: &Summary,
    new: &Summary,
    tolerances: &Tolerances,
) -> Result<Vec<Row>, CompareError> {
    match (base.open_loop.is_some(), new.open_loop.is_some()) {
        (true, false) => return Err(CompareError::Loops { open: "BASE" }),
        (false, true) => return Err(CompareError::Loops { open: "NEW" }),
        _ => {}
    }
    Ok(figures(base.open_loop.is_some())
        .into_iter()
        .map(|figure| {
            let (b, n) = (figure.measure(base), figure.measure(new));
            let tolerance = tolerances.of(figure);
            Row {
                figure,
                base: b,
                new: n,
                ratio: (b != 0.0).then(|| n / b),
                tolerance,
                verdict: judge(figure.higher_is_better(), b, n, tolerance),
            }
        })
        .collect())
}

/// Better, same or worse, by more than `tolerance` of BASE.
fn judge(higher_is_better: bool, base: f64, new: f64, tolerance: f64) -> Judgement {
    let (up, down) = (base * (1.0 + tolerance), base * (1.0 - tolerance));
    let (rose, fell) = (new > up && new > base, new < down && new < base);
    match (higher_is_better, rose, fell) {
        (true, true, _) | (false, _, true) => Judgement::Better,
        (true, _, true) | (false, true, _) => Judgement::Worse,
        _ => Judgement::Same,
    }
}

/// Where the loads differ (connections, message size, rate): the
/// comparison still runs, but says so.
#[must_use]
pub fn notes(base: &Summary, new: &Summary) -> Vec<String> {
    let mut notes = Vec::new();
    if base.connections != new.connections {
        notes.push(format!(
            "note: different loads: {} connections in BASE, {} in NEW",
            base.connections, new.connections
        ));
    }
    if base.len != new.len {
        notes.push(format!(
            "note: different loads: {}-byte messages in BASE, {}-byte in NEW",
            base.len, new.len
        ));
    }
    if let (Some(b), Some(n)) = (&base.open_loop, &new.open_loop)
        && b.rate != n.rate
    {
        notes.push(format!(
            "note: different loads: {} req/s asked of BASE, {} of NEW",
            b.rate, n.rate
        ));
    }
    notes
}

/// The side-by-side table.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<12} {:>12} {:>12} {:>8}  {:<10} {}",
        "figure", "base", "new", "ratio", "tolerance", "verdict"
    );
    for r in rows {
        let ratio = r
            .ratio
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x"));
        out.push_str(&format!(
            "\n{:<12} {:>12} {:>12} {:>8}  {:<10} {}",
            r.figure.name(),
            r.figure.show(r.base),
            r.figure.show(r.new),
            ratio,
            format!("{}%", r.tolerance * 100.0),
            r.verdict
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_is_worse_only_beyond_its_margin_and_in_its_own_direction() {
        // Latency: lower is better.
        assert_eq!(judge(false, 100.0, 104.0, 0.05), Judgement::Same);
        assert_eq!(judge(false, 100.0, 106.0, 0.05), Judgement::Worse);
        assert_eq!(judge(false, 100.0, 90.0, 0.05), Judgement::Better);
        // Throughput: higher is better.
        assert_eq!(judge(true, 100.0, 90.0, 0.05), Judgement::Worse);
        assert_eq!(judge(true, 100.0, 110.0, 0.05), Judgement::Better);
        // From zero errors, any error is worse; zero stays the same.
        assert_eq!(judge(false, 0.0, 1.0, 0.05), Judgement::Worse);
        assert_eq!(judge(false, 0.0, 0.0, 0.05), Judgement::Same);
    }

    #[test]
    fn tolerances_are_one_margin_overridden_per_figure() {
        let mut t = Tolerances::default();
        assert_eq!(t.of(Figure::Latency(2)), 0.05);
        t.add("10%").unwrap();
        t.add("max=50%").unwrap();
        assert_eq!(t.of(Figure::Latency(2)), 0.1);
        assert_eq!(t.of(Figure::Latency(4)), 0.5);
        t.add("p99 = 0.2").unwrap();
        assert!((t.of(Figure::Latency(2)) - 0.2).abs() < 1e-12);
        assert!(t.add("p98=5%").unwrap_err().contains("\"p98\""));
        assert!(t.add("five").unwrap_err().contains("\"five\""));
        assert!(t.add("-5%").is_err());
    }
}
