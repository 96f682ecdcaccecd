//! Arbitrary bytes as the start of a `haproxy:` connection; the invariants
//! are checked inside `echo_core::fuzz::proxy_script`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    echo_core::fuzz::proxy_script(data);
});
