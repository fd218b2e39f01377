//! Who is on the other end of a connection (SO_PEERCRED) and whether they may change
//! things: root, brummerd's own uid, and members of group `brummer`. Everyone else who can
//! open the socket may read.

use crate::daemon::Daemon;
use tokio::net::UnixStream;

#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
    pub can_write: bool,
}

impl Peer {
    pub fn of(stream: &UnixStream, daemon: &Daemon) -> std::io::Result<Peer> {
        let cred = stream.peer_cred()?;
        let uid = cred.uid();
        let pid = cred.pid();
        let can_write = uid == 0
            || uid == daemon.uid
            || daemon
                .brummer_gid()
                .is_some_and(|g| cred.gid() == g || pid.is_some_and(|p| in_group(p, g)));
        Ok(Peer {
            uid,
            pid,
            can_write,
        })
    }
}

/// The write rule for a caller known by uid, as the D-Bus side learns it from the bus
/// (GetConnectionCredentials): root, brummerd's uid, or a member of group `brummer`, judged
/// by the group list the bus reports, else by the caller's /proc status (effective gid and
/// supplementary groups).
pub fn may_write(daemon: &Daemon, uid: u32, groups: Option<&[u32]>, pid: Option<u32>) -> bool {
    uid == 0
        || uid == daemon.uid
        || daemon.brummer_gid().is_some_and(|g| match groups {
            Some(gs) => gs.contains(&g),
            None => pid.is_some_and(|p| {
                i32::try_from(p).is_ok_and(|p| in_group(p, g) || effective_gid(p) == Some(g))
            }),
        })
}

/// The effective gid of process `pid`, from the second field of `Gid:` in /proc/PID/status.
fn effective_gid(pid: i32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find_map(|l| l.strip_prefix("Gid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether process `pid` has `gid` among its supplementary groups. Read from
/// /proc/PID/status at connect time: it reflects `newgrp`/`sg` and needs no NSS lookup.
fn in_group(pid: i32, gid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .map(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_our_own_groups() {
        let me = std::process::id() as i32;
        let gid = nix::unistd::getegid().as_raw();
        let groups = nix::unistd::getgroups().unwrap_or_default();
        for g in groups {
            assert!(super::in_group(me, g.as_raw()));
        }
        assert!(!super::in_group(me, 4_000_000_000));
        assert_eq!(super::effective_gid(me), Some(gid));
    }
}
