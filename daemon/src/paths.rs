//! Where brummerd keeps things in each mode: config, drop-ins, socket, logs, state.
//!
//! System: /etc/brummer/brummer.toml, /etc/brummer/processes.d/, /run/brummer/brummer.sock,
//! /var/log/brummer/, /var/lib/brummer/. User: the same under $XDG_CONFIG_HOME/brummer/,
//! $XDG_RUNTIME_DIR/brummer/brummer.sock, $XDG_STATE_HOME/brummer/logs/ and
//! $XDG_STATE_HOME/brummer/. The runtime state lives beside the socket
//! (`desired::runtime_path`).

use crate::mode::Mode;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PathError {
    #[error("$HOME is not set: cannot find the user configuration (set HOME or XDG_CONFIG_HOME)")]
    NoHome,
    #[error(
        "$XDG_RUNTIME_DIR is not set and /run/user/{0} does not exist: set XDG_RUNTIME_DIR or pass --socket"
    )]
    NoRuntimeDir(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub config: PathBuf,
    /// `Err` only in user mode without a runtime dir: fatal only when no --socket is given.
    pub socket: Result<PathBuf, u32>,
    pub log_dir: PathBuf,
    /// Persistent state (the enable overrides): kept across reboots.
    pub state_dir: PathBuf,
}

/// The environment as the path rules see it (a function of it, for tests).
pub struct Env<'a> {
    pub get: &'a dyn Fn(&str) -> Option<String>,
    pub uid: u32,
    pub exists: &'a dyn Fn(&str) -> bool,
}

impl Paths {
    pub fn for_mode(mode: Mode, env: &Env<'_>) -> Result<Paths, PathError> {
        match mode {
            Mode::System => Ok(Paths {
                config: "/etc/brummer/brummer.toml".into(),
                socket: Ok(brummer_proto::SYSTEM_SOCKET.into()),
                log_dir: "/var/log/brummer".into(),
                state_dir: "/var/lib/brummer".into(),
            }),
            Mode::User => {
                let var = |k: &str| (env.get)(k).filter(|v| v.starts_with('/'));
                let home = || var("HOME").ok_or(PathError::NoHome);
                let config_home = match var("XDG_CONFIG_HOME") {
                    Some(v) => PathBuf::from(v),
                    None => PathBuf::from(home()?).join(".config"),
                };
                let state_home = match var("XDG_STATE_HOME") {
                    Some(v) => PathBuf::from(v),
                    None => PathBuf::from(home()?).join(".local/state"),
                };
                let runtime = match var("XDG_RUNTIME_DIR") {
                    Some(v) => Ok(PathBuf::from(v)),
                    None => {
                        let d = format!("/run/user/{}", env.uid);
                        if (env.exists)(&d) {
                            Ok(PathBuf::from(d))
                        } else {
                            Err(env.uid)
                        }
                    }
                };
                Ok(Paths {
                    config: config_home.join("brummer/brummer.toml"),
                    socket: runtime.map(|r| r.join("brummer").join(brummer_proto::SOCKET_FILE)),
                    log_dir: state_home.join("brummer/logs"),
                    state_dir: state_home.join("brummer"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn user_paths_follow_xdg() {
        let get = env(&[("HOME", "/home/a"), ("XDG_RUNTIME_DIR", "/run/user/1000")]);
        let p = Paths::for_mode(
            Mode::User,
            &Env {
                get: &get,
                uid: 1000,
                exists: &|_| false,
            },
        )
        .unwrap();
        assert_eq!(
            p.config,
            PathBuf::from("/home/a/.config/brummer/brummer.toml")
        );
        assert_eq!(
            p.socket,
            Ok(PathBuf::from("/run/user/1000/brummer/brummer.sock"))
        );
        assert_eq!(
            p.log_dir,
            PathBuf::from("/home/a/.local/state/brummer/logs")
        );
        assert_eq!(p.state_dir, PathBuf::from("/home/a/.local/state/brummer"));

        let get = env(&[
            ("XDG_CONFIG_HOME", "/c"),
            ("XDG_STATE_HOME", "/s"),
            ("XDG_RUNTIME_DIR", "relative/ignored"),
        ]);
        let p = Paths::for_mode(
            Mode::User,
            &Env {
                get: &get,
                uid: 7,
                exists: &|_| false,
            },
        )
        .unwrap();
        assert_eq!(p.config, PathBuf::from("/c/brummer/brummer.toml"));
        assert_eq!(p.socket, Err(7));
    }

    #[test]
    fn system_paths() {
        let p = Paths::for_mode(
            Mode::System,
            &Env {
                get: &|_| None,
                uid: 0,
                exists: &|_| true,
            },
        )
        .unwrap();
        assert_eq!(p.socket, Ok(PathBuf::from("/run/brummer/brummer.sock")));
        assert_eq!(p.state_dir, PathBuf::from("/var/lib/brummer"));
    }
}
