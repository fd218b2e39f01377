//! A snapshot of the system's process table from /proc, to find every descendant of a
//! program: by parent links, by process group and by session. Used by `stop` only, never
//! on a hot path.

use std::collections::{HashMap, HashSet};
use std::fs;

/// One process as /proc/PID/stat describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// Start time in clock ticks since boot: with the pid it names a process uniquely, so a
    /// recycled pid is never mistaken for the one we saw.
    pub start: u64,
    pub zombie: bool,
}

/// Identity of a process across snapshots.
pub type Ident = (i32, u64);

impl Proc {
    pub fn ident(&self) -> Ident {
        (self.pid, self.start)
    }
}

/// Parses the contents of /proc/PID/stat.
pub fn parse_stat(s: &str) -> Option<Proc> {
    let pid = s.split_once(' ')?.0.parse().ok()?;
    // comm may contain spaces and parentheses; the fields after the last ')' are plain.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state): state=0 ppid=1 pgrp=2 session=3 ... starttime=19
    Some(Proc {
        pid,
        zombie: matches!(*f.first()?, "Z" | "X"),
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// Every process visible in /proc (those that vanish while scanning are skipped).
pub fn snapshot() -> HashMap<i32, Proc> {
    let mut out = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some(p) = parse_stat(&s)
        {
            out.insert(pid, p);
        }
    }
    out
}

/// Live (non-zombie) processes that belong to a program: the `roots` still alive, their
/// descendants by parent link, and every member of a root's process group or session
/// (children that were re-parented to us keep those).
pub fn members(table: &HashMap<i32, Proc>, roots: &HashSet<Ident>, groups: &[i32]) -> Vec<Proc> {
    let mut children: HashMap<i32, Vec<&Proc>> = HashMap::new();
    for p in table.values() {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut seen: HashSet<i32> = HashSet::new();
    let mut stack: Vec<&Proc> = Vec::new();
    for p in table.values() {
        let is_root = roots.contains(&p.ident());
        let in_group = groups.iter().any(|&g| g > 1 && (p.pgid == g || p.sid == g));
        if is_root || in_group {
            stack.push(p);
        }
    }
    let mut out = Vec::new();
    while let Some(p) = stack.pop() {
        if !seen.insert(p.pid) {
            continue;
        }
        if !p.zombie {
            out.push(*p);
        }
        if let Some(kids) = children.get(&p.pid) {
            stack.extend(kids.iter().copied());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10 18446744073709551615";
        let p = parse_stat(s).unwrap();
        assert_eq!(
            (p.pid, p.ppid, p.pgid, p.sid, p.start),
            (1234, 1, 1234, 1234, 98765)
        );
        assert!(!p.zombie);
    }

    #[test]
    fn our_own_process_is_in_the_snapshot() {
        let t = snapshot();
        let me = std::process::id() as i32;
        assert!(t.contains_key(&me));
    }

    #[test]
    fn members_follow_parents_groups_and_sessions() {
        let p = |pid, ppid, pgid, sid| Proc {
            pid,
            ppid,
            pgid,
            sid,
            start: pid as u64,
            zombie: false,
        };
        let table: HashMap<i32, Proc> = [
            p(10, 1, 10, 10), // root
            p(11, 10, 10, 10),
            p(12, 10, 12, 12), // setsid child: found by parent link
            p(13, 12, 12, 12),
            p(20, 1, 10, 10), // re-parented group member
            p(30, 1, 30, 30), // unrelated
        ]
        .into_iter()
        .map(|p| (p.pid, p))
        .collect();
        let roots = HashSet::from([(10, 10)]);
        let mut got: Vec<i32> = members(&table, &roots, &[10])
            .iter()
            .map(|p| p.pid)
            .collect();
        got.sort();
        assert_eq!(got, vec![10, 11, 12, 13, 20]);
    }
}
