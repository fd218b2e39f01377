//! What /proc says about a process: alive or not, its parent, group and session, and which
//! processes carry a daemon's test tag.

/// The fields of /proc/PID/stat after the `(comm)` one: state, ppid, pgrp, session, ...
/// None when the process is gone.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: the fields start after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// True when `pid` names a live process (it exists in /proc and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z"))
}

/// Parent pid; None when the process is gone.
pub fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// (process group, session); None when the process is gone.
pub fn pgrp_and_session(pid: u32) -> Option<(u32, u32)> {
    let f = stat_fields(pid)?;
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// The process's name (/proc/PID/comm), empty when it is gone.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Live (non-zombie) processes whose environment holds BRUMMER_TEST_TAG=tag, other than
/// `except` and this test process.
pub fn tagged(tag: &str, except: u32) -> Vec<u32> {
    tagged_with(tag, except, "")
}

/// Like [`tagged`], but only processes whose environment also holds the entry `also`
/// (`KEY=VALUE`; empty: no further condition).
pub fn tagged_with(tag: &str, except: u32, also: &str) -> Vec<u32> {
    let needle = format!("BRUMMER_TEST_TAG={tag}");
    let mut out = vec![];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == except || pid == std::process::id() || !pid_alive(pid) {
            continue;
        }
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ"))
            && env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
            && (also.is_empty() || env.split(|b| *b == 0).any(|kv| kv == also.as_bytes()))
        {
            out.push(pid);
        }
    }
    out
}

/// Bytes the process has read through read(2)-like calls so far (`rchar` of
/// /proc/PID/io): how much a request made brummerd read, whatever the page cache held.
pub fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("read /proc/PID/io");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("rchar in /proc/PID/io")
}

/// Live processes carrying BRUMMER_TEST_TAG=tag (other than `except` and this test
/// process), grouped by their BRUMMER_PROCESS (brummerd's mark; "" when missing).
pub fn tagged_by_program(tag: &str, except: u32) -> std::collections::BTreeMap<String, Vec<u32>> {
    let needle = format!("BRUMMER_TEST_TAG={tag}");
    let mut out: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == except || pid == std::process::id() {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) || !pid_alive(pid) {
            continue;
        }
        let name = env
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(b"BRUMMER_PROCESS="))
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        out.entry(name).or_default().push(pid);
    }
    out
}
