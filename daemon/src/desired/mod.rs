//! The desired state of programs that outlives one brummerd process, and the files that
//! hold it. Two documents, each written only through its own [`store::Store`] writer:
//!
//! - the runtime state, beside the control socket (so under /run or $XDG_RUNTIME_DIR, gone
//!   at reboot): which child runs for each program (pid, start time, group, generation,
//!   how to stop it) and what the user asked by hand (`start`/`stop`). The supervisor
//!   tasks record every change of child ([`Desired::set_run`], never waiting); the next
//!   brummerd reads it to stop what a crashed one left behind and to keep the user's
//!   starts and stops.
//! - the enable overrides, in the state directory (kept across reboots): `enable` and
//!   `disable` override a program's configured `autostart`.
//!
//! Reading either file never fails start-up: a torn file or one of a newer format is
//! reported (naming the file and what is done instead) and ignored.

mod atomic;
pub mod format;
mod store;

pub use format::{DaemonId, Manual, ProgramRecord, Run, RuntimeDoc};

use crate::mode::Mode;
use format::{EnabledDoc, Unusable};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::Store;

/// The file name of the enable overrides in the state directory.
pub const ENABLED_FILE: &str = "enabled.json";

/// The runtime state file of the daemon listening on `socket`: beside it, named after it
/// (`brummer.sock` -> `brummer.state.json`), so two daemons on two sockets of one
/// directory never share one, and the socket's bind check (a live daemon answers, a
/// stale file is removed) makes its daemon the file's only writer.
pub fn runtime_path(socket: &Path) -> PathBuf {
    let stem = socket
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "brummer".into());
    socket.with_file_name(format!("{stem}.state.json"))
}

#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error(
        "cannot record the enable setting: {path} is not usable ({why}); move it away to let brummerd write a new one"
    )]
    Refused { path: PathBuf, why: String },
    #[error("cannot write {path}: {cause}")]
    Write { path: PathBuf, cause: Arc<str> },
}

/// What the previous brummerd on this socket recorded (empty when there was none, or its
/// file could not be used).
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub daemon: Option<DaemonId>,
    pub programs: BTreeMap<String, ProgramRecord>,
}

impl Previous {
    /// What the user last asked of `name` by hand.
    pub fn manual(&self, name: &str) -> Option<Manual> {
        self.programs.get(name).and_then(|r| r.desired)
    }
}

pub struct Desired {
    runtime: Arc<Store<RuntimeDoc>>,
    enabled: Arc<Store<EnabledDoc>>,
    /// Why the enable file must not be overwritten (it is of a newer format); `enable` and
    /// `disable` are refused then, so a downgrade never destroys a newer brummerd's data.
    enabled_refused: Option<String>,
}

impl Desired {
    /// Reads both files, reports what cannot be used, and returns the stores (this
    /// daemon's runtime state starts with the previous one's requests by hand, and no
    /// child) with what the previous daemon recorded.
    pub fn open(
        runtime_file: PathBuf,
        state_dir: &Path,
        mode: Mode,
        me: Option<DaemonId>,
    ) -> (Desired, Previous) {
        let previous = read_runtime(&runtime_file);
        let (enabled_doc, enabled_refused) = read_enabled(&state_dir.join(ENABLED_FILE));
        let mut doc = RuntimeDoc::new(me);
        doc.programs = previous
            .programs
            .iter()
            .filter_map(|(n, r)| {
                r.desired.map(|d| {
                    (
                        n.clone(),
                        ProgramRecord {
                            run: None,
                            desired: Some(d),
                        },
                    )
                })
            })
            .collect();
        // Readable by root (system) or the user only: program names and pids are the
        // control socket's business, and the socket is not open to everyone either.
        let (dir_mode, file_mode) = match mode {
            Mode::System => (0o755, 0o640),
            Mode::User => (0o700, 0o600),
        };
        let desired = Desired {
            runtime: Store::new(runtime_file, doc, dir_mode, file_mode),
            enabled: Store::new(
                state_dir.join(ENABLED_FILE),
                enabled_doc,
                if mode == Mode::System { 0o750 } else { 0o700 },
                file_mode,
            ),
            enabled_refused,
        };
        (desired, previous)
    }

    /// Starts both writers and has the runtime state describe this daemon at once.
    pub fn start(&self, shutdown: &crate::shutdown::Shutdown) {
        self.runtime.spawn_writer(shutdown);
        self.enabled.spawn_writer(shutdown);
        self.runtime.touch();
    }

    pub fn runtime_file(&self) -> &Path {
        self.runtime.path()
    }

    /// Records the child of `name` now running (or that none runs). Never waits: the
    /// writer task writes it soon after.
    /// The start time (clock ticks since boot) recorded for `name`'s child `pid`, if its
    /// run is recorded.
    pub fn run_start(&self, name: &str, pid: i32) -> Option<u64> {
        self.runtime.read(|doc| {
            let run = doc.programs.get(name)?.run.as_ref()?;
            (run.pid == pid).then_some(run.start)
        })
    }

    pub fn set_run(&self, name: &str, run: Option<Run>) {
        self.runtime.update(|doc| match doc.programs.get_mut(name) {
            Some(rec) if rec.run == run => false,
            Some(rec) => {
                rec.run = run;
                if rec.is_empty() {
                    doc.programs.remove(name);
                }
                true
            }
            None if run.is_none() => false,
            None => {
                doc.programs
                    .insert(name.to_owned(), ProgramRecord { run, desired: None });
                true
            }
        });
    }

    /// Records a start or stop by hand; returns the version to wait for.
    pub fn set_manual(&self, names: &[&str], what: Manual) -> u64 {
        self.runtime.update(|doc| {
            let mut changed = false;
            for n in names {
                let rec = doc.programs.entry((*n).to_owned()).or_default();
                changed |= rec.desired.replace(what) != Some(what);
            }
            changed
        })
    }

    /// Forgets a program removed from the configuration.
    pub fn forget(&self, name: &str) {
        self.runtime
            .update(|doc| doc.programs.remove(name).is_some());
    }

    /// What the user last asked of `name` by hand, in this or a previous daemon.
    pub fn manual(&self, name: &str) -> Option<Manual> {
        self.runtime
            .read(|doc| doc.programs.get(name).and_then(|r| r.desired))
    }

    /// Waits until the runtime state of `version` is on disk.
    pub async fn runtime_flushed(&self, version: u64) -> Result<(), DesiredError> {
        self.runtime
            .flushed(version)
            .await
            .map_err(|cause| DesiredError::Write {
                path: self.runtime.path().to_owned(),
                cause,
            })
    }

    /// Waits until every change of the runtime state so far is on disk.
    pub async fn sync_runtime(&self) -> Result<(), DesiredError> {
        self.runtime
            .sync()
            .await
            .map_err(|cause| DesiredError::Write {
                path: self.runtime.path().to_owned(),
                cause,
            })
    }

    /// The enable override of `name`, if any.
    pub fn enabled_override(&self, name: &str) -> Option<bool> {
        self.enabled.read(|doc| doc.enabled.get(name).copied())
    }

    /// Whether `name` should run when brummerd starts (or a reload adds it): what was asked
    /// by hand first, then the enable override, then the configured `autostart`.
    pub fn should_run(&self, name: &str, autostart: bool) -> bool {
        match self.manual(name) {
            Some(Manual::Started) => true,
            Some(Manual::Stopped) => false,
            None => self.enabled_override(name).unwrap_or(autostart),
        }
    }

    /// Sets the enable override of `names` and waits until it is on disk. Returns, per
    /// name, whether the setting changed.
    pub async fn set_enabled(&self, names: &[&str], on: bool) -> Result<Vec<bool>, DesiredError> {
        if let Some(why) = &self.enabled_refused {
            return Err(DesiredError::Refused {
                path: self.enabled.path().to_owned(),
                why: why.clone(),
            });
        }
        let mut changed = Vec::with_capacity(names.len());
        let version = self.enabled.update(|doc| {
            for n in names {
                changed.push(doc.enabled.insert((*n).to_owned(), on) != Some(on));
            }
            changed.iter().any(|c| *c)
        });
        self.enabled
            .flushed(version)
            .await
            .map_err(|cause| DesiredError::Write {
                path: self.enabled.path().to_owned(),
                cause,
            })?;
        Ok(changed)
    }

    /// Waits until everything recorded so far is on disk (shutdown, before the writers
    /// end).
    pub async fn sync(&self) {
        for (path, r) in [
            (self.runtime.path(), self.runtime.sync().await),
            (self.enabled.path(), self.enabled.sync().await),
        ] {
            if let Err(e) = r {
                tracing::warn!(path = %path.display(), cause = %e, "state file not written at shutdown");
            }
        }
    }
}

/// The previous daemon's runtime state; reported and ignored when unusable.
fn read_runtime(path: &Path) -> Previous {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Previous::default(),
        Err(e) => {
            tracing::error!(
                path = %path.display(),
                cause = %e,
                "cannot read the runtime state; leftovers of the previous brummerd are found only by their environment, starts and stops by hand are forgotten"
            );
            return Previous::default();
        }
    };
    match format::decode::<RuntimeDoc>(&bytes) {
        Ok(doc) => Previous {
            daemon: doc.daemon,
            programs: doc.programs,
        },
        Err(e) => {
            let what = match e {
                Unusable::Newer(_) => "written by a newer brummerd",
                _ => "unusable",
            };
            tracing::error!(
                "ignoring runtime state {}: {e} ({what}); leftovers of the previous brummerd are found only by their environment, starts and stops by hand are forgotten, and the file is replaced",
                path.display()
            );
            Previous::default()
        }
    }
}

/// The enable overrides, and why the file must not be overwritten (if so).
fn read_enabled(path: &Path) -> (EnabledDoc, Option<String>) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (EnabledDoc::default(), None),
        Err(e) => {
            tracing::error!(
                "cannot read enable settings {}: {e}; using each program's autostart, and enable/disable are refused until this is fixed",
                path.display()
            );
            return (EnabledDoc::default(), Some(e.to_string()));
        }
    };
    match format::decode::<EnabledDoc>(&bytes) {
        Ok(doc) => (doc, None),
        Err(e) => {
            tracing::error!(
                "ignoring enable settings {}: {e}; using each program's autostart; the file is left as it is and enable/disable are refused until it is moved away",
                path.display()
            );
            (EnabledDoc::default(), Some(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_file_is_named_after_the_socket() {
        assert_eq!(
            runtime_path(Path::new("/run/brummer/brummer.sock")),
            PathBuf::from("/run/brummer/brummer.state.json")
        );
        assert_eq!(
            runtime_path(Path::new("/tmp/x/other")),
            PathBuf::from("/tmp/x/other.state.json")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_by_hand_and_overrides_decide_what_runs() {
        let d = tempfile::tempdir().unwrap();
        let rt = d.path().join("run/brummer.state.json");
        let tasks = crate::shutdown::Shutdown::new();
        let (desired, prev) = Desired::open(rt.clone(), &d.path().join("state"), Mode::User, None);
        assert!(prev.programs.is_empty());
        desired.start(&tasks);
        assert!(desired.should_run("a", true));
        assert_eq!(desired.set_enabled(&["a"], false).await.unwrap(), [true]);
        assert!(!desired.should_run("a", true));
        let v = desired.set_manual(&["a"], Manual::Started);
        desired.runtime_flushed(v).await.unwrap();
        assert!(desired.should_run("a", false));
        desired.set_manual(&["b"], Manual::Stopped);
        desired.sync().await;
        tasks.trigger();

        // The next daemon keeps the requests by hand and the overrides.
        let (next, prev) = Desired::open(rt, &d.path().join("state"), Mode::User, None);
        assert_eq!(prev.manual("a"), Some(Manual::Started));
        assert!(next.should_run("a", false));
        assert!(!next.should_run("b", true));
        assert_eq!(next.enabled_override("a"), Some(false));
        assert!(next.should_run("c", true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unusable_files_fall_back_and_a_newer_enable_file_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let rt = d.path().join("brummer.state.json");
        std::fs::write(&rt, br#"{"format":1,"programs":{"a":{"desi"#).unwrap();
        let state = d.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let newer = br#"{"format":9,"enabled":{"a":false},"more":1}"#;
        std::fs::write(state.join(ENABLED_FILE), newer).unwrap();
        let (desired, prev) = Desired::open(rt, &state, Mode::User, None);
        assert!(prev.programs.is_empty());
        assert!(desired.should_run("a", true));
        let e = desired.set_enabled(&["a"], true).await.unwrap_err();
        assert!(e.to_string().contains("format 9 is newer"), "{e}");
        assert_eq!(std::fs::read(state.join(ENABLED_FILE)).unwrap(), newer);
    }
}
