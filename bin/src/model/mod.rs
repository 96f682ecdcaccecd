//! The bench's result as one typed value, read by every reporter, threshold
//! and comparison (vegeta's one `Metrics`, oha's `ResultData`): a [`Run`]
//! holds the histograms; its [`Summary`] is what `--json` prints and what
//! `compare` reads back.

pub mod failure;
pub mod file;
pub mod histogram;
pub mod interval;
pub mod run;
pub mod shard;
pub mod summary;

pub use failure::{Failure, Failures};
pub use histogram::{new_histogram, percentiles};
pub use interval::{
    BackendInterval, Interval, IntervalBackend, IntervalLatency, IntervalSummary, SoFar,
};
pub use run::{Backend, MergeError, OpenLoop, Run, Stall};
pub use shard::{Identity, SetError, Shard, missing_shards};
pub use summary::{
    BackendSummary, ConnectPercentiles, HandshakeSummary, OpenLoopSummary, Percentiles,
    SCHEMA_VERSION, StallSummary, Summary,
};
