//! HdrHistogram's interval-log format (`.hlog`): what `bench --hlog` writes
//! and `echo-client merge` reads, so a load spread over several machines is
//! summarised as one. Histograms are written with the compressed V2
//! serializer (what Java's HdrHistogram tools read); values in nanoseconds.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, LogIteratorError, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

/// The tag of corrected (or closed-loop) round trips.
pub const TAG_LATENCY: &str = "latency";
/// The tag of open-loop latencies from the actual send.
pub const TAG_RAW: &str = "raw";

/// Writes `histograms` (tag, histogram) for one measured window that
/// started at `start` and lasted `length`, with `comment` on top.
///
/// # Errors
/// A serialization or write failure, as a message.
pub fn write(
    out: &mut impl std::io::Write,
    comment: &str,
    identity: &crate::model::Identity,
    start: SystemTime,
    length: Duration,
    histograms: &[(&str, &Histogram<u64>)],
) -> Result<(), String> {
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder.add_comment(comment);
    // Which test and which share, as comments other tools skip.
    let run = identity.run_id.as_ref().map(|id| format!("run={id}"));
    let shard = identity.shard.map(|s| format!("shard={s}"));
    for line in [run, shard].into_iter().flatten() {
        builder.add_comment(&line);
    }
    builder.with_start_time(start).with_base_time(start);
    let mut log = builder
        .begin_log_with(out, &mut serializer)
        .map_err(|e| e.to_string())?;
    for (tag, h) in histograms {
        log.write_histogram(h, Duration::ZERO, length, Tag::new(tag))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Which test and which share a log says it is (its `#run=` and `#shard=`
/// comments, as [`write`](fn@write) puts them); nothing for other tools' logs.
#[must_use]
pub fn identity(bytes: &[u8]) -> crate::model::Identity {
    let mut id = crate::model::Identity::default();
    for line in bytes
        .split(|b| *b == b'\n')
        .take_while(|l| l.starts_with(b"#"))
    {
        let line = String::from_utf8_lossy(&line[1..]);
        if let Some(run) = line.strip_prefix("run=") {
            id.run_id = Some(run.trim().to_owned());
        } else if let Some(shard) = line.strip_prefix("shard=") {
            id.shard = shard.trim().parse().ok();
        }
    }
    id
}

/// Every histogram in an interval log, summed per tag (untagged ones under
/// [`TAG_LATENCY`]).
///
/// # Errors
/// A message naming what could not be read.
pub fn read(bytes: &[u8]) -> Result<BTreeMap<String, Histogram<u64>>, String> {
    let mut sums: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| match e {
            LogIteratorError::ParseError { offset } => format!(
                "not an HdrHistogram interval log (.hlog, as bench --hlog writes): unreadable at byte {offset}"
            ),
        })?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| format!("a histogram is not base64: {e}"))?;
        let h: Histogram<u64> = deserializer
            .deserialize(&mut raw.as_slice())
            .map_err(|e| format!("a histogram does not decode: {e:?}"))?;
        let tag = interval
            .tag()
            .map_or(TAG_LATENCY.to_owned(), |t| t.as_str().to_owned());
        // Summed into an auto-resizing histogram: logs from other tools
        // may have other bounds.
        let sum = sums.entry(tag).or_insert_with(|| {
            let mut h = Histogram::new(3).expect("3 significant digits are valid");
            h.auto(true);
            h
        });
        sum.add(&h)
            .map_err(|e| format!("cannot add histograms: {e:?}"))?;
    }
    if sums.is_empty() {
        return Err("no histograms in it (not an .hlog file?)".into());
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_reads_back_and_two_logs_merge_into_their_sum() {
        let mut a = Histogram::<u64>::new(3).unwrap();
        let mut b = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1_000u64 {
            a.record(v * 1_000).unwrap();
            b.record(v * 2_000).unwrap();
        }
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut log_a = Vec::new();
        let shard = crate::model::Identity {
            run_id: Some("nightly-7".into()),
            shard: Some(crate::model::Shard::new(2, 3).unwrap()),
            start_skew_us: None,
        };
        write(
            &mut log_a,
            "a",
            &shard,
            start,
            Duration::from_secs(2),
            &[(TAG_LATENCY, &a), (TAG_RAW, &b)],
        )
        .unwrap();
        let text = String::from_utf8(log_a.clone()).unwrap();
        assert!(text.contains("Tag=latency,0.000,2.000,"), "{text}");
        assert!(text.contains(",HISTFAAA"), "compressed V2: {text}");
        let back = read(&log_a).unwrap();
        assert_eq!(
            identity(&log_a),
            shard,
            "the test and the share read back: {text}"
        );
        let same = |x: &Histogram<u64>, y: &Histogram<u64>| {
            x.len() == y.len()
                && x.max() == y.max()
                && [0.5, 0.99]
                    .iter()
                    .all(|q| x.value_at_quantile(*q) == y.value_at_quantile(*q))
        };
        assert!(same(&back[TAG_LATENCY], &a));
        assert!(same(&back[TAG_RAW], &b));
        let mut log_b = Vec::new();
        write(
            &mut log_b,
            "b",
            &crate::model::Identity::default(),
            start,
            Duration::from_secs(2),
            &[(TAG_LATENCY, &b)],
        )
        .unwrap();
        let mut both = read(&log_a).unwrap();
        let more = read(&log_b).unwrap();
        both.get_mut(TAG_LATENCY)
            .unwrap()
            .add(&more[TAG_LATENCY])
            .unwrap();
        assert_eq!(both[TAG_LATENCY].len(), 2_000);
        assert_eq!(both[TAG_LATENCY].max(), b.max());
        assert!(read(b"#just a comment\n").is_err());
    }
}
