//! The fuzz corpora and regression inputs, replayed on stable by `cargo test`: every file of
//! `fuzz/corpus/TARGET/` (what cargo-fuzz kept, minimised) and `fuzz/regressions/TARGET/`
//! (the inputs that once failed, one per fixed bug) goes through the same entry point as
//! the fuzz target, `brummerd::fuzz::run`, which panics when an invariant breaks. A corpus
//! that is missing or empty fails the test: a replay of nothing proves nothing.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// The stack of brummerd's main thread, where the configuration is loaded (8 MiB, the
/// usual `ulimit -s`). The replay runs on a thread this big, not on a test thread's 2 MiB:
/// the deepest regular expression the loader accepts (nesting 250, the regex crate's own
/// limit) is compiled recursively, and this debug build's frames are several times the
/// release build's (measured in docs/reliability.md).
const MAIN_THREAD_STACK: usize = 8 << 20;

fn replay(target: &'static str) {
    std::thread::Builder::new()
        .name(format!("replay-{target}"))
        .stack_size(MAIN_THREAD_STACK)
        .spawn(move || replay_here(target))
        .expect("replay thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn replay_here(target: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "no corpus for fuzz target {target} in {}",
        root.join("corpus").display()
    );
    let regressions = files(&root.join("regressions").join(target));
    let scratch = tempfile::tempdir().expect("scratch directory");
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("read corpus file");
        let r = std::panic::catch_unwind(|| brummerd::fuzz::run(target, scratch.path(), &data));
        if r.is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target {target} fails on (rerun one with `cargo +nightly fuzz run {target} FILE` in fuzz/):\n{}",
        failed.join("\n")
    );
}

#[test]
fn control() {
    replay("control");
}

#[test]
fn config() {
    replay("config");
}

#[test]
fn disk() {
    replay("disk");
}

#[test]
fn ring() {
    replay("ring");
}

#[test]
fn dbus_escape() {
    replay("dbus_escape");
}

#[test]
fn every_target_is_replayed() {
    assert_eq!(
        brummerd::fuzz::TARGETS,
        ["control", "config", "disk", "ring", "dbus_escape"]
    );
}
