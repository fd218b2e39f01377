//! A stand-in for systemd's file descriptor store, for crash tests without systemd as PID 1:
//! a datagram socket brummerd gets as `NOTIFY_SOCKET` (with `FDSTORE=`), a thread that
//! keeps the descriptors it sends with `FDSTORE=1`/`FDNAME=` and drops them on
//! `FDSTOREREMOVE=1`, as systemd does, and [`FdStore::passed`], what systemd would pass
//! to the brummerd it starts after a crash (`LISTEN_FDS`, `LISTEN_FDNAMES`).

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use std::collections::BTreeMap;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Stored = Arc<Mutex<BTreeMap<String, OwnedFd>>>;

pub struct FdStore {
    path: PathBuf,
    stored: Stored,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FdStore {
    /// Listens at `dir/notify`.
    pub fn new(dir: &Path) -> FdStore {
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind the store's notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let stored = Stored::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (stored, stop) = (stored.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    receive(&sock, &stored);
                }
            }
        });
        FdStore {
            path,
            stored,
            stop,
            thread: Some(thread),
        }
    }

    /// What brummerd needs to use the store: `NOTIFY_SOCKET` and `FDSTORE`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("NOTIFY_SOCKET".into(), self.path.display().to_string()),
            ("FDSTORE".into(), "4096".into()),
        ]
    }

    /// The names stored now.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// A copy of every stored descriptor with its name, as systemd passes them to the
    /// service it starts again (it keeps its own).
    pub fn passed(&self) -> Vec<(String, OwnedFd)> {
        self.lock()
            .iter()
            .map(|(n, fd)| (n.clone(), fd.try_clone().expect("dup a stored descriptor")))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, OwnedFd>> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FdStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Receives one datagram (or times out) and applies what it says to the store.
fn receive(sock: &UnixDatagram, stored: &Stored) {
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 16]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let Ok(msg) = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    ) else {
        return;
    };
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors for us.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
    }
    let n = msg.bytes;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let has = |k: &str| text.lines().any(|l| l == k);
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("FDNAME="))
        .unwrap_or("stored")
        .to_owned();
    let mut s = stored.lock().unwrap_or_else(|e| e.into_inner());
    if has("FDSTOREREMOVE=1") {
        s.remove(&name);
    } else if has("FDSTORE=1")
        && let Some(fd) = fds.pop()
    {
        s.insert(name, fd);
    }
}
