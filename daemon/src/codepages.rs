//! brummerd's own code pages in memory: after start-up, the pages of code that only
//! start-up ran are released from the resident set.
//!
//! The kernel maps a binary's code around each page fault (fault-around, 64 KiB, and whole
//! large page-cache folios), so code that ran once at start-up (argument parsing, the TOML
//! parser, pattern compilation, the D-Bus connect) stays resident with its neighbours for
//! the daemon's whole life. Code pages are clean file pages: dropping their mappings loses
//! nothing, and whatever runs again faults back in from the page cache (docs/performance.md,
//! "Memory").

/// Whether a debugger or tracer is attached: its breakpoints are private copies of code
/// pages, which `MADV_DONTNEED` would silently discard.
fn traced() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|pid| pid.trim() != "0")
    })
}

/// Drops every mapping of brummerd's own code (`MADV_DONTNEED` on its executable mapping),
/// so that only the code that runs afterwards becomes resident again. Call once, when
/// start-up is done. Failures are ignored: the only cost is memory. Not done under a
/// tracer (see `traced`).
pub fn release_startup_code() {
    if traced() {
        return;
    }
    let anchor = release_startup_code as *const () as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        else {
            continue;
        };
        if perms.starts_with("r-x") && (lo..hi).contains(&anchor) {
            // SAFETY: the range is our own executable mapping, private and never written:
            // MADV_DONTNEED only removes its page-table entries, and the next instruction
            // fetched from it faults the same bytes back in from the file.
            unsafe {
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED);
            }
        }
    }
}
