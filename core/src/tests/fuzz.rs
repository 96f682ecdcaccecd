//! The fuzz scripts (`crate::fuzz`) over proptest's inputs, so the normal
//! test run checks what `cargo fuzz` checks, and the committed fuzz corpus
//! seeds replay here.

#[allow(unused_imports)]
use super::prelude::*;

use proptest::prelude::*;

use super::util::t0;
use crate::fuzz::{client_script, proxy_script, server_script};

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

    #[test]
    fn proxy_decoder_gives_one_result_at_any_split(script in prop::collection::vec(any::<u8>(), 0..300)) {
        proxy_script(&script);
    }
}

#[test]
fn committed_fuzz_corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus");
    let mut replayed = 0;
    for target in ["server", "client", "proxy"] {
        let Ok(entries) = std::fs::read_dir(format!("{dir}/{target}")) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            match target {
                "server" => server_script(&data, t0()),
                "client" => client_script(&data, t0()),
                _ => proxy_script(&data),
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no corpus under {dir}");
}
