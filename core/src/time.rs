//! The clock type the state machines are told.
//!
//! With the `std` feature it is `std::time::Instant`. Without it, an
//! [`Instant`] is a duration since an epoch the caller picks (boot, say):
//! the core only ever compares instants and adds durations to them, so any
//! monotonic clock will do.

#[cfg(feature = "std")]
pub use std::time::Instant;

#[cfg(not(feature = "std"))]
pub use own::Instant;

#[cfg(not(feature = "std"))]
mod own {
    use core::ops::{Add, AddAssign, Sub};
    use core::time::Duration;

    /// A point on the caller's monotonic clock.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Instant(Duration);

    impl Instant {
        /// The instant `since` after the caller's epoch.
        #[must_use]
        pub const fn from_epoch(since: Duration) -> Self {
            Self(since)
        }

        /// Time since the caller's epoch.
        #[must_use]
        pub const fn since_epoch(self) -> Duration {
            self.0
        }

        /// `self + duration`, or `None` past the end of time.
        #[must_use]
        pub fn checked_add(&self, duration: Duration) -> Option<Self> {
            self.0.checked_add(duration).map(Self)
        }

        /// Time since `earlier`, or zero if `earlier` is later.
        #[must_use]
        pub fn saturating_duration_since(&self, earlier: Self) -> Duration {
            self.0.saturating_sub(earlier.0)
        }
    }

    impl Add<Duration> for Instant {
        type Output = Self;

        /// Panics past the end of time, as `std::time::Instant` does.
        fn add(self, duration: Duration) -> Self {
            Self(self.0 + duration)
        }
    }

    impl AddAssign<Duration> for Instant {
        /// Panics past the end of time, as `std::time::Instant` does.
        fn add_assign(&mut self, duration: Duration) {
            self.0 += duration;
        }
    }

    impl Sub for Instant {
        type Output = Duration;

        /// Saturates at zero, as `std::time::Instant` does.
        fn sub(self, earlier: Self) -> Duration {
            self.saturating_duration_since(earlier)
        }
    }
}
