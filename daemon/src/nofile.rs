//! The open-file limit (RLIMIT_NOFILE). Each program holds five descriptors while it runs
//! (its disk log and index, two pipes, a pidfd; two while stopped), so 1,000 programs need
//! about 5,000, while systemd and most shells hand a process a soft limit of 1,024. At 1,024
//! brummerd could not open the logs of the 500th program and then could not accept a
//! connection (issue 7). `main.rs` calls `raise` once, before anything is opened, to lift
//! the soft limit to the hard one (what systemd does for itself).
//!
//! Programs inherit the raised limit, as under supervisord (`minfds`), pm2 or a container
//! runtime. systemd instead gives its services a soft 1,024 back, for programs that use
//! select(2) or close every descriptor up to the limit; brummer cannot do that without
//! giving up `posix_spawn` (no rlimit attribute exists, and a `prlimit` after the spawn
//! races with the program's start). A program that needs 1,024 says so in its command
//! (`sh -c 'ulimit -Sn 1024; exec prog'`), see brummer.toml(5).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors one running program holds in brummerd.
pub const PER_PROGRAM: u64 = 5;
/// Descriptors brummerd needs besides its programs (runtime, sockets, D-Bus, clients).
pub const BASE: u64 = 64;

/// `u64::MAX` for "unlimited", as `Rlimit` spells it with `None`.
const INFINITY: u64 = u64::MAX;
/// What `raise` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Soft limit before (`u64::MAX`: unlimited).
    pub before: u64,
    /// Soft limit now.
    pub now: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit. An unlimited hard limit is not a valid
/// soft NOFILE value (the kernel caps it at fs.nr_open), so then nr_open is used.
pub fn raise() -> std::io::Result<Limits> {
    let cur = getrlimit(Resource::Nofile);
    let before = cur.current.unwrap_or(INFINITY);
    let hard = cur.maximum.unwrap_or(INFINITY);
    let target = if hard == INFINITY { nr_open() } else { hard };
    if target <= before {
        return Ok(Limits {
            before,
            now: before,
            hard,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: cur.maximum,
        },
    )?;
    Ok(Limits {
        before,
        now: target,
        hard,
    })
}

/// Whether `limit` is enough for `programs` running programs; `Some(needed)` when not.
pub fn shortfall(limit: u64, programs: usize) -> Option<u64> {
    let needed = BASE + PER_PROGRAM * programs as u64;
    (limit < needed).then_some(needed)
}

fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortfall_counts_five_per_program() {
        assert_eq!(shortfall(1024, 100), None);
        assert_eq!(shortfall(1024, 1000), Some(5064));
        assert_eq!(shortfall(5064, 1000), None);
    }
}
