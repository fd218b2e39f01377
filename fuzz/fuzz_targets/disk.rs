//! Fuzz target `disk`: see `brummerd::fuzz::disk` and docs/reliability.md. Its files go
//! to a scratch directory of this process, reused by every run (left in $TMPDIR: libFuzzer
//! ends with `exit`, which runs no destructor).
#![no_main]

use std::sync::LazyLock;

static DIR: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("a scratch directory for the fuzz target"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| brummerd::fuzz::disk(DIR.path(), data));
