//! Histograms inside a saved [`Run`](super::Run): HdrHistogram's compressed
//! V2 encoding in base64 (what `.hlog` lines carry), so a saved run keeps
//! every recorded value and merges exactly, and Java's tools could read it.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{
    Deserializer as HdrDeserializer, Serializer as _, V2DeflateSerializer,
};
use serde::{Deserialize, Deserializer, Serializer};

/// A new histogram for nanosecond latencies up to a minute, three
/// significant digits.
#[must_use]
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// `serialize_with`: the histogram as base64 of compressed V2.
pub(crate) fn serialize<S: Serializer>(
    h: &Histogram<u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| serde::ser::Error::custom(format!("cannot encode a histogram: {e:?}")))?;
    serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `deserialize_with`: the reverse of [`serialize`].
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Histogram<u64>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| serde::de::Error::custom(format!("a histogram is not base64: {e}")))?;
    let mut h: Histogram<u64> = HdrDeserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| serde::de::Error::custom(format!("a histogram does not decode: {e:?}")))?;
    // Runs from other shards add into it whatever their range.
    h.auto(true);
    Ok(h)
}

/// p50, p90, p99, p99.9 and the maximum of `h`, in microseconds.
#[must_use]
pub fn percentiles(h: &Histogram<u64>) -> [f64; 5] {
    let at = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    [at(0.5), at(0.9), at(0.99), at(0.999), h.max() as f64 / 1e3]
}
