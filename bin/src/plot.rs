//! Latency percentile plots as SVG: latency (log scale) against percentile
//! on HdrHistogram's `1/(1-p)` axis, so the tail and any stall stand out.
//! Drawn with `plotters` (its SVG backend: no system libraries, no fonts).

use std::fmt;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// One line of a plot: latencies in microseconds at each percentile.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// (percentile from 0 to 1, latency in microseconds), percentile rising.
    pub points: Vec<(f64, f64)>,
}

/// Why nothing could be drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlotError {
    /// A series with fewer than two measured values.
    TooFewValues {
        /// Its label.
        label: String,
    },
    /// An `.hgrm` file without percentile lines.
    NotHgrm {
        /// What was read.
        label: String,
    },
    /// Nothing to draw at all.
    NoSeries,
    /// The SVG backend failed.
    Drawing(String),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooFewValues { label } => write!(
                f,
                "{label}: fewer than two latencies measured; a percentile plot needs more"
            ),
            Self::NotHgrm { label } => {
                write!(f, "{label}: no percentile lines (not an .hgrm file?)")
            }
            Self::NoSeries => f.write_str("nothing to plot"),
            Self::Drawing(e) => write!(f, "cannot draw the plot: {e}"),
        }
    }
}

/// The highest percentile drawn: 1/(1-p) = 10^6.
const X_MAX: f64 = 1e6;

/// The percentile distribution of `histogram` (values in nanoseconds).
///
/// # Errors
/// [`PlotError::TooFewValues`] with fewer than two values.
pub fn from_histogram(label: &str, histogram: &Histogram<u64>) -> Result<Series, PlotError> {
    if histogram.len() < 2 {
        return Err(PlotError::TooFewValues {
            label: label.to_owned(),
        });
    }
    let points = histogram
        .iter_quantiles(5)
        .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64 / 1e3))
        .collect();
    Ok(Series {
        label: label.to_owned(),
        points,
    })
}

/// The percentile distribution in an `.hgrm` text (as `bench --hgrm`
/// writes it, and HdrHistogram's own tools).
///
/// # Errors
/// [`PlotError::NotHgrm`] when no line parses; [`PlotError::TooFewValues`]
/// when the file counts fewer than two values.
pub fn from_hgrm(label: &str, text: &str) -> Result<Series, PlotError> {
    let mut points = Vec::new();
    let mut total = 0u64;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [value, percentile, count, _] = fields[..]
            && let (Ok(v), Ok(p), Ok(c)) = (
                value.parse::<f64>(),
                percentile.parse::<f64>(),
                count.parse::<u64>(),
            )
        {
            points.push((p, v));
            total = c;
        }
    }
    if points.is_empty() {
        return Err(PlotError::NotHgrm {
            label: label.to_owned(),
        });
    }
    if total < 2 {
        return Err(PlotError::TooFewValues {
            label: label.to_owned(),
        });
    }
    Ok(Series {
        label: label.to_owned(),
        points,
    })
}

/// Where a percentile lies on the plot's x axis: `1/(1-p)`, capped.
#[must_use]
pub fn x_of(percentile: f64) -> f64 {
    if percentile >= 1.0 - 1.0 / X_MAX {
        X_MAX
    } else {
        1.0 / (1.0 - percentile)
    }
}

/// The percentile plot of `series` under `title`, as an SVG document.
///
/// # Errors
/// [`PlotError::NoSeries`] or [`PlotError::TooFewValues`] for an empty
/// input, [`PlotError::Drawing`] if the backend fails.
pub fn percentile_plot(title: &str, series: &[Series]) -> Result<String, PlotError> {
    if series.is_empty() {
        return Err(PlotError::NoSeries);
    }
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if series.iter().any(|s| s.points.len() < 2) {
        let short = series.iter().find(|s| s.points.len() < 2);
        return Err(PlotError::TooFewValues {
            label: short.map(|s| s.label.clone()).unwrap_or_default(),
        });
    }
    // Milliseconds once the tail reaches 10 ms; microseconds below.
    let (unit, scale) = if hi >= 10_000.0 {
        ("ms", 1e-3)
    } else {
        ("µs", 1.0)
    };
    let (y_lo, y_hi) = ((lo * scale * 0.8).max(1e-3), (hi * scale * 1.25).max(1e-2));
    let mut svg = String::new();
    {
        let draw = |e: &dyn fmt::Display| PlotError::Drawing(e.to_string());
        let root = SVGBackend::with_string(&mut svg, (900, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            // Room for the last x label (99.9999%), centred on the right edge.
            .margin_right(40)
            .x_label_area_size(46)
            .y_label_area_size(70)
            .build_cartesian_2d((1f64..X_MAX).log_scale(), (y_lo..y_hi).log_scale())
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc(format!("latency ({unit})"))
            .x_label_formatter(&|x| percentile_label(*x))
            .draw()
            .map_err(|e| draw(&e))?;
        // The usual marks: 50 %, 90 %, 99 %, 99.9 %, 99.99 %.
        for p in [0.5, 0.9, 0.99, 0.999, 0.9999] {
            let x = x_of(p);
            chart
                .draw_series(LineSeries::new(
                    [(x, y_lo), (x, y_hi)],
                    BLACK.mix(0.15).stroke_width(1),
                ))
                .map_err(|e| draw(&e))?;
            chart
                .draw_series([Text::new(
                    percentile_label(x),
                    (x * 1.05, y_hi / 1.1),
                    ("sans-serif", 11),
                )])
                .map_err(|e| draw(&e))?;
        }
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points = s
                .points
                .iter()
                .map(|&(p, v)| (x_of(p), (v * scale).max(y_lo)));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| draw(&e))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    Ok(svg)
}

/// Today's date (UTC) as `YYYY-MM-DD`, for plot titles.
#[must_use]
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Howard Hinnant's civil_from_days.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// One interval's point on the series plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    /// Since measuring began, at the interval's end.
    pub seconds: f64,
    /// Requests per second in the interval.
    pub requests_per_sec: f64,
    /// Its p99 latency, microseconds.
    pub p99_us: f64,
    /// The longest stall that ended in it, microseconds.
    pub stall_us: f64,
}

/// The percentile plot of a bench run: its round trips, or for an open
/// loop the corrected and the raw latencies.
///
/// # Errors
/// As [`percentile_plot`] and [`from_histogram`].
pub fn run_plot(title: &str, run: &crate::model::Run) -> Result<String, PlotError> {
    let series = match &run.open_loop {
        None => vec![from_histogram("round trip", &run.latency)?],
        Some(open) => vec![
            from_histogram("corrected (from the intended send)", &run.latency)?,
            from_histogram("raw (from the actual send)", &open.raw)?,
        ],
    };
    percentile_plot(title, &series)
}

/// Requests per second, p99 latency and the longest stall per interval
/// over time (from `bench --interval`), as an SVG document: three panels
/// sharing the time axis, so a failover or a stall shows as a dip or a
/// spike.
///
/// # Errors
/// [`PlotError::NoSeries`] with fewer than two intervals;
/// [`PlotError::Drawing`] if the backend fails.
pub fn series_plot(title: &str, points: &[SeriesPoint]) -> Result<String, PlotError> {
    if points.len() < 2 {
        return Err(PlotError::NoSeries);
    }
    let t_max = points
        .iter()
        .map(|p| p.seconds)
        .fold(0f64, f64::max)
        .max(1e-3);
    let rps_max = points
        .iter()
        .map(|p| p.requests_per_sec)
        .fold(0f64, f64::max)
        .max(1.0)
        * 1.1;
    let top = |y: fn(&SeriesPoint) -> f64| points.iter().map(y).fold(0f64, f64::max).max(1.0) * 1.1;
    let p99_max = top(|p| p.p99_us);
    let stall_max = top(|p| p.stall_us);
    let mut svg = String::new();
    {
        let draw = |e: &dyn fmt::Display| PlotError::Drawing(e.to_string());
        let root = SVGBackend::with_string(&mut svg, (900, 840)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let root = root
            .titled(title, ("sans-serif", 18))
            .map_err(|e| draw(&e))?;
        let panels = root.split_evenly((3, 1));
        for (area, (label, max, pick)) in panels.iter().zip([
            ("requests/s", rps_max, 1usize),
            ("p99 latency (µs)", p99_max, 2usize),
            ("longest stall (µs)", stall_max, 3usize),
        ]) {
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(80)
                .build_cartesian_2d(0f64..t_max, 0f64..max)
                .map_err(|e| draw(&e))?;
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc(label)
                .draw()
                .map_err(|e| draw(&e))?;
            let line = points.iter().map(|p| {
                let y = match pick {
                    1 => p.requests_per_sec,
                    2 => p.p99_us,
                    _ => p.stall_us,
                };
                (p.seconds, y)
            });
            chart
                .draw_series(LineSeries::new(
                    line,
                    [BLUE, RED, MAGENTA][pick - 1].stroke_width(2),
                ))
                .map_err(|e| draw(&e))?;
        }
        root.present().map_err(|e| draw(&e))?;
    }
    Ok(svg)
}

/// `1/(1-p)` as a percentile label: 1 -> "0%", 10 -> "90%", 100 -> "99%".
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let digits = (x.log10().round() as usize).saturating_sub(2);
    format!("{p:.digits$}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_and_positions() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1_000.0), "99.9%");
        assert_eq!(percentile_label(2.0), "50%");
        assert!((x_of(0.99) - 100.0).abs() < 1e-9);
        assert_eq!(x_of(1.0), X_MAX);
    }

    /// The x axis's last label (99.9999%) is centred on the plot's right
    /// edge: it must fit inside the 900-pixel picture, not be clipped.
    #[test]
    fn the_last_percentile_label_fits_in_the_picture() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for us in 1..=1_000u64 {
            h.record(us * 1_000).unwrap();
        }
        let svg = percentile_plot("t", &[from_histogram("s", &h).unwrap()]).unwrap();
        let last = svg
            .split("<text")
            .filter(|t| t.contains("\n99.9999%\n"))
            .find(|t| t.contains("text-anchor=\"middle\""))
            .unwrap_or_else(|| panic!("no centred 99.9999% label in {svg}"));
        let x: f64 = last
            .split("x=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|x| x.parse().ok())
            .unwrap();
        // About 6 pixels a character at this size; half of it right of x.
        assert!(
            x + 6.0 * 8.0 / 2.0 <= 900.0,
            "the label ends past 900 px at x={x}"
        );
    }

    #[test]
    fn a_known_histogram_gives_its_percentiles() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for us in 1..=1_000u64 {
            h.record(us * 1_000).unwrap(); // 1..=1000 µs, in ns
        }
        let s = from_histogram("uniform", &h).unwrap();
        let at = |p: f64| {
            s.points
                .iter()
                .find(|(q, _)| *q >= p)
                .map(|(_, v)| *v)
                .unwrap()
        };
        assert!((495.0..=505.0).contains(&at(0.5)), "p50 {}", at(0.5));
        assert!((985.0..=995.0).contains(&at(0.99)), "p99 {}", at(0.99));
        assert!(
            s.points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
    }

    #[test]
    fn empty_and_one_value_histograms_say_so() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        let message = from_histogram("run", &h).unwrap_err().to_string();
        assert_eq!(
            message,
            "run: fewer than two latencies measured; a percentile plot needs more"
        );
        h.record(5).unwrap();
        assert!(from_histogram("run", &h).is_err());
        assert_eq!(percentile_plot("t", &[]).unwrap_err(), PlotError::NoSeries);
        assert_eq!(
            from_hgrm("x.hgrm", "hello\n").unwrap_err().to_string(),
            "x.hgrm: no percentile lines (not an .hgrm file?)"
        );
    }

    #[test]
    fn an_hgrm_file_reads_back_as_written() {
        let text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
                    10.000 0.000000000000 1 1.00\n\
                    20.000 0.500000000000 50 2.00\n\
                    90.000 1.000000000000 100 inf\n\
                    #[Mean = 1]\n";
        let s = from_hgrm("run", text).unwrap();
        assert_eq!(s.points, vec![(0.0, 10.0), (0.5, 20.0), (1.0, 90.0)]);
    }
}
