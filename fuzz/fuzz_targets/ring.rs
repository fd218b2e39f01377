//! Fuzz target `ring`: see `brummerd::fuzz::ring` and docs/reliability.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brummerd::fuzz::ring(data));
