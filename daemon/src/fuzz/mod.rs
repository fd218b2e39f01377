//! Entry points of the fuzz targets (`fuzz/`, run with cargo-fuzz on nightly) and of their
//! replay on stable (`daemon/tests/fuzz_corpus.rs` feeds every committed corpus and
//! regression input through them). Each takes the raw fuzz input, builds a case from it,
//! runs the daemon's own code on it and panics when an invariant breaks; what each checks
//! is in its module's first lines and in docs/reliability.md.
//!
//! Not part of brummerd's API: hidden from the docs, called by nothing in the daemon. It
//! sits in the top layer so that it may reach every module it exercises; the few items it
//! needs that were private are `pub(crate)`, not `pub`.

mod config;
mod control;
mod dbus;
mod disk;
mod input;
mod ring;

pub use config::config;
pub use control::control;
pub use dbus::dbus_escape;
pub use disk::disk;
pub use ring::ring;

/// The targets by name, as `fuzz/fuzz_targets/NAME.rs` and the corpus folders name them,
/// and whether each needs a scratch directory of its own.
pub const TARGETS: [&str; 5] = ["control", "config", "disk", "ring", "dbus_escape"];

/// Runs target `name` on `data`; `dir` is a scratch directory the target may fill (the
/// config and disk targets write their files there). Panics on an unknown name.
pub fn run(name: &str, dir: &std::path::Path, data: &[u8]) {
    match name {
        "control" => control(data),
        "config" => config(dir, data),
        "disk" => disk(dir, data),
        "ring" => ring(data),
        "dbus_escape" => dbus_escape(data),
        other => panic!("no fuzz target {other:?} (known: {TARGETS:?})"),
    }
}
