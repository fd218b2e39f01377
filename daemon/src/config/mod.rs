//! The configuration: `brummer.toml` plus `processes.d/*.toml`, loaded and validated in one
//! go by [`load`], which reports every problem (file, line, key path, fix) or none.
//!
//! Called by `run` at start-up and by reload (which keeps the running config when this
//! fails). It reads files, env files and the user database, nothing else: it never starts,
//! stops or touches a process. What it read is kept with the result (`Inputs`), so that a
//! re-exec can tell the files are the ones the running daemon loaded (`unchanged`).

mod env_file;
mod error;
mod graph;
mod inputs;
mod limits;
mod load;
mod model;
mod process;
mod ready;
mod values;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, ConfigErrors};
pub use graph::Graph;
pub use inputs::{Inputs, unchanged};
pub use limits::{CPU_PERIOD_US, CgroupLimits, CgroupSupport, Rlimits, human_bytes};
pub use model::*;

/// What to load and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The main file, e.g. `/etc/brummer/brummer.toml`.
    pub main: PathBuf,
    /// The drop-in directory; `None` = `processes.d` next to `main`.
    pub dropin_dir: Option<PathBuf>,
    /// When false, a missing main file is an empty config (drop-ins still count).
    pub main_required: bool,
    /// Whether brummerd runs as root: `user` and `group` are allowed only then.
    pub as_root: bool,
    /// What brummerd's containment offers: a cgroup limit key is an error without it.
    pub cgroup: CgroupSupport,
}

impl LoadOptions {
    /// The drop-in directory these options stand for.
    pub fn dropin_dir(&self) -> PathBuf {
        dropin_dir(self)
    }
}

fn dropin_dir(opts: &LoadOptions) -> PathBuf {
    match &opts.dropin_dir {
        Some(dir) => dir.clone(),
        None => opts
            .main
            .parent()
            .unwrap_or(Path::new(""))
            .join("processes.d"),
    }
}

/// Loads and validates the main file and its drop-ins. On error, every problem found in
/// every file is returned, in file order.
pub fn load(opts: &LoadOptions) -> Result<Config, ConfigErrors> {
    load::load(opts)
}
