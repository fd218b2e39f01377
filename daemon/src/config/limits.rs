//! A program's resource limits: the cgroup keys (`memory_max`, `memory_high`, `cpu_weight`,
//! `cpu_max`, `pids_max`, `io_weight`), which need brummerd's cgroup containment and the
//! key's controller (checked here, at load time, against [`CgroupSupport`]), and the
//! rlimits (`nofile`, `core`, `nproc`), set in the child and available everywhere.

use super::values::{Ctx, Value};
use toml::de::DeValue;

/// The keys this module reads.
pub(crate) const KEYS: &[&str] = &[
    "memory_max",
    "memory_high",
    "cpu_weight",
    "cpu_max",
    "pids_max",
    "io_weight",
    "nofile",
    "core",
    "nproc",
];

/// What brummerd's containment offers the cgroup keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSupport {
    /// A delegated cgroup v2 subtree whose leaves have these controllers.
    Cgroup { controllers: Vec<String> },
    /// No cgroup containment, and why.
    None { why: String },
    /// Not known here (`--check-config` run outside brummerd's service): cgroup keys are
    /// accepted, and checked when brummerd starts.
    Unchecked,
}

impl Default for CgroupSupport {
    fn default() -> Self {
        CgroupSupport::None {
            why: "no cgroup v2 subtree was looked for".into(),
        }
    }
}

/// Limits applied through the program's cgroup; `None` leaves the kernel's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupLimits {
    /// Bytes (`memory.max`): the OOM killer acts beyond it.
    pub memory_max: Option<u64>,
    /// Bytes (`memory.high`): reclaim and throttling beyond it.
    pub memory_high: Option<u64>,
    /// 1-10000 (`cpu.weight`).
    pub cpu_weight: Option<u64>,
    /// Percent of one CPU (`cpu.max`, over a 100 ms period).
    pub cpu_max_percent: Option<u64>,
    /// Tasks (`pids.max`).
    pub pids_max: Option<u64>,
    /// 1-10000 (`io.weight`).
    pub io_weight: Option<u64>,
}

/// The cgroup period `cpu_max` is applied over, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

impl CgroupLimits {
    pub fn is_empty(&self) -> bool {
        *self == CgroupLimits::default()
    }

    /// The control files to write, in order: (file, value).
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(n) = self.memory_high {
            out.push(("memory.high", n.to_string()));
        }
        if let Some(n) = self.memory_max {
            out.push(("memory.max", n.to_string()));
        }
        if let Some(n) = self.cpu_weight {
            out.push(("cpu.weight", n.to_string()));
        }
        if let Some(p) = self.cpu_max_percent {
            out.push((
                "cpu.max",
                format!("{} {CPU_PERIOD_US}", p * CPU_PERIOD_US / 100),
            ));
        }
        if let Some(n) = self.pids_max {
            out.push(("pids.max", n.to_string()));
        }
        if let Some(n) = self.io_weight {
            out.push(("io.weight", format!("default {n}")));
        }
        out
    }
}

/// Resource limits set with setrlimit in the child (soft and hard alike); `u64::MAX` is
/// unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rlimits {
    pub nofile: Option<u64>,
    pub core: Option<u64>,
    pub nproc: Option<u64>,
}

impl Rlimits {
    pub fn is_empty(&self) -> bool {
        *self == Rlimits::default()
    }
}

/// A byte count as a config would write it: "20M", "1G", "512K", or bytes.
pub fn human_bytes(n: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// The controller a cgroup key needs; `None` for an rlimit key.
fn controller(key: &str) -> Option<&'static str> {
    Some(match key {
        "memory_max" | "memory_high" => "memory",
        "cpu_weight" | "cpu_max" => "cpu",
        "pids_max" => "pids",
        "io_weight" => "io",
        _ => return None,
    })
}

/// Reads one limit key `name` (one of [`KEYS`]) into `cg` or `rl`; `key` is its full path.
pub(crate) fn read(
    ctx: &mut Ctx<'_>,
    support: &CgroupSupport,
    name: &str,
    v: &Value<'_>,
    key: &str,
    cg: &mut CgroupLimits,
    rl: &mut Rlimits,
) {
    if let Some(c) = controller(name) {
        match support {
            CgroupSupport::None { why } => {
                ctx.err(
                    &v.span(),
                    key,
                    format!(
                        "{name} is applied through the program's cgroup, and brummerd has no cgroup containment here: {why}; remove the key, or run brummerd where it gets a delegated cgroup v2 subtree (brummerd.service has Delegate=yes)"
                    ),
                );
                return;
            }
            CgroupSupport::Cgroup { controllers } if !controllers.iter().any(|x| x == c) => {
                let has = if controllers.is_empty() {
                    "none".to_owned()
                } else {
                    controllers.join(" ")
                };
                ctx.err(
                    &v.span(),
                    key,
                    format!(
                        "{name} needs the cgroup controller \"{c}\", which brummerd's delegated cgroup does not offer (it has: {has}); enable it for brummerd (Delegate=yes in its unit, and the controller in the kernel) or remove the key"
                    ),
                );
                return;
            }
            CgroupSupport::Cgroup { .. } | CgroupSupport::Unchecked => {}
        }
    }
    match name {
        "memory_max" => cg.memory_max = ctx.size(v, key, 1 << 20, u64::MAX / 2),
        "memory_high" => cg.memory_high = ctx.size(v, key, 1 << 20, u64::MAX / 2),
        "cpu_weight" => cg.cpu_weight = weight(ctx, v, key),
        "io_weight" => cg.io_weight = weight(ctx, v, key),
        "cpu_max" => cg.cpu_max_percent = percent(ctx, v, key),
        "pids_max" => cg.pids_max = ctx.int_in(v, key, 1, 4_194_304).map(|n| n as u64),
        "nofile" => rl.nofile = ctx.int_in(v, key, 1, 1 << 30).map(|n| n as u64),
        "nproc" => {
            rl.nproc = unlimited_or(ctx, v, key, |ctx, v, key| {
                ctx.int_in(v, key, 1, 1 << 30).map(|n| n as u64)
            })
        }
        "core" => {
            rl.core = unlimited_or(ctx, v, key, |ctx, v, key| ctx.size(v, key, 0, u64::MAX / 2))
        }
        _ => {}
    }
}

fn weight(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> Option<u64> {
    ctx.int_in(v, key, 1, 10_000).map(|n| n as u64)
}

/// `"unlimited"` (u64::MAX) or what `other` reads.
fn unlimited_or(
    ctx: &mut Ctx<'_>,
    v: &Value<'_>,
    key: &str,
    other: impl Fn(&mut Ctx<'_>, &Value<'_>, &str) -> Option<u64>,
) -> Option<u64> {
    match v.get_ref() {
        DeValue::String(s) if s.trim() == "unlimited" => Some(u64::MAX),
        _ => other(ctx, v, key),
    }
}

/// `"50%"` of one CPU; `"250%"` is two and a half.
fn percent(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> Option<u64> {
    const HINT: &str =
        "write the share of one CPU as a percentage, e.g. cpu_max = \"50%\" (\"200%\" is two CPUs)";
    let DeValue::String(s) = v.get_ref() else {
        ctx.err(&v.span(), key, format!("expected a string: {HINT}"));
        return None;
    };
    match s
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<u64>().ok())
    {
        Some(n) if (1..=100_000).contains(&n) => Some(n),
        _ => {
            ctx.err(
                &v.span(),
                key,
                format!("{s:?} is not a percentage from 1% to 100000%: {HINT}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_control_files() {
        let l = CgroupLimits {
            memory_max: Some(20 << 20),
            memory_high: Some(16 << 20),
            cpu_weight: Some(50),
            cpu_max_percent: Some(20),
            pids_max: Some(64),
            io_weight: Some(200),
        };
        assert_eq!(
            l.files(),
            vec![
                ("memory.high", "16777216".to_owned()),
                ("memory.max", "20971520".to_owned()),
                ("cpu.weight", "50".to_owned()),
                ("cpu.max", "20000 100000".to_owned()),
                ("pids.max", "64".to_owned()),
                ("io.weight", "default 200".to_owned()),
            ]
        );
        assert!(CgroupLimits::default().files().is_empty());
    }

    #[test]
    fn bytes_read_as_written() {
        assert_eq!(human_bytes(20 << 20), "20M");
        assert_eq!(human_bytes(1 << 30), "1G");
        assert_eq!(human_bytes(1536 << 10), "1536K");
        assert_eq!(human_bytes(1000), "1000");
    }
}
