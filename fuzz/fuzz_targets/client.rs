//! Arbitrary input sequences against the echo client connection; the
//! invariants are checked inside `echo_core::fuzz::client_script`.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static T0: OnceLock<Instant> = OnceLock::new();
    echo_core::fuzz::client_script(data, *T0.get_or_init(Instant::now));
});
