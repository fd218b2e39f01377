//! The loaded configuration: plain data, built only by `config::load`, read by the registry,
//! the supervisor tasks and `reload` (which compares old and new `ProcessDef`s with `==`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use super::ready::{
    Check, DEFAULT_HEALTH_FAILURES, DEFAULT_READY_TIMEOUT, Health, HttpUrl, LogPattern, Probe,
    Ready,
};

/// Default `restart` policy.
pub const DEFAULT_RESTART: RestartPolicy = RestartPolicy::OnFailure;
/// Default `stop_signal` (SIGTERM).
pub const DEFAULT_STOP_SIGNAL: i32 = libc::SIGTERM;
/// Default `stop_timeout`.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `backoff.initial`.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Default `backoff.max`.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default `backoff.reset_after`.
pub const DEFAULT_BACKOFF_RESET_AFTER: Duration = Duration::from_secs(1);
/// Default `start_limit.burst`.
pub const DEFAULT_START_LIMIT_BURST: u32 = 5;
/// Default `start_limit.interval`.
pub const DEFAULT_START_LIMIT_INTERVAL: Duration = Duration::from_secs(10);
/// Smallest accepted `daemon.ring_bytes`.
pub const MIN_RING_BYTES: usize = 4096;
/// Largest accepted `daemon.ring_bytes` (1 GiB).
pub const MAX_RING_BYTES: usize = 1 << 30;
/// Default `logs.max_bytes`: size at which the active disk log segment is rotated.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 << 20;
/// Default `logs.max_files`: segments kept per process, the active one included.
pub const DEFAULT_LOG_MAX_FILES: u32 = 5;
/// Smallest accepted `logs.max_bytes`.
pub const MIN_LOG_MAX_BYTES: u64 = 4096;
/// Largest accepted `logs.max_bytes` (1 TiB).
pub const MAX_LOG_MAX_BYTES: u64 = 1 << 40;
/// Largest accepted `logs.max_files`.
pub const MAX_LOG_MAX_FILES: u32 = 10_000;
/// Default `logs.error_patterns` (regular expressions, case-sensitive).
pub const DEFAULT_ERROR_PATTERNS: &[&str] = &[
    r"\bpanic(ked)?\b",
    r"^Traceback \(most recent call last\)",
    r"\bERROR\b",
    r"\bFATAL\b",
    r"^\s*Error: ",
    r"Uncaught (\w+)?(Error|Exception)",
];

/// The `[process.NAME.logs]` table: disk retention and scanners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Rotate the active segment once it holds at least this many bytes.
    pub max_bytes: u64,
    /// Segments kept, the active one included; the oldest beyond are deleted.
    pub max_files: u32,
    /// Regular expressions for error detection (checked at load time).
    pub error_patterns: Vec<String>,
    /// Run the URL and error scanners on this process's output.
    pub scan: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            max_bytes: DEFAULT_LOG_MAX_BYTES,
            max_files: DEFAULT_LOG_MAX_FILES,
            error_patterns: DEFAULT_ERROR_PATTERNS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            scan: true,
        }
    }
}

/// A whole configuration: the main file plus its drop-ins, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub daemon: DaemonSettings,
    /// Every `[process.NAME]`, by name. Names are unique across all files.
    pub processes: BTreeMap<String, Arc<ProcessDef>>,
    /// The files read, in order: the main file (if present), then the drop-ins.
    pub files: Vec<PathBuf>,
    /// What the load read, to tell later whether loading again would read the same.
    pub inputs: super::Inputs,
}

/// The `[daemon]` table. `None` means "use the mode's default".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DaemonSettings {
    /// Directory for the per-process disk logs (absolute).
    pub log_dir: Option<PathBuf>,
    /// Size of each process's in-memory log ring, in bytes.
    pub ring_bytes: Option<usize>,
    /// Where the HTTP listener serves `/metrics`; none by default. Read at start-up only.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// One `[process.NAME]` table.
#[derive(Debug, Clone)]
pub struct ProcessDef {
    pub name: String,
    pub command: CommandSpec,
    /// Working directory (absolute); `None` = brummerd's own.
    pub cwd: Option<PathBuf>,
    /// The environment added to brummerd's own: `env_file` entries first, `env` on top.
    pub env: BTreeMap<String, String>,
    /// The env file as resolved (relative paths against the config file's directory).
    /// Its contents are already in `env`; this is kept for display.
    pub env_file: Option<PathBuf>,
    pub user: Option<UserSpec>,
    pub group: Option<GroupSpec>,
    pub autostart: bool,
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    pub start_limit: StartLimit,
    /// Signal number sent to the process group to stop it.
    pub stop_signal: i32,
    /// How long to wait after `stop_signal` before SIGKILL.
    pub stop_timeout: Duration,
    /// Disk log rotation and scanners (`[process.NAME.logs]`).
    pub logs: LogSettings,
    /// When a started program counts as `running`.
    pub ready: Ready,
    /// Not ready this long after the spawn: the start failed.
    pub ready_timeout: Duration,
    /// With `ready = "notify"`: a WATCHDOG=1 ping is due at least this often once ready.
    pub watchdog: Option<Duration>,
    /// Liveness probe while `running`.
    pub health: Option<Health>,
    /// `requires`, `wants` and `after`: the programs this one starts after.
    pub deps: Deps,
    /// Limits applied through the program's cgroup.
    pub cgroup_limits: super::CgroupLimits,
    /// Limits set with setrlimit in the child.
    pub rlimits: super::Rlimits,
    /// Where the `[process.NAME]` header is. Not part of `==`.
    pub source: SourceLoc,
    /// The line of each name in `deps`, for errors found once every file is read (unknown
    /// names, cycles). Not part of `==`.
    pub deps_at: DepsAt,
}

impl ProcessDef {
    /// A definition with every optional setting at its default, as a config file with only
    /// `command` would give. Handy for tests of the supervisor.
    pub fn with_defaults(name: impl Into<String>, command: CommandSpec) -> Self {
        ProcessDef {
            name: name.into(),
            command,
            cwd: None,
            env: BTreeMap::new(),
            env_file: None,
            user: None,
            group: None,
            autostart: true,
            restart: DEFAULT_RESTART,
            backoff: Backoff::default(),
            start_limit: StartLimit::default(),
            stop_signal: DEFAULT_STOP_SIGNAL,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            logs: LogSettings::default(),
            ready: Ready::Started,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            watchdog: None,
            health: None,
            deps: Deps::default(),
            cgroup_limits: Default::default(),
            rlimits: Default::default(),
            source: SourceLoc::default(),
            deps_at: DepsAt::default(),
        }
    }

    /// Whether `other` differs from this definition in its dependencies at most: such a
    /// change is put in force without restarting the program (it orders the next start).
    pub fn same_but_deps(&self, other: &ProcessDef) -> bool {
        let mut a = self.clone();
        a.deps = other.deps.clone();
        a == *other
    }
}

/// Everything except `source`: reload uses `==` to decide whether a process changed, and
/// moving a block to another file (or another line) is not a change.
impl PartialEq for ProcessDef {
    fn eq(&self, other: &Self) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let ProcessDef {
            name,
            command,
            cwd,
            env,
            env_file,
            user,
            group,
            autostart,
            restart,
            backoff,
            start_limit,
            stop_signal,
            stop_timeout,
            logs,
            ready,
            ready_timeout,
            watchdog,
            health,
            deps,
            cgroup_limits,
            rlimits,
            source: _,
            deps_at: _,
        } = self;
        *name == other.name
            && *command == other.command
            && *cwd == other.cwd
            && *env == other.env
            && *env_file == other.env_file
            && *user == other.user
            && *group == other.group
            && *autostart == other.autostart
            && *restart == other.restart
            && *backoff == other.backoff
            && *start_limit == other.start_limit
            && *stop_signal == other.stop_signal
            && *stop_timeout == other.stop_timeout
            && *logs == other.logs
            && *ready == other.ready
            && *ready_timeout == other.ready_timeout
            && *watchdog == other.watchdog
            && *health == other.health
            && *deps == other.deps
            && *cgroup_limits == other.cgroup_limits
            && *rlimits == other.rlimits
    }
}

/// What a program is ordered after, by kind. Names are checked at load time: each is a
/// program of the configuration, none is the program itself, and the graph is acyclic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deps {
    /// Started first; one that fails for good fails this start, and stopping (or
    /// restarting) it stops (or restarts) this program first.
    pub requires: Vec<String>,
    /// Started first; their failure does not keep this one from starting.
    pub wants: Vec<String>,
    /// Ordering only: when they are starting too, this one waits for them.
    pub after: Vec<String>,
}

impl Deps {
    /// Every name this program is ordered after, each kind in turn.
    pub fn all(&self) -> impl Iterator<Item = (DepKind, &str)> {
        fn of(kind: DepKind, v: &[String]) -> impl Iterator<Item = (DepKind, &str)> {
            v.iter().map(move |n| (kind, n.as_str()))
        }
        of(DepKind::Requires, &self.requires)
            .chain(of(DepKind::Wants, &self.wants))
            .chain(of(DepKind::After, &self.after))
    }

    pub fn is_empty(&self) -> bool {
        self.requires.is_empty() && self.wants.is_empty() && self.after.is_empty()
    }
}

/// The three kinds of dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DepKind {
    Requires,
    Wants,
    After,
}

impl DepKind {
    /// The config key.
    pub fn as_str(self) -> &'static str {
        match self {
            DepKind::Requires => "requires",
            DepKind::Wants => "wants",
            DepKind::After => "after",
        }
    }
}

/// The lines of the names in [`Deps`], index by index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DepsAt {
    pub requires: Vec<usize>,
    pub wants: Vec<usize>,
    pub after: Vec<usize>,
}

impl DepsAt {
    /// The line and key path (`process.web.requires[0]`) of `target` in `def`'s list of
    /// `kind`; the header's line when unknown.
    pub fn locate(def: &ProcessDef, kind: DepKind, target: &str) -> (usize, String) {
        let (names, lines) = match kind {
            DepKind::Requires => (&def.deps.requires, &def.deps_at.requires),
            DepKind::Wants => (&def.deps.wants, &def.deps_at.wants),
            DepKind::After => (&def.deps.after, &def.deps_at.after),
        };
        let base = super::values::join(&super::values::join("process", &def.name), kind.as_str());
        match names.iter().position(|n| n == target) {
            Some(i) => (
                lines.get(i).copied().unwrap_or(def.source.line),
                format!("{base}[{i}]"),
            ),
            None => (def.source.line, base),
        }
    }
}

/// What to run: an argv array, or a string for `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSpec {
    Argv(Vec<String>),
    Shell(String),
}

impl CommandSpec {
    /// The argv to exec: the array itself, or `["/bin/sh", "-c", line]`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandSpec::Argv(argv) => argv.clone(),
            CommandSpec::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        }
    }

    /// One line for humans (status output, logs): the shell line as written, or the argv
    /// joined by spaces with words that need it single-quoted.
    pub fn display(&self) -> String {
        match self {
            CommandSpec::Shell(line) => line.clone(),
            CommandSpec::Argv(argv) => argv
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A `user = "..."` resolved at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub uid: u32,
    /// The user's primary group.
    pub gid: u32,
}

/// A `group = "..."` resolved at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    pub gid: u32,
}

/// When the supervisor restarts a process that exited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    Never,
    #[default]
    OnFailure,
    Always,
}

impl RestartPolicy {
    /// The spelling used in the config file and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }

    /// Parses the config-file spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "never" => Some(RestartPolicy::Never),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "always" => Some(RestartPolicy::Always),
            _ => None,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Exponential restart backoff: `initial`, doubling up to `max`; a run of at least
/// `reset_after` counts as stable and the next crash restarts at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: DEFAULT_BACKOFF_INITIAL,
            max: DEFAULT_BACKOFF_MAX,
            reset_after: DEFAULT_BACKOFF_RESET_AFTER,
        }
    }
}

/// At most `burst` automatic restarts within `interval`, then the process is `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartLimit {
    pub burst: u32,
    pub interval: Duration,
}

impl Default for StartLimit {
    fn default() -> Self {
        StartLimit {
            burst: DEFAULT_START_LIMIT_BURST,
            interval: DEFAULT_START_LIMIT_INTERVAL,
        }
    }
}

/// Where a definition came from: the file and the line of its `[process.NAME]` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceLoc {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for SourceLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}
