//! Fuzz target `control`: see `brummerd::fuzz::control` and docs/reliability.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brummerd::fuzz::control(data));
