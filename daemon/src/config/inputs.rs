//! What a load read ([`Inputs`]: every file, by the hash of the bytes parsed, and the
//! drop-in listing), so that a re-exec can tell, without parsing again, that loading now
//! would read exactly what the running daemon loaded ([`unchanged`]).

use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};

use super::LoadOptions;

/// The inputs of one successful load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inputs {
    /// Every file read, in order (main file, drop-ins, the env files they name), with
    /// what was read: `None` when the main file was absent (allowed when not required).
    files: Vec<(PathBuf, Option<Fingerprint>)>,
    /// The drop-in files the directory listed, sorted.
    dropins: Vec<PathBuf>,
    /// A `user` or `group` was looked up: the user database is not fingerprinted, so such
    /// a configuration is never called unchanged.
    users: bool,
}

/// A file's length and a hash of its bytes. SipHash with a fixed key: the same bytes give
/// the same value in this process; an edit that keeps both length and hash is a 2^-64
/// accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: usize,
    hash: u64,
}

impl Fingerprint {
    fn of(bytes: &[u8]) -> Fingerprint {
        let mut h = DefaultHasher::new();
        h.write(bytes);
        Fingerprint {
            len: bytes.len(),
            hash: h.finish(),
        }
    }
}

impl Inputs {
    /// Records a file as read, with the bytes that were parsed.
    pub(crate) fn read(&mut self, path: &Path, bytes: &[u8]) {
        self.files
            .push((path.to_path_buf(), Some(Fingerprint::of(bytes))));
    }

    /// Records the main file as absent.
    pub(crate) fn absent(&mut self, path: &Path) {
        self.files.push((path.to_path_buf(), None));
    }

    pub(crate) fn listed(&mut self, dropins: &[PathBuf]) {
        self.dropins = dropins.to_vec();
    }

    pub(crate) fn looked_up_users(&mut self) {
        self.users = true;
    }
}

/// Whether loading with `opts` now would read exactly the bytes `inputs` recorded: the same
/// drop-in files listed, every file present with the same length and hash, or still absent.
/// Then the load would give the same result (it reads nothing else but the user database,
/// which rules this answer out when used). Any doubt (a read error) answers false.
pub fn unchanged(opts: &LoadOptions, inputs: &Inputs) -> bool {
    if inputs.users {
        return false;
    }
    let (listed, errors) = super::load::list_dropins(&super::dropin_dir(opts));
    if !errors.is_empty() || listed != inputs.dropins {
        return false;
    }
    inputs
        .files
        .iter()
        .all(|(path, seen)| match (std::fs::read(path), seen) {
            (Ok(bytes), Some(f)) => Fingerprint::of(&bytes) == *f,
            (Err(e), None) => e.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        })
}
