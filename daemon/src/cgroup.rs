//! cgroup v2 containment: finding the subtree delegated to brummerd and setting it up once
//! at start-up ([`probe`], [`setup`]), one leaf per program in it ([`Leaf`]), and the
//! kernel files read and written there. Nothing here knows a program's config or state.
//!
//! Layout (docs/architecture.md, 2026-12-02, cgroup): brummerd's delegated cgroup `BASE`
//! holds only leaves, flat: `BASE/daemon` (brummerd itself, because a cgroup with
//! controllers enabled for its children may hold no process of its own) and
//! `BASE/prog-NAME` per program. Program names are `[A-Za-z0-9_.-]`, so they need no
//! escaping; the prefix keeps them apart from `daemon` and from the kernel's files.

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use thiserror::Error;

/// Where the unified hierarchy is mounted.
pub const ROOT: &str = "/sys/fs/cgroup";
/// brummerd's own leaf.
pub const DAEMON_LEAF: &str = "daemon";
/// A program's leaf is this followed by its name.
pub const PROGRAM_PREFIX: &str = "prog-";
/// The controllers brummerd enables for its programs when the delegation offers them.
pub const WANTED: [&str; 4] = ["cpu", "memory", "pids", "io"];

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Why there is no cgroup containment.
#[derive(Debug, Error)]
pub enum Unavailable {
    #[error("{ROOT} is not a cgroup v2 file system (a cgroup v1 or hybrid host, or a container)")]
    NotUnified,
    #[error("cannot tell brummerd's own cgroup from /proc/self/cgroup")]
    OwnUnknown,
    #[error(
        "its cgroup {0} is not delegated to it (run brummerd from a systemd unit with Delegate=yes)"
    )]
    NotDelegated(PathBuf),
    #[error("cannot set up its delegated cgroup {path}: {source}")]
    Setup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// brummerd's delegated subtree.
#[derive(Debug, Clone)]
pub struct Tree {
    base: PathBuf,
    /// Controllers enabled for the programs' leaves.
    controllers: Vec<String>,
}

static TREE: OnceLock<Result<Tree, String>> = OnceLock::new();

/// The tree set up at start-up, if any (see [`install`]).
pub fn tree() -> Option<&'static Tree> {
    TREE.get().and_then(|t| t.as_ref().ok())
}

/// Why there is no tree (see [`install`]); `None` when there is one or nothing was
/// installed.
pub fn why_not() -> Option<&'static str> {
    TREE.get()
        .and_then(|t| t.as_ref().err())
        .map(String::as_str)
}

/// Makes the outcome of [`setup`] the one [`tree`] and [`why_not`] give for the rest of
/// the process.
pub fn install(setup: Result<Tree, Unavailable>) {
    let _ = TREE.set(setup.map_err(|e| e.to_string()));
}

/// Finds brummerd's delegated subtree without changing anything: the tree as [`setup`]
/// would make it, with the controllers its delegation offers (for `--check-config`).
pub fn probe() -> Result<Tree, Unavailable> {
    let base = delegated_base()?;
    let offered = read_words(&base.join("cgroup.controllers"));
    Ok(Tree {
        controllers: WANTED
            .iter()
            .filter(|c| offered.iter().any(|o| o == *c))
            .map(|c| (*c).to_owned())
            .collect(),
        base,
    })
}

/// Moves brummerd into `BASE/daemon` and enables the wanted controllers for the leaves.
/// Call while brummerd has one thread (a move takes the whole process anyway).
pub fn setup() -> Result<Tree, Unavailable> {
    let base = delegated_base()?;
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Unavailable::Setup { path, source }
    };
    let daemon = base.join(DAEMON_LEAF);
    match fs::create_dir(&daemon) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(&daemon)(e)),
    }
    write(
        &daemon.join("cgroup.procs"),
        &std::process::id().to_string(),
    )
    .map_err(err(&daemon))?;
    let offered = read_words(&base.join("cgroup.controllers"));
    let enabled = read_words(&base.join("cgroup.subtree_control"));
    for c in WANTED {
        if offered.iter().any(|o| o == c) && !enabled.iter().any(|e| e == c) {
            // One at a time: a controller the kernel refuses does not keep the others off.
            if let Err(e) = write(&base.join("cgroup.subtree_control"), &format!("+{c}")) {
                tracing::warn!(controller = c, cause = %e, cgroup = %base.display(), "cannot enable a cgroup controller for the programs");
            }
        }
    }
    let controllers = read_words(&base.join("cgroup.subtree_control"));
    Ok(Tree { base, controllers })
}

/// `brummerd --release-cgroup`, run by systemd after brummerd's main process ended
/// (ExecStopPost=, in the unit's `.control` leaf): turns off every controller enabled for
/// the leaves of the delegated cgroup. systemd 252 places the next main process in the
/// unit's own cgroup, which the kernel refuses (EBUSY) while controllers are enabled for
/// its children and a program still runs in one. The programs keep running, without
/// limits until the next brummerd enables the controllers again and writes them.
pub fn release() -> Result<(), Unavailable> {
    let base = delegated_base()?;
    let enabled = read_words(&base.join("cgroup.subtree_control"));
    for c in enabled {
        if let Err(e) = write(&base.join("cgroup.subtree_control"), &format!("-{c}")) {
            eprintln!(
                "brummerd: cannot turn off the cgroup controller {c} of {}: {e}",
                base.display()
            );
        }
    }
    Ok(())
}

/// brummerd's cgroup (the parent of its `daemon` leaf, where it already is after a re-exec)
/// when it is on a unified hierarchy and delegated to it.
fn delegated_base() -> Result<PathBuf, Unavailable> {
    #[expect(
        clippy::unnecessary_cast,
        reason = "f_type is i64 on x86_64 but another type on other architectures"
    )]
    let unified = rustix::fs::statfs(ROOT).is_ok_and(|s| s.f_type as i64 == CGROUP2_SUPER_MAGIC);
    if !unified {
        return Err(Unavailable::NotUnified);
    }
    let own = fs::read_to_string("/proc/self/cgroup").map_err(|_| Unavailable::OwnUnknown)?;
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or(Unavailable::OwnUnknown)?;
    let mut base = Path::new(ROOT).join(rel.trim_start_matches('/'));
    // Its own leaf, or systemd's leaf for ExecStopPost= and the like.
    if base
        .file_name()
        .is_some_and(|n| n == DAEMON_LEAF || n == ".control")
        && let Some(parent) = base.parent()
    {
        base = parent.to_path_buf();
    }
    if !delegated(&base) {
        return Err(Unavailable::NotDelegated(base));
    }
    Ok(base)
}

/// systemd (251 and later) marks a cgroup it delegates with the extended attribute
/// `trusted.delegate` (and `user.delegate`, readable without privileges) set to "1". A
/// user manager (systemd 252) marks none of its units' cgroups (seen in the VM): there a
/// service of the user manager counts as delegated, see [`user_service`].
fn delegated(dir: &Path) -> bool {
    let marked = ["trusted.delegate", "user.delegate"].iter().any(|name| {
        let mut buf = [0u8; 8];
        matches!(rustix::fs::getxattr(dir, *name, &mut buf[..]), Ok(n) if &buf[..n] == b"1")
    });
    marked || user_service(dir)
}

/// brummerd runs, not as root, as a service of its own user's manager (INVOCATION_ID set;
/// its cgroup a `.service` below `user@UID.service`, writable by it). The user manager owns
/// that whole subtree for the user; the shipped user unit has Delegate=yes.
fn user_service(dir: &Path) -> bool {
    let uid = rustix::process::getuid();
    if uid.is_root() || std::env::var_os("INVOCATION_ID").is_none() {
        return false;
    }
    let manager = format!("user@{}.service", uid.as_raw());
    let below_manager = dir.components().any(|c| c.as_os_str() == manager.as_str());
    let a_service = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".service") && n != manager);
    below_manager && a_service && rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}

impl Tree {
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The controllers the leaves have (each a name such as "memory").
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// The leaf of `program` (not created).
    pub fn leaf(&self, program: &str) -> Leaf {
        Leaf {
            dir: self.base.join(format!("{PROGRAM_PREFIX}{program}")),
        }
    }

    /// Every program leaf that exists, by program name.
    pub fn leaves(&self) -> Vec<(String, Leaf)> {
        let Ok(dir) = fs::read_dir(&self.base) else {
            return Vec::new();
        };
        dir.filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let program = name.strip_prefix(PROGRAM_PREFIX)?.to_owned();
            e.file_type()
                .ok()?
                .is_dir()
                .then(|| (program, Leaf { dir: e.path() }))
        })
        .collect()
    }
}

/// One program's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    dir: PathBuf,
}

/// One reading of a leaf's accounting files; a figure its controller lacks is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stat {
    pub cpu_usec: Option<u64>,
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub pids_current: Option<u64>,
    /// (rbytes, wbytes) summed over the devices of io.stat.
    pub io: Option<(u64, u64)>,
    /// `some avg10` of cpu.pressure, memory.pressure and io.pressure, in percent.
    pub pressure: [Option<f64>; 3],
}

impl Leaf {
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates the leaf; one that exists is kept.
    pub fn create(&self) -> io::Result<()> {
        match fs::create_dir(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Its `cgroup.procs`, open for writing: a child writes "0" to it before exec to enter.
    pub fn procs_for_writing(&self) -> io::Result<OwnedFd> {
        use rustix::fs::{Mode, OFlags};
        Ok(rustix::fs::open(
            self.dir.join("cgroup.procs"),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// The processes in it now.
    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether any process is in it (`cgroup.events` `populated`); `None` when unreadable
    /// (gone).
    pub fn populated(&self) -> Option<bool> {
        keyed(&self.dir.join("cgroup.events"), "populated").map(|n| n != 0)
    }

    /// SIGKILL to every process in it, at once, by the kernel (`cgroup.kill`, Linux 5.14).
    pub fn kill(&self) -> io::Result<()> {
        write(&self.dir.join("cgroup.kill"), "1")
    }

    /// Removes the leaf; it must be empty.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes one of its control files (e.g. `memory.max`).
    pub fn set(&self, file: &str, value: &str) -> io::Result<()> {
        write(&self.dir.join(file), value)
    }

    /// The OOM kills in it so far (`memory.events` `oom_kill`).
    pub fn oom_kills(&self) -> Option<u64> {
        keyed(&self.dir.join("memory.events"), "oom_kill")
    }

    /// Its accounting files, one read each.
    pub fn stat(&self) -> Stat {
        let f = |name: &str| self.dir.join(name);
        Stat {
            cpu_usec: keyed(&f("cpu.stat"), "usage_usec"),
            memory_current: single(&f("memory.current")),
            memory_peak: single(&f("memory.peak")),
            pids_current: single(&f("pids.current")),
            io: io_bytes(&f("io.stat")),
            pressure: [
                pressure(&f("cpu.pressure")),
                pressure(&f("memory.pressure")),
                pressure(&f("io.pressure")),
            ],
        }
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    // One write(2) per value: the kernel parses each write on its own.
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A file holding one number (`max` is `u64::MAX`).
fn single(path: &Path) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    match s.trim() {
        "max" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// `key value` lines (cgroup.events, cpu.stat, memory.events).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    parse_keyed(&fs::read_to_string(path).ok()?, key)
}

fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn io_bytes(path: &Path) -> Option<(u64, u64)> {
    Some(parse_io_stat(&fs::read_to_string(path).ok()?))
}

/// `MAJ:MIN rbytes=.. wbytes=.. rios=..` per device, summed.
fn parse_io_stat(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            r = r.saturating_add(v.parse().unwrap_or(0));
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            w = w.saturating_add(v.parse().unwrap_or(0));
        }
    }
    (r, w)
}

fn pressure(path: &Path) -> Option<f64> {
    parse_pressure(&fs::read_to_string(path).ok()?)
}

/// `some avg10=1.23 avg60=.. avg300=.. total=..` -> 1.23.
fn parse_pressure(text: &str) -> Option<f64> {
    let some = text.lines().find(|l| l.starts_with("some "))?;
    some.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse() {
        let stat = "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n";
        assert_eq!(parse_keyed(stat, "usage_usec"), Some(1234));
        assert_eq!(parse_keyed(stat, "system_usec"), Some(234));
        assert_eq!(parse_keyed(stat, "nr_periods"), None);
        let events = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_keyed(events, "oom_kill"), Some(1));
        assert_eq!(parse_keyed("populated 0\nfrozen 0\n", "populated"), Some(0));
    }

    #[test]
    fn io_stat_sums_devices() {
        let text = "8:0 rbytes=100 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n\
                    254:0 rbytes=5 wbytes=7 rios=1 wios=1 dbytes=0 dios=0\n";
        assert_eq!(parse_io_stat(text), (105, 27));
        assert_eq!(parse_io_stat(""), (0, 0));
    }

    #[test]
    fn pressure_is_some_avg10() {
        let text = "some avg10=12.50 avg60=3.00 avg300=1.00 total=123\n\
                    full avg10=1.00 avg60=0.00 avg300=0.00 total=10\n";
        assert_eq!(parse_pressure(text), Some(12.5));
        assert_eq!(parse_pressure("full avg10=1.00\n"), None);
    }

    #[test]
    fn a_program_leaf_is_prefixed() {
        let t = Tree {
            base: PathBuf::from("/sys/fs/cgroup/system.slice/brummerd.service"),
            controllers: vec!["memory".into()],
        };
        assert_eq!(
            t.leaf("web.1").path(),
            Path::new("/sys/fs/cgroup/system.slice/brummerd.service/prog-web.1")
        );
        assert!(t.has("memory") && !t.has("cpu"));
    }
}
