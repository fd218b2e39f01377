//! systemd's file descriptor store for a program's run: each running child's stdout and
//! stderr read ends, its pidfd and its notify socket (`ready = "notify"`) are kept there
//! (FDSTORE=1, one FDNAME each), so that a brummerd started again after a crash gets them
//! back (LISTEN_FDS) and re-adopts the program instead of losing its output or its
//! watchdog (docs/architecture.md, "What survives which event").
//!
//! On only when the service manager says it keeps descriptors: `$FDSTORE` (set by systemd
//! 254 and later to `FileDescriptorStoreMax=`, and by brummerd's units for older ones) is
//! a positive number and `NOTIFY_SOCKET` is set. Every call is then one datagram to systemd
//! and never waits; a failure is logged and costs only the survival of that run.

use std::os::fd::BorrowedFd;
use std::sync::OnceLock;

/// The descriptors of a run, by the suffix of their names: three always, the notify
/// socket when the run has one.
pub const STDOUT: &str = "out";
pub const STDERR: &str = "err";
pub const PIDFD: &str = "pid";
pub const NOTIFY: &str = "notify";

/// Whether the store is in use, decided once from the environment.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let max = std::env::var("FDSTORE")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        max > 0 && std::env::var_os("NOTIFY_SOCKET").is_some()
    })
}

/// The store's name of one of `program`'s descriptors: `NAME.out`, `NAME.err`, `NAME.pid`,
/// `NAME.notify` (program names have no `:`, the one character FDNAME forbids).
pub fn name(program: &str, kind: &str) -> String {
    format!("{program}.{kind}")
}

/// Splits a stored name back into program and kind; `None` for a name that is not ours
/// (the control socket, "control").
pub fn parse(stored: &str) -> Option<(&str, &str)> {
    let (program, kind) = stored.rsplit_once('.')?;
    (!program.is_empty() && matches!(kind, STDOUT | STDERR | PIDFD | NOTIFY))
        .then_some((program, kind))
}

/// Stores a new run's descriptors, replacing those of the run before. Returns the names
/// stored (empty when the store is off or refused).
pub fn store(program: &str, fds: &[(&str, BorrowedFd<'_>)]) -> Vec<String> {
    if !enabled() {
        return Vec::new();
    }
    remove(program);
    let mut names = Vec::with_capacity(fds.len());
    for (kind, fd) in fds {
        let n = name(program, kind);
        let states = [
            sd_notify::NotifyState::FdStore,
            sd_notify::NotifyState::FdName(&n),
        ];
        match sd_notify::notify_with_fds(&states, &[*fd]) {
            Ok(()) => names.push(n),
            Err(e) => {
                tracing::warn!(process = %program, cause = %e, "cannot keep the run's descriptors in systemd's store; it will not survive a crash of brummerd");
                return names;
            }
        }
    }
    names
}

/// Drops a program's descriptors from the store (its run ended).
pub fn remove(program: &str) {
    if !enabled() {
        return;
    }
    for kind in [STDOUT, STDERR, PIDFD, NOTIFY] {
        let n = name(program, kind);
        let states = [
            sd_notify::NotifyState::FdStoreRemove,
            sd_notify::NotifyState::FdName(&n),
        ];
        if let Err(e) = sd_notify::notify(&states) {
            tracing::debug!(process = %program, cause = %e, "FDSTOREREMOVE failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_names_are_not_ours() {
        assert_eq!(parse(&name("web.v2", STDOUT)), Some(("web.v2", "out")));
        assert_eq!(parse(&name("db", PIDFD)), Some(("db", "pid")));
        assert_eq!(parse(&name("db", NOTIFY)), Some(("db", "notify")));
        assert_eq!(parse("control"), None);
        assert_eq!(parse("web.sock"), None);
        assert_eq!(parse(".out"), None);
    }
}
