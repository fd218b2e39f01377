//! Who may change things, for both control planes: root, brummerd's own uid, and members of
//! group `brummer`. Everyone else who can reach a plane may read.

use crate::mode::Mode;
use std::sync::OnceLock;

pub struct Access {
    /// uid of brummerd; it may always change things.
    uid: u32,
    /// gid of group `brummer`, whose members may change things: looked up at start in
    /// system mode, on first use (a caller that is neither root nor `uid`) in user mode.
    brummer_gid: OnceLock<Option<u32>>,
}

impl Access {
    pub fn new(mode: Mode) -> Access {
        let a = Access {
            uid: nix::unistd::getuid().as_raw(),
            brummer_gid: OnceLock::new(),
        };
        if mode == Mode::System {
            a.brummer_gid();
        }
        a
    }

    /// brummerd's own uid.
    pub fn daemon_uid(&self) -> u32 {
        self.uid
    }

    /// The gid of group `brummer`, if it exists. A user daemon's socket is private (0600),
    /// so its callers are nearly always root or its own uid and never need the lookup;
    /// skipping it at start keeps NSS (libnss_systemd, libcap) out of the daemon's memory.
    /// The one blocking lookup then happens on the first foreign caller.
    pub fn brummer_gid(&self) -> Option<u32> {
        *self.brummer_gid.get_or_init(|| {
            nix::unistd::Group::from_name("brummer")
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        })
    }

    /// The rule for a socket peer (SO_PEERCRED): its uid, its primary gid, and its pid,
    /// whose supplementary groups are read from /proc at connect time (they reflect
    /// `newgrp`/`sg` and need no NSS lookup).
    pub fn may_write_peer(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        uid == 0
            || uid == self.uid
            || self
                .brummer_gid()
                .is_some_and(|g| gid == g || pid.is_some_and(|p| in_group(p, g)))
    }

    /// The rule for a caller known by uid, as the D-Bus side learns it from the bus
    /// (GetConnectionCredentials): root, brummerd's uid, or a member of group `brummer`,
    /// judged by the group list the bus reports, else by the caller's /proc status
    /// (effective gid and supplementary groups).
    pub fn may_write(&self, uid: u32, groups: Option<&[u32]>, pid: Option<u32>) -> bool {
        uid == 0
            || uid == self.uid
            || self.brummer_gid().is_some_and(|g| match groups {
                Some(gs) => gs.contains(&g),
                None => pid.is_some_and(|p| {
                    i32::try_from(p).is_ok_and(|p| in_group(p, g) || effective_gid(p) == Some(g))
                }),
            })
    }
}

/// The effective gid of process `pid`, from the second field of `Gid:` in /proc/PID/status.
fn effective_gid(pid: i32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find_map(|l| l.strip_prefix("Gid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether process `pid` has `gid` among its supplementary groups.
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
    use super::*;

    #[test]
    fn reads_our_own_groups() {
        let me = std::process::id() as i32;
        let gid = nix::unistd::getegid().as_raw();
        let groups = nix::unistd::getgroups().unwrap_or_default();
        for g in groups {
            assert!(in_group(me, g.as_raw()));
        }
        assert!(!in_group(me, 4_000_000_000));
        assert_eq!(effective_gid(me), Some(gid));
    }

    #[test]
    fn root_and_the_daemon_uid_may_write_others_only_by_group() {
        let a = Access::new(Mode::User);
        let me = a.daemon_uid();
        assert!(a.may_write(0, Some(&[]), None));
        assert!(a.may_write(me, Some(&[]), None));
        assert!(a.may_write_peer(0, 12345, None));
        assert!(a.may_write_peer(me, 12345, None));
        let stranger = if me == 4_000_000 {
            4_000_001
        } else {
            4_000_000
        };
        // With a group list that does not hold group brummer (or no such group), no.
        assert!(!a.may_write(stranger, Some(&[4_000_002]), None));
        match a.brummer_gid() {
            Some(g) => {
                assert!(a.may_write(stranger, Some(&[g]), None));
                assert!(a.may_write_peer(stranger, g, None));
            }
            None => assert!(!a.may_write_peer(stranger, 4_000_002, None)),
        }
    }
}
