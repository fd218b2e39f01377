//! Which control socket brummerctl talks to.
//!
//! Order: `--socket`, then `$BRUMMER_SOCKET`, then the user socket (when it exists and the
//! caller is not root), then the system socket. [`discover`] is a pure function of its
//! inputs so the precedence is testable; [`SocketEnv::from_process`] reads the real ones.

use brummer_proto::{SOCKET_FILE, SYSTEM_SOCKET};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What discovery reads from the process environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketEnv {
    /// `$BRUMMER_SOCKET`.
    pub brummer_socket: Option<OsString>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<OsString>,
    /// Effective uid of the caller.
    pub euid: u32,
}

impl SocketEnv {
    pub fn from_process() -> SocketEnv {
        SocketEnv {
            brummer_socket: std::env::var_os("BRUMMER_SOCKET"),
            xdg_runtime_dir: std::env::var_os("XDG_RUNTIME_DIR"),
            // SAFETY: geteuid has no preconditions and cannot fail.
            euid: unsafe { libc::geteuid() },
        }
    }

    /// `$XDG_RUNTIME_DIR`, or `/run/user/$UID` when it is unset or empty.
    fn runtime_dir(&self) -> PathBuf {
        match non_empty(&self.xdg_runtime_dir) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(format!("/run/user/{}", self.euid)),
        }
    }

    /// Where a `brummerd --user` of this user listens.
    pub fn user_socket(&self) -> PathBuf {
        self.runtime_dir().join("brummer").join(SOCKET_FILE)
    }
}

/// Where the socket path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    User,
    System,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketChoice {
    pub path: PathBuf,
    pub source: Source,
    /// The path belongs to a per-user daemon: error messages suggest `brummerd --user`
    /// rather than systemctl.
    pub user_mode: bool,
}

/// Picks the socket. `exists` is asked about the user socket only.
pub fn discover(
    flag: Option<&Path>,
    env: &SocketEnv,
    exists: impl Fn(&Path) -> bool,
) -> SocketChoice {
    let user_mode = |p: &Path| p.starts_with(env.runtime_dir()) || p.starts_with("/run/user");
    if let Some(p) = flag.filter(|p| !p.as_os_str().is_empty()) {
        return SocketChoice {
            path: p.to_path_buf(),
            source: Source::Flag,
            user_mode: user_mode(p),
        };
    }
    if let Some(p) = non_empty(&env.brummer_socket) {
        let path = PathBuf::from(p);
        return SocketChoice {
            user_mode: user_mode(&path),
            path,
            source: Source::Env,
        };
    }
    if env.euid != 0 {
        let user = env.user_socket();
        if exists(&user) {
            return SocketChoice {
                path: user,
                source: Source::User,
                user_mode: true,
            };
        }
    }
    SocketChoice {
        path: PathBuf::from(SYSTEM_SOCKET),
        source: Source::System,
        user_mode: false,
    }
}

/// Where per-user runtime folders live (`/run/user/UID`).
pub const RUN_USER: &str = "/run/user";

/// The `brummerd --user` sockets for which `listening` holds: the caller's own user socket
/// and those of every user under `run_user`, each once. For the message when the system
/// socket does not answer: as root the user socket is never chosen on its own (a root
/// shell's `XDG_RUNTIME_DIR` often is another user's), so brummerctl names it instead.
pub fn listening_user_sockets(
    env: &SocketEnv,
    run_user: &Path,
    listening: impl Fn(&Path) -> bool,
) -> Vec<PathBuf> {
    let mut candidates = vec![env.user_socket()];
    if let Ok(rd) = std::fs::read_dir(run_user) {
        let mut others: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path().join("brummer").join(SOCKET_FILE))
            .collect();
        others.sort();
        candidates.extend(others);
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for c in candidates {
        if !out.contains(&c) && listening(&c) {
            out.push(c);
        }
    }
    out
}

fn non_empty(v: &Option<OsString>) -> Option<&OsString> {
    v.as_ref().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(sock: Option<&str>, xdg: Option<&str>, euid: u32) -> SocketEnv {
        SocketEnv {
            brummer_socket: sock.map(Into::into),
            xdg_runtime_dir: xdg.map(Into::into),
            euid,
        }
    }

    const XDG_SOCK: &str = "/run/user/1000/brummer/brummer.sock";

    #[test]
    fn flag_beats_everything() {
        let e = env(Some("/env.sock"), Some("/run/user/1000"), 1000);
        let c = discover(Some(Path::new("/flag.sock")), &e, |_| true);
        assert_eq!(c.path, Path::new("/flag.sock"));
        assert_eq!(c.source, Source::Flag);
        assert!(!c.user_mode);
    }

    #[test]
    fn env_beats_user_and_system() {
        let e = env(Some("/env.sock"), Some("/run/user/1000"), 1000);
        let c = discover(None, &e, |_| true);
        assert_eq!(
            (c.path.as_path(), c.source),
            (Path::new("/env.sock"), Source::Env)
        );
        // An empty variable counts as unset.
        let e = env(Some(""), Some("/run/user/1000"), 1000);
        assert_eq!(discover(None, &e, |_| true).source, Source::User);
    }

    #[test]
    fn user_socket_only_when_it_exists_and_not_root() {
        let e = env(None, Some("/run/user/1000"), 1000);
        let c = discover(None, &e, |p| p == Path::new(XDG_SOCK));
        assert_eq!(c.path, Path::new(XDG_SOCK));
        assert_eq!(c.source, Source::User);
        assert!(c.user_mode);

        let c = discover(None, &e, |_| false);
        assert_eq!(c.path, Path::new(SYSTEM_SOCKET));
        assert_eq!(c.source, Source::System);
        assert!(!c.user_mode);

        let root = env(None, Some("/run/user/0"), 0);
        let c = discover(None, &root, |_| true);
        assert_eq!(c.source, Source::System);
    }

    #[test]
    fn user_socket_falls_back_to_run_user_uid() {
        let e = env(None, None, 1234);
        assert_eq!(
            e.user_socket(),
            Path::new("/run/user/1234/brummer/brummer.sock")
        );
        let e = env(None, Some(""), 1234);
        assert_eq!(
            e.user_socket(),
            Path::new("/run/user/1234/brummer/brummer.sock")
        );
        let e = env(None, Some("/tmp/rt"), 1234);
        assert_eq!(e.user_socket(), Path::new("/tmp/rt/brummer/brummer.sock"));
        let c = discover(None, &e, |p| p == Path::new("/tmp/rt/brummer/brummer.sock"));
        assert_eq!(c.source, Source::User);
    }

    #[test]
    fn listening_user_instances_are_found_once_each() {
        let dir = tempfile::tempdir().unwrap();
        for uid in ["0", "1000", "1001"] {
            std::fs::create_dir_all(dir.path().join(uid).join("brummer")).unwrap();
        }
        let own = dir.path().join("0/brummer/brummer.sock");
        let other = dir.path().join("1000/brummer/brummer.sock");
        let e = env(None, Some(dir.path().join("0").to_str().unwrap()), 0);
        let found = listening_user_sockets(&e, dir.path(), |p| p == own || p == other);
        assert_eq!(found, [own.clone(), other]);
        assert!(listening_user_sockets(&e, dir.path(), |_| false).is_empty());
        // No /run/user at all: only the caller's own socket is asked about.
        let found = listening_user_sockets(&e, &dir.path().join("none"), |p| p == own);
        assert_eq!(found, [own]);
    }

    #[test]
    fn explicit_user_paths_are_recognised_as_user_mode() {
        let e = env(Some("/tmp/rt/brummer/brummer.sock"), Some("/tmp/rt"), 1000);
        assert!(discover(None, &e, |_| false).user_mode);
        let e = env(None, None, 1000);
        let c = discover(Some(Path::new(XDG_SOCK)), &e, |_| false);
        assert!(c.user_mode);
    }
}
