//! The fuzz scripts (`crate::fuzz`) over proptest's inputs, so the normal
//! test run checks what `cargo fuzz` checks, and the committed fuzz corpus
//! seeds replay here.

#[allow(unused_imports)]
use super::prelude::*;

use proptest::prelude::*;

use super::util::t0;
use crate::fuzz::{client_script, server_script};

proptest! {
    #![proptest_config(ProptestConfig { cases: super::pair::cases() * 4, ..ProptestConfig::default() })]

    #[test]
    fn server_survives_any_input_sequence(script in prop::collection::vec(any::<u8>(), 0..2_048)) {
        server_script(&script, t0());
    }

    #[test]
    fn client_survives_any_input_sequence(script in prop::collection::vec(any::<u8>(), 0..2_048)) {
        client_script(&script, t0());
    }
}

#[test]
fn committed_fuzz_corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus");
    let mut replayed = 0;
    for target in ["server", "client"] {
        let Ok(entries) = std::fs::read_dir(format!("{dir}/{target}")) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            if target == "server" {
                server_script(&data, t0())
            } else {
                client_script(&data, t0())
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no corpus under {dir}");
}
