//! Errors a caller of the core can get: misuse of the API and bad configuration.
//!
//! What the *peer* does wrong is not an error of the API; it surfaces as a
//! protocol event (see [`EchoError`](crate::EchoError)).

/// The adapter called an input in a state where it makes no sense.
///
/// A correct adapter never sees these; they exist so a bug in one shows up as
/// a typed error instead of silently corrupting the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// `handle_written(n)` with `n` larger than the pending output.
    #[error("reported {written} bytes written but only {pending} were pending")]
    WrittenTooMuch {
        /// The `n` reported.
        written: usize,
        /// What was pending.
        pending: usize,
    },
    /// Data after the peer's end-of-file.
    #[error("data received after the read side was closed")]
    AfterReadClosed,
}

/// A configuration value the core cannot work with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Water marks need `0 < high` and `low <= high`.
    #[error("invalid water marks high={high} low={low}: need 0 < high and low <= high")]
    WaterMarks {
        /// The pause threshold given.
        high: usize,
        /// The resume threshold given.
        low: usize,
    },
}
