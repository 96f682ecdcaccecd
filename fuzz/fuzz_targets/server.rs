//! Arbitrary input sequences against the echo server connection; the
//! invariants are checked inside `echo_core::fuzz::server_script`.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static T0: OnceLock<Instant> = OnceLock::new();
    echo_core::fuzz::server_script(data, *T0.get_or_init(Instant::now));
});
