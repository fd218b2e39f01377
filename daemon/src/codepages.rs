//! brummerd's clean file pages in memory: after start-up, the pages of code and read-only
//! data that only start-up used are released from the resident set.
//!
//! The kernel maps a file's pages around each page fault (fault-around, 64 KiB, and whole
//! large page-cache folios), so code and constants that ran once at start-up (argument
//! parsing, the TOML parser, pattern compilation, the D-Bus connect, the dynamic linker's
//! work in the libraries) stay resident with their neighbours for the daemon's whole life.
//! A file mapping none of whose pages was ever written is a set of clean page-cache pages:
//! dropping its page-table entries loses nothing, and whatever is used again faults back in
//! from the page cache (docs/performance.md, "Memory").

/// Whether a debugger or tracer is attached: its breakpoints are private copies of code
/// pages, and it may be reading the others.
fn traced() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|pid| pid.trim() != "0")
    })
}

/// One mapping of /proc/self/smaps: its range, whether it maps a file, and whether any of
/// its pages is a private (written) copy.
struct Mapping {
    lo: usize,
    hi: usize,
    file: bool,
    writable: bool,
    anonymous_kb: u64,
    rss_kb: u64,
}

impl Mapping {
    /// Read-only, file-backed, and not one page of it written: safe to release.
    fn clean(&self) -> bool {
        self.file && !self.writable && self.anonymous_kb == 0
    }
}

fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            out.push(Mapping {
                lo,
                hi,
                file: path.starts_with('/'),
                writable: perms.as_bytes().get(1) == Some(&b'w'),
                // Unknown until its `Anonymous:` line: count as written.
                anonymous_kb: u64::MAX,
                rss_kb: 0,
            });
        } else if first == "Anonymous:"
            && let Some(m) = out.last_mut()
        {
            m.anonymous_kb = fields
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
        } else if first == "Rss:"
            && let Some(m) = out.last_mut()
        {
            m.rss_kb = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    out
}

/// Drops the page-table entries of every read-only file mapping that holds no private page
/// (brummerd's code and constants, the libraries'), so that only what is used afterwards
/// becomes resident again. Call once, when start-up is done. Failures are ignored: the only
/// cost is memory. Not done under a tracer (see `traced`).
pub fn release_startup_pages() {
    if traced() {
        return;
    }
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for m in mappings(&smaps) {
        // A mapping with a private page (relocations written at load, a breakpoint) would
        // lose it: only mappings that are clean as a whole are released.
        if m.clean() {
            // SAFETY: a private read-only file mapping with no anonymous (written) page:
            // MADV_DONTNEED only removes page-table entries of clean file pages, and the
            // next access faults the same bytes back in from the file.
            unsafe {
                libc::madvise(m.lo as *mut libc::c_void, m.hi - m.lo, libc::MADV_DONTNEED);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_qualify() {
        let smaps = "\
5555a000-5555b000 r-xp 00000000 fd:01 42 /usr/bin/brummerd
Size:                  4 kB
Anonymous:             0 kB
5555b000-5555c000 r--p 00001000 fd:01 42 /usr/bin/brummerd
Anonymous:             4 kB
5555c000-5555d000 rw-p 00002000 fd:01 42 /usr/bin/brummerd
Anonymous:             0 kB
7fff0000-7fff1000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
        let m = mappings(smaps);
        let clean: Vec<bool> = m.iter().map(Mapping::clean).collect();
        assert_eq!(clean, [true, false, false, false]);
        assert_eq!((m[0].lo, m[0].hi), (0x5555a000, 0x5555b000));
    }

    /// Resident KiB of the clean read-only file mappings of this process.
    fn clean_rss() -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        mappings(&smaps)
            .iter()
            .filter(|m| m.clean())
            .map(|m| m.rss_kb)
            .sum()
    }

    #[test]
    fn releasing_shrinks_the_resident_clean_pages_and_the_code_runs_on() {
        let before = clean_rss();
        release_startup_pages();
        let after = clean_rss();
        // The test harness, std and libc ran before: much of their code was resident, and
        // only what ran since (this test, the smaps read) came back.
        assert!(
            after < before,
            "clean file pages: {before} KiB -> {after} KiB"
        );
        // Code released above still runs, and computes the same.
        let v: Vec<u64> = (0..1000).map(|i| i * i).collect();
        assert_eq!(v.iter().sum::<u64>(), 332_833_500);
    }
}
