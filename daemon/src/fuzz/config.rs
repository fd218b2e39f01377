//! Fuzz target `config`: the config loader (`config::load`) on real files: a main file, two
//! drop-ins and two env files, each present or absent, written into a directory the caller
//! owns. The input is a flags byte (main file required, running as root) and then the
//! files' contents separated by 0x1E (ASCII record separator); missing parts are absent
//! files.
//!
//! Checks: `load` returns (no panic, no hang); twice the same result; a failure has at least
//! one error, each naming a file of the case with a line inside it (or none) and rendering
//! as one line; a success holds only valid names, each process's env file and working
//! directory as the loader resolved them, and the files it read.

use super::input::Input;
use crate::config::{self, LoadOptions};
use std::path::{Path, PathBuf};

const SEPARATOR: u8 = 0x1e;

/// The files of a case, relative to its directory, in input order.
const FILES: [&str; 5] = [
    "brummer.toml",
    "processes.d/10-a.toml",
    "processes.d/20-b.toml",
    "a.env",
    "processes.d/b.env",
];

/// Runs one case in `dir` (an empty or previously used directory of this target).
pub fn config(dir: &Path, data: &[u8]) {
    // A path out of the case's directory could name a device that never ends (/dev/zero)
    // or blocks (a FIFO): the loader reads what the administrator names, so such a case
    // says nothing about it. Skipped rather than mutated, so the fuzzer learns to avoid it.
    if [&b"/dev"[..], b"/proc", b"/sys", b"/run", b".."]
        .iter()
        .any(|p| data.windows(p.len()).any(|w| w == *p))
    {
        return;
    }
    let mut input = Input::new(data);
    let flags = input.u8();
    let parts: Vec<&[u8]> = input.rest().split(|&b| b == SEPARATOR).collect();
    std::fs::create_dir_all(dir.join("processes.d")).expect("case directory");
    let mut texts: Vec<Option<&[u8]>> = Vec::new();
    for (i, file) in FILES.iter().enumerate() {
        let path = dir.join(file);
        match parts.get(i) {
            Some(bytes) => {
                std::fs::write(&path, bytes).expect("write case file");
                texts.push(Some(bytes));
            }
            None => {
                let _ = std::fs::remove_file(&path);
                texts.push(None);
            }
        }
    }
    let opts = LoadOptions {
        main: dir.join(FILES[0]),
        dropin_dir: None,
        main_required: flags & 1 == 1,
        as_root: flags & 2 == 2,
        cgroup: Default::default(),
    };
    let first = config::load(&opts);
    let again = config::load(&opts);
    assert_eq!(first, again, "two loads of the same files differ");
    match first {
        Ok(c) => {
            for (name, def) in &c.processes {
                assert!(brummer_proto::validate_name(name).is_ok(), "{name:?}");
                assert_eq!(&def.name, name);
                if let Some(cwd) = &def.cwd {
                    assert!(cwd.is_absolute(), "cwd {cwd:?}");
                }
            }
            if let Some(d) = &c.daemon.log_dir {
                assert!(d.is_absolute(), "log_dir {d:?}");
            }
            let expected: Vec<PathBuf> = [0, 1, 2]
                .into_iter()
                .filter(|&i| texts[i].is_some())
                .map(|i| dir.join(FILES[i]))
                .collect();
            assert_eq!(c.files, expected, "files read");
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a failed load with no error");
            for e in &errors.0 {
                let shown = e.to_string();
                assert!(!shown.contains('\n'), "an error on two lines: {shown:?}");
                let Some(i) = FILES.iter().position(|f| dir.join(f) == e.file) else {
                    // An env file named by an absolute path or outside the case: it is
                    // not ours to count lines in.
                    continue;
                };
                if let (Some(line), Some(text)) = (e.line, texts[i]) {
                    let lines = text.iter().filter(|&&b| b == b'\n').count() + 1;
                    assert!(
                        (1..=lines).contains(&line),
                        "{shown:?}: line {line} of a file of {lines} lines"
                    );
                }
            }
        }
    }
}
