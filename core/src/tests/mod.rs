mod client;
mod completion;
mod connection;
mod datagram;
mod endpoint;
mod faults;
#[cfg(feature = "std")]
mod fuzz;
mod pair;
#[cfg(feature = "std")]
mod proxy;
mod server;
mod util;

/// What the standard prelude gives, for the `no_std` build of the crate
/// (the tests themselves always have `std`).
mod prelude {
    #[allow(unused_imports)]
    pub(super) use std::{
        borrow::ToOwned,
        boxed::Box,
        format,
        string::{String, ToString},
        vec,
        vec::Vec,
    };
}
