//! Where brummerd's own log goes: the journal (tracing-journald) when systemd connected our
//! stderr to it, stderr otherwise. Same events and fields either way; in the journal each
//! field is a journal field (`PROCESS=web`, `CAUSE=...`), so
//! `journalctl -u brummerd PROCESS=web` or `-o verbose` shows them.
//!
//! The check is systemd's documented one (systemd.exec(5), JOURNAL_STREAM): the variable
//! holds `DEVICE:INODE` of the stream systemd connected, and it counts only when stderr is
//! still that very file. A child that inherited the variable but has its stderr redirected
//! (or brummerd started by hand from a unit's shell) logs to stderr.

use std::os::fd::AsFd;

/// Whether `journal_stream` (the value of `JOURNAL_STREAM`) names the file whose device and
/// inode are `dev`/`ino`. Both numbers are decimal, as systemd writes them.
pub fn journal_stream_matches(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    matches!((d.parse::<u64>(), i.parse::<u64>()), (Ok(d), Ok(i)) if d == dev && i == ino)
}

/// Whether our stderr is the journal stream systemd gave us.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(value) = value.to_str() else {
        return false;
    };
    match rustix::fs::fstat(std::io::stderr().as_fd()) {
        Ok(st) => journal_stream_matches(value, st.st_dev, st.st_ino),
        Err(_) => false,
    }
}

/// Installs the global subscriber. `BRUMMER_LOG` is an env-filter (default `info`).
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_env("BRUMMER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_syslog_identifier("brummerd".to_owned())
                    .with_field_prefix(None);
                tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .init();
                return;
            }
            Err(e) => eprintln!("brummerd: cannot open the journal, logging to stderr: {e}"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_match_device_and_inode() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(journal_stream_matches(" 8:12345\n", 8, 12345));
        assert!(!journal_stream_matches("8:12346", 8, 12345));
        assert!(!journal_stream_matches("9:12345", 8, 12345));
        assert!(!journal_stream_matches("", 8, 12345));
        assert!(!journal_stream_matches("8", 8, 12345));
        assert!(!journal_stream_matches("8:", 8, 12345));
        assert!(!journal_stream_matches("a:b", 8, 12345));
        assert!(!journal_stream_matches("8:12345:1", 8, 12345));
        assert!(!journal_stream_matches("-8:12345", 8, 12345));
    }

    #[test]
    fn a_real_file_matches_its_own_dev_and_inode_only() {
        let f = tempfile::tempfile().unwrap();
        let st = rustix::fs::fstat(&f).unwrap();
        let value = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(journal_stream_matches(&value, st.st_dev, st.st_ino));
        let g = tempfile::tempfile().unwrap();
        let st2 = rustix::fs::fstat(&g).unwrap();
        assert!(!journal_stream_matches(&value, st2.st_dev, st2.st_ino));
    }
}
