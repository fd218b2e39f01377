//! The system's process table read from /proc, indexed so that every descendant of a
//! program is found by walking only that program's part of it: by parent link, by process
//! group and by session. Read by `stop` and by the usage sampler (through `procscan`, which
//! shares each scan between every caller waiting for one), never on a hot path. Reading a
//! table never blocks anything but the thread that reads it, and holds no lock.

use rustix::fs::{Mode, OFlags, RawDir};
use std::collections::HashSet;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

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
    /// CPU time in clock ticks: its own (utime + stime) and that of the children it has
    /// waited for (cutime + cstime), so a tree's sum keeps what its exited members used.
    pub cpu_ticks: u64,
    /// Threads (tasks) of the process.
    pub threads: u32,
    /// Resident set size in pages.
    pub rss_pages: u64,
    /// A hash of its command name (comm), which changes when it executes another program:
    /// a stop that signalled a shell in the moment between its fork and its exec (its
    /// trap handler took the signal) must signal the program it became.
    pub image: u64,
}

/// Identity of a process across snapshots.
pub type Ident = (i32, u64);

impl Proc {
    pub fn ident(&self) -> Ident {
        (self.pid, self.start)
    }
}

/// Room for one /proc/PID/stat: 52 numeric fields of at most 20 digits plus a comm of at
/// most 64 bytes stay far below it; a longer read is treated as unreadable, never cut.
const STAT_MAX: usize = 4096;

/// getdents buffer for /proc: about 200 processes per call.
const DENTS_BYTES: usize = 8192;

/// Parses the contents of /proc/PID/stat without allocating.
pub fn parse_stat(s: &[u8]) -> Option<Proc> {
    let space = s.iter().position(|&b| b == b' ')?;
    let pid = parse_int(s.get(..space)?)?;
    // comm may contain spaces and parentheses; the fields after the last ')' are plain.
    let close = s.iter().rposition(|&b| b == b')')?;
    let open = s.iter().position(|&b| b == b'(').filter(|&o| o < close)?;
    // FNV-1a over comm: cheap, and only compared with itself.
    let image = s[open + 1..close]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    // The rest starts at field 3 (state): state=0 ppid=1 pgrp=2 session=3 ... utime=11
    // stime=12 cutime=13 cstime=14 ... num_threads=17 ... starttime=19 vsize=20 rss=21.
    let mut fields: [&[u8]; 22] = [&[]; 22];
    let mut rest = s.get(close + 2..)?.split(|&b| b == b' ');
    for f in &mut fields {
        *f = rest.next()?;
    }
    let int = |i: usize| fields.get(i).and_then(|f| parse_int(f));
    let ticks = |i: usize| int(i).and_then(|v| u64::try_from(v).ok());
    Some(Proc {
        pid: i32::try_from(pid).ok()?,
        ppid: i32::try_from(int(1)?).ok()?,
        pgid: i32::try_from(int(2)?).ok()?,
        sid: i32::try_from(int(3)?).ok()?,
        start: ticks(19)?,
        zombie: matches!(fields[0], b"Z" | b"X"),
        cpu_ticks: ticks(11)?
            .saturating_add(ticks(12)?)
            .saturating_add(ticks(13)?)
            .saturating_add(ticks(14)?),
        threads: u32::try_from(int(17)?).unwrap_or(0),
        rss_pages: ticks(21).unwrap_or(0),
        image,
    })
}

/// A decimal integer, optionally negative (ppid/pgid/sid are 0 for some kernel threads,
/// and -1 never appears in these fields but must not be misread as a large number).
fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

/// `PID/stat` (relative to /proc), or `/proc/PID/stat`, NUL-terminated in `buf`.
fn stat_path(pid: i32, absolute: bool, buf: &mut [u8; 32]) -> Option<&CStr> {
    proc_path(pid, absolute, b"/stat\0", buf)
}

/// `PID` + `file` (which starts with `/` and ends with NUL), under /proc when `absolute`.
fn proc_path<'a>(pid: i32, absolute: bool, file: &[u8], buf: &'a mut [u8; 32]) -> Option<&'a CStr> {
    let mut digits = [0u8; 10];
    let mut n = u32::try_from(pid).ok()?;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let prefix: &[u8] = if absolute { b"/proc/" } else { b"" };
    let parts: [&[u8]; 3] = [prefix, &digits[i..], file];
    let mut len = 0;
    for part in parts {
        buf.get_mut(len..len + part.len())?.copy_from_slice(part);
        len += part.len();
    }
    CStr::from_bytes_with_nul(buf.get(..len)?).ok()
}

/// Reads and parses one /proc/PID/stat; `None` when the process is gone (or unreadable).
fn read_stat_at(dir: impl AsFd, path: &CStr) -> Option<Proc> {
    let mut buf = [0u8; STAT_MAX];
    parse_stat(read_small(dir, path, &mut buf)?)
}

/// The whole of a small /proc file into `buf`; `None` when it is gone, unreadable or
/// does not fit (never a cut-off read).
fn read_small<'a>(dir: impl AsFd, path: &CStr, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    let fd: OwnedFd =
        rustix::fs::openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut len = 0;
    // seq_file hands the whole text to the first read of a buffer this size; loop anyway.
    loop {
        let n = rustix::io::read(&fd, buf.get_mut(len..)?).ok()?;
        if n == 0 {
            break;
        }
        len += n;
        if len == buf.len() {
            return None;
        }
    }
    buf.get(..len)
}

/// Bytes a process made the storage layer read and write (`read_bytes`, `write_bytes`
/// of /proc/PID/io), its waited-for children included. `None` when the process is gone
/// or the file is not ours to read (another user's process, or no task IO accounting).
pub fn read_io(pid: i32) -> Option<(u64, u64)> {
    let mut path = [0u8; 32];
    let mut buf = [0u8; 512];
    let text = read_small(
        rustix::fs::CWD,
        proc_path(pid, true, b"/io\0", &mut path)?,
        &mut buf,
    )?;
    parse_io(text)
}

/// `read_bytes` and `write_bytes` of a /proc/PID/io text.
pub fn parse_io(text: &[u8]) -> Option<(u64, u64)> {
    let (mut read, mut write) = (None, None);
    for line in text.split(|&b| b == b'\n') {
        let value = |prefix: &[u8]| {
            line.strip_prefix(prefix)
                .and_then(parse_int)
                .and_then(|v| u64::try_from(v).ok())
        };
        if let Some(v) = value(b"read_bytes: ") {
            read = Some(v);
        } else if let Some(v) = value(b"write_bytes: ") {
            write = Some(v);
        }
    }
    Some((read?, write?))
}

/// The process `pid` is now, read directly (not from a table): to check that a pid still
/// names the process a table described before signalling it.
pub fn read_stat(pid: i32) -> Option<Proc> {
    let mut path = [0u8; 32];
    read_stat_at(rustix::fs::CWD, stat_path(pid, true, &mut path)?)
}

/// Every process visible in /proc, with the indexes a walk from one program needs. Built
/// once per scan and shared read-only by every stop that waited for that scan.
#[derive(Debug, Default)]
pub struct Table {
    /// Which scan this is (`procscan`'s counter; 0 for a table of no scan).
    pub generation: u64,
    /// Sorted by pid.
    procs: Vec<Proc>,
    /// Indexes into `procs`, sorted by parent pid, by process group, by session.
    by_parent: Vec<u32>,
    by_pgid: Vec<u32>,
    by_sid: Vec<u32>,
}

impl Table {
    /// Reads /proc (processes that vanish while it is read are skipped). Blocking: one
    /// open/read/close per process.
    pub fn scan(generation: u64) -> Table {
        let mut procs = Vec::new();
        if let Ok(dir) = rustix::fs::openat(
            rustix::fs::CWD,
            c"/proc",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            let mut dents = vec![MaybeUninit::<u8>::uninit(); DENTS_BYTES];
            let mut entries = RawDir::new(&dir, &mut dents);
            let mut path = [0u8; 32];
            while let Some(Ok(e)) = entries.next() {
                let Some(pid) = parse_int(e.file_name().to_bytes())
                    .and_then(|p| i32::try_from(p).ok())
                    .filter(|&p| p > 0)
                else {
                    continue;
                };
                if let Some(p) =
                    stat_path(pid, false, &mut path).and_then(|c| read_stat_at(&dir, c))
                {
                    procs.push(p);
                }
            }
        }
        Table::from_procs(generation, procs)
    }

    pub fn from_procs(generation: u64, mut procs: Vec<Proc>) -> Table {
        // /proc lists pids in ascending order already: this sort is a linear check.
        procs.sort_unstable_by_key(|p| p.pid);
        procs.dedup_by_key(|p| p.pid);
        let index = |key: fn(&Proc) -> i32| {
            // u32 indexes: pid_max is at most 2^22, so a table never has more entries.
            let mut v: Vec<u32> = (0..procs.len() as u32).collect();
            v.sort_by_key(|&i| procs.get(i as usize).map_or(0, key));
            v
        };
        let by_parent = index(|p| p.ppid);
        let by_pgid = index(|p| p.pgid);
        let by_sid = index(|p| p.sid);
        Table {
            generation,
            procs,
            by_parent,
            by_pgid,
            by_sid,
        }
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Proc> {
        self.procs.iter()
    }

    pub fn get(&self, pid: i32) -> Option<&Proc> {
        let i = self.procs.binary_search_by_key(&pid, |p| p.pid).ok()?;
        self.procs.get(i)
    }

    /// The processes whose `key` is `value`, through one of the sorted indexes.
    fn with<'a>(
        &'a self,
        index: &'a [u32],
        key: fn(&Proc) -> i32,
        value: i32,
    ) -> impl Iterator<Item = &'a Proc> + 'a {
        let at = |i: &u32| self.procs.get(*i as usize).map_or(0, key);
        let lo = index.partition_point(|i| at(i) < value);
        let hi = index.partition_point(|i| at(i) <= value);
        index
            .get(lo..hi)
            .unwrap_or_default()
            .iter()
            .filter_map(|&i| self.procs.get(i as usize))
    }

    /// Live (non-zombie) processes that belong to a program: the `known` processes still
    /// alive (same pid and start time), their descendants by parent link, and every member
    /// of the process group or session `group` (children re-parented to us keep those).
    /// Costs the size of the program's part of the table, not of the table.
    pub fn members(&self, known: &HashSet<Ident>, group: i32) -> Vec<Proc> {
        let mut stack: Vec<&Proc> = known
            .iter()
            .filter_map(|&(pid, start)| self.get(pid).filter(|p| p.start == start))
            .collect();
        // Group or session 0 and 1 would be the kernel's and init's: never a program's.
        if group > 1 {
            stack.extend(self.with(&self.by_pgid, |p| p.pgid, group));
            stack.extend(self.with(&self.by_sid, |p| p.sid, group));
        }
        let mut seen: HashSet<i32> = HashSet::new();
        let mut out = Vec::new();
        while let Some(p) = stack.pop() {
            if !seen.insert(p.pid) {
                continue;
            }
            if !p.zombie {
                out.push(*p);
            }
            stack.extend(self.with(&self.by_parent, |p| p.ppid, p.pid));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = b"1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10 18446744073709551615";
        let p = parse_stat(s).unwrap();
        assert_eq!(
            (p.pid, p.ppid, p.pgid, p.sid, p.start),
            (1234, 1, 1234, 1234, 98765)
        );
        assert!(!p.zombie);
    }

    #[test]
    fn rejects_truncated_or_garbled_stat() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"12 (x) S 1 12 12 0 -1"), None);
        assert_eq!(parse_stat(b"12 (x) S 1 1x 12"), None);
        assert_eq!(parse_stat(b"99999999999999999999 (x) S 1 1 1"), None);
    }

    #[test]
    fn parses_cpu_threads_and_rss() {
        let s = b"7 (x) R 1 7 7 0 -1 0 0 0 0 0 150 25 10 5 20 0 3 0 500 1000 2560";
        let p = parse_stat(s).unwrap();
        assert_eq!(
            (p.cpu_ticks, p.threads, p.rss_pages, p.start),
            (190, 3, 2560, 500)
        );
    }

    #[test]
    fn parses_io_and_reads_our_own() {
        let t = b"rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io(t), Some((4096, 8192)));
        assert_eq!(parse_io(b"rchar: 10\n"), None);
        assert!(read_io(std::process::id() as i32).is_some());
    }

    #[test]
    fn paths_are_built_without_allocating() {
        let mut b = [0u8; 32];
        assert_eq!(stat_path(7, false, &mut b).unwrap(), c"7/stat");
        assert_eq!(
            stat_path(4_194_304, true, &mut b).unwrap(),
            c"/proc/4194304/stat"
        );
        assert_eq!(stat_path(-1, true, &mut b), None);
    }

    #[test]
    fn our_own_process_is_in_the_scan_and_reads_the_same_directly() {
        let t = Table::scan(1);
        let me = std::process::id() as i32;
        let p = t.get(me).copied().unwrap();
        // What names the process is the same; its usage (RSS, CPU, threads) moves between
        // the two reads.
        let direct = read_stat(me).unwrap();
        assert_eq!(
            (
                direct.pid,
                direct.ppid,
                direct.pgid,
                direct.sid,
                direct.start,
                direct.image
            ),
            (p.pid, p.ppid, p.pgid, p.sid, p.start, p.image)
        );
        assert_eq!(p.ppid, std::os::unix::process::parent_id() as i32);
        assert!(t.len() > 1);
    }

    fn p(pid: i32, ppid: i32, pgid: i32, sid: i32) -> Proc {
        Proc {
            pid,
            ppid,
            pgid,
            sid,
            start: pid as u64,
            zombie: false,
            cpu_ticks: 0,
            threads: 1,
            rss_pages: 0,
            image: 0,
        }
    }

    fn pids(mut v: Vec<Proc>) -> Vec<i32> {
        v.sort_by_key(|p| p.pid);
        v.iter().map(|p| p.pid).collect()
    }

    #[test]
    fn members_follow_parents_groups_and_sessions() {
        let table = Table::from_procs(
            1,
            vec![
                p(10, 1, 10, 10), // root
                p(11, 10, 10, 10),
                p(12, 10, 12, 12), // setsid child: found by parent link
                p(13, 12, 12, 12),
                p(20, 1, 10, 10), // re-parented group member
                p(30, 1, 30, 30), // unrelated
                p(31, 30, 30, 30),
            ],
        );
        let roots = HashSet::from([(10, 10)]);
        assert_eq!(pids(table.members(&roots, 10)), vec![10, 11, 12, 13, 20]);
        assert_eq!(
            pids(table.members(&roots, 30)),
            vec![10, 11, 12, 13, 30, 31]
        );
    }

    #[test]
    fn members_skip_zombies_and_recycled_pids_but_walk_through_them() {
        let mut zombie = p(10, 1, 10, 10);
        zombie.zombie = true;
        let mut recycled = p(40, 1, 40, 40);
        recycled.start = 999;
        let table = Table::from_procs(
            1,
            vec![
                zombie,
                p(11, 10, 11, 11), // left the group, parent not reaped yet
                recycled,
                p(41, 40, 40, 40),
            ],
        );
        // 40 was known with start time 40: the process now at pid 40 is someone else.
        let known = HashSet::from([(10, 10), (40, 40)]);
        assert_eq!(pids(table.members(&known, 10)), vec![11]);
    }

    #[test]
    fn members_of_a_small_program_among_many_others() {
        // 100,000 unrelated processes around a program of two. What the walk costs is a
        // benchmark's question (docs/performance.md, Scaling); this checks what it finds.
        let mut procs: Vec<Proc> = (1000..101_000).map(|i| p(i, 1, i, i)).collect();
        procs.extend([p(200, 1, 200, 200), p(201, 200, 200, 200)]);
        let table = Table::from_procs(1, procs);
        let known = HashSet::from([(200, 200)]);
        assert_eq!(pids(table.members(&known, 200)), vec![200, 201]);
    }
}
