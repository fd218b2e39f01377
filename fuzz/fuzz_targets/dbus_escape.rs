//! Fuzz target `dbus_escape`: see `brummerd::fuzz::dbus_escape` and docs/reliability.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brummerd::fuzz::dbus_escape(data));
