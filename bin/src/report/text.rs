//! The human-readable report: the load line, the latency line(s), the
//! connect line, back ends, and the THRESHOLDS block when any were given.

use std::fmt::Write as _;

use crate::model::{ConnectPercentiles, Interval, Percentiles, Summary};
use crate::threshold::Verdict;

/// The whole summary, as `bench` prints it.
#[must_use]
pub fn summary(s: &Summary) -> String {
    let c = &s.connect_us;
    let churn = if s.reconnects > 0 {
        format!(
            ": {} first, {} reconnects while measuring = {:.0}/s",
            s.connects.saturating_sub(s.reconnects),
            s.reconnects,
            s.reconnects as f64 / s.seconds.max(1e-9)
        )
    } else {
        String::new()
    };
    let mut out = format!(
        "{}\nconnect us: {} ({} connects{churn})",
        load(s),
        short(c),
        s.connects
    );
    let id = &s.identity;
    if !id.is_empty() {
        let mut parts = Vec::new();
        if let Some(run) = &id.run_id {
            parts.push(format!("run {run}"));
        }
        if let Some(shard) = id.shard {
            parts.push(format!("shard {shard}"));
        }
        if let Some(skew) = id.start_skew_us {
            parts.push(format!(
                "began {} {} --start-at",
                crate::threshold::show_time(skew.abs()),
                if skew < 0.0 { "before" } else { "after" }
            ));
        }
        let _ = write!(out, "\n{}", parts.join(", "));
    }
    if let Some(stall) = &s.stall {
        let _ = write!(
            out,
            "\nlongest stall: {} (connection {}, from {:.2}s)",
            crate::threshold::show_time(stall.longest_us),
            stall.connection,
            stall.at
        );
    }
    if let Some(tls) = &s.handshakes {
        let _ = write!(
            out,
            "\ntls handshake us: {} ({} handshakes: {} full, {} resumed)",
            short(&tls.handshake_us),
            tls.handshakes,
            tls.handshakes.saturating_sub(tls.resumed),
            tls.resumed
        );
    }
    if let Some(reason) = &s.tls_reason {
        let _ = write!(out, "\nfirst TLS failure: {reason}");
    }
    for (name, b) in &s.backends {
        let _ = write!(
            out,
            "\nbackend {name}: {} connections, {} requests, p50 {:.1}us  p99 {:.1}us",
            b.connections, b.requests, b.p50, b.p99
        );
    }
    if !s.thresholds.is_empty() {
        let _ = write!(out, "\n{}", thresholds(&s.thresholds));
    }
    out
}

/// `p50 1.0  p90 2.0  p99 3.0  p99.9 4.0  max 5.0`.
#[must_use]
pub fn percentiles(p: &Percentiles) -> String {
    format!(
        "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        p.p50, p.p90, p.p99, p.p99_9, p.max
    )
}

fn short(p: &ConnectPercentiles) -> String {
    format!(
        "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        p.p50, p.p90, p.p99, p.max
    )
}

fn load(s: &Summary) -> String {
    let errors = match s.errors {
        0 => "0".to_owned(),
        n => format!("{n} ({})", s.failures.describe()),
    };
    let Some(open) = &s.open_loop else {
        return format!(
            "{} connections x {} B: {} requests in {:.2}s = {:.0} req/s, {:.1} MB/s, errors {errors}\n\
             latency us: {}",
            s.connections,
            s.len,
            s.requests,
            s.seconds,
            s.requests_per_sec,
            s.mb_per_sec,
            percentiles(&s.latency_us),
        );
    };
    let behind = if open.skipped > 0 {
        format!(
            "; {} sends skipped at --max-in-flight: the server cannot keep up",
            open.skipped
        )
    } else {
        String::new()
    };
    format!(
        "{} connections x {} B at {} req/s: {} requests in {:.2}s = {:.0} req/s, {:.1} MB/s, errors {errors}, late sends {}{behind}\n\
         latency us (corrected, from the intended send): {}\n\
         latency us (raw, from the actual send):         {}",
        s.connections,
        s.len,
        rate_text(open.rate),
        s.requests,
        s.seconds,
        s.requests_per_sec,
        s.mb_per_sec,
        open.late,
        percentiles(&s.latency_us),
        percentiles(&open.latency_raw_us),
    )
}

/// The THRESHOLDS block: a `✓` or `✗` line per threshold with the measured
/// value (k6's convention).
#[must_use]
pub fn thresholds(verdicts: &[Verdict]) -> String {
    let width = verdicts
        .iter()
        .map(|v| v.threshold.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::from("THRESHOLDS");
    for v in verdicts {
        let _ = write!(
            out,
            "\n  {} {:width$}  {} = {}",
            if v.held { "✓" } else { "✗" },
            v.threshold,
            v.figure,
            v.shown
        );
    }
    out
}

/// One interval's line: `  2.0s  10067 req/s  errors 0  conns 10  p50 45.1us  p99 120.3us`.
#[must_use]
pub fn interval(i: &Interval) -> String {
    let mut line = format!(
        "{:>6.1}s {:>9.0} req/s  errors {}  conns {}  p50 {:.1}us  p99 {:.1}us  stall {}",
        i.elapsed.as_secs_f64(),
        i.requests_per_sec(),
        i.errors,
        i.connections,
        i.p50_us,
        i.p99_us,
        crate::threshold::show_time(i.stall_us)
    );
    if i.cut > 0 {
        let _ = write!(line, "  cut {}", i.cut);
    }
    if i.refused > 0 {
        let _ = write!(line, "  refused {}", i.refused);
    }
    for b in &i.backends {
        let _ = write!(
            line,
            "  | {} {:.0} req/s p50 {:.1}us p99 {:.1}us",
            b.name,
            b.requests as f64 / i.seconds.max(1e-9),
            b.p50_us,
            b.p99_us
        );
    }
    line
}

/// A rate as asked for: `1000`, `0.5`, `1.5`, never rounded to a whole
/// number (at most three decimals, as `--rate` takes).
#[must_use]
pub fn rate_text(rate: f64) -> String {
    let text = format!("{rate:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}
