//! HdrHistogram's `.hgrm` percentile-distribution text (`--hgrm`), as its
//! plotters read it.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// The percentile distribution of `h` (nanoseconds) with values in
/// microseconds; `TotalCount` is the count of values up to that one,
/// ending at the total.
#[must_use]
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".into()
        };
        let _ = writeln!(
            out,
            "{:12.3} {:14.12} {:10} {:>14}",
            v.value_iterated_to() as f64 / 1e3,
            q,
            total,
            inv
        );
    }
    let _ = write!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n#[Buckets = {:12}, SubBuckets     = {:12}]\n",
        h.mean() / 1e3,
        h.stdev() / 1e3,
        h.max() as f64 / 1e3,
        h.len(),
        h.buckets(),
        sub_buckets(h)
    );
    out
}

/// HdrHistogram's sub-bucket count (the `SubBuckets` of an `.hgrm` footer):
/// the power of two that holds 2 x 10^digits, the largest value kept at
/// single-unit resolution (the Rust crate keeps the figure private).
fn sub_buckets(h: &Histogram<u64>) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(h.sigfig()));
    largest.next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_histogram;

    #[test]
    fn the_hgrm_file_counts_up_to_the_total_and_its_footer_is_the_histograms() {
        let mut latency = new_histogram();
        for us in 1..=5_000u64 {
            latency.record(us * 1_000).unwrap();
        }
        let text = hgrm(&latency);
        let counts: Vec<u64> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "cumulative");
        assert_eq!(counts.last(), Some(&5_000), "ends at the total");
        assert!(text.contains("Total count    =         5000"), "{text}");
        assert!(text.contains("SubBuckets     =         2048"), "{text}");
        let buckets = format!("Buckets = {:12}", latency.buckets());
        assert!(text.contains(&buckets), "{text}");
        // Java's HdrHistogram: 3 significant digits take 2048 sub-buckets.
        assert_eq!(sub_buckets(&Histogram::<u64>::new(2).unwrap()), 256);
    }
}
