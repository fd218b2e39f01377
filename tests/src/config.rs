//! The config builder: brummerd's TOML written as Rust calls, so a test reads as the setup it
//! means (`Proc::sleep().autostart(false)`) and every string is quoted by a TOML serialiser,
//! not by hand. Only tests that feed brummerd broken TOML write text themselves.

use std::fmt;
use std::path::Path;
use toml::{Table, Value};

/// A whole brummer.toml: the `[daemon]` table and `[process.NAME]` tables.
#[derive(Clone, Debug, Default)]
pub struct Config {
    daemon: Table,
    processes: Table,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// Adds (or replaces) `[process.NAME]`.
    pub fn process(mut self, name: &str, p: Proc) -> Config {
        self.processes
            .insert(name.to_owned(), Value::Table(p.table));
        self
    }

    /// Adds every `(name, Proc)` of `procs`.
    pub fn processes(self, procs: impl IntoIterator<Item = (String, Proc)>) -> Config {
        procs
            .into_iter()
            .fold(self, |c, (name, p)| c.process(&name, p))
    }

    /// Drops `[process.NAME]`, for a reload that removes it.
    pub fn without(mut self, name: &str) -> Config {
        self.processes.remove(name);
        self
    }

    /// `[daemon] ring_bytes`: the per-process ring's size.
    pub fn ring_bytes(self, bytes: i64) -> Config {
        self.daemon("ring_bytes", bytes)
    }

    /// `[daemon] log_dir`.
    pub fn log_dir(self, dir: &Path) -> Config {
        self.daemon("log_dir", dir.display().to_string())
    }

    /// Any key of `[daemon]`.
    pub fn daemon(mut self, key: &str, value: impl Into<Value>) -> Config {
        self.daemon.insert(key.to_owned(), value.into());
        self
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut root = Table::new();
        if !self.daemon.is_empty() {
            root.insert("daemon".into(), Value::Table(self.daemon.clone()));
        }
        if !self.processes.is_empty() {
            root.insert("process".into(), Value::Table(self.processes.clone()));
        }
        toml::to_string(&root).expect("a table of strings, integers and booleans serialises")
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// One `[process.NAME]` table.
#[derive(Clone, Debug)]
pub struct Proc {
    table: Table,
}

impl Proc {
    /// `command = argv`.
    pub fn new<I, S>(argv: I) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv: Vec<Value> = argv.into_iter().map(|a| Value::String(a.into())).collect();
        let mut table = Table::new();
        table.insert("command".into(), Value::Array(argv));
        Proc { table }
    }

    /// `sh -c SCRIPT`.
    pub fn sh(script: &str) -> Proc {
        Proc::new(["sh", "-c", script])
    }

    /// `python3 -c SCRIPT`; `arg` adds its argv[1..].
    pub fn python(script: &str) -> Proc {
        Proc::new(["/usr/bin/python3", "-c", script])
    }

    /// A program that runs until it is stopped (`sleep 1000`).
    pub fn sleep() -> Proc {
        Proc::new(["sleep", "1000"])
    }

    /// Appends one argument to `command`.
    pub fn arg(mut self, arg: impl Into<String>) -> Proc {
        if let Some(Value::Array(argv)) = self.table.get_mut("command") {
            argv.push(Value::String(arg.into()));
        }
        self
    }

    pub fn autostart(self, on: bool) -> Proc {
        self.set("autostart", on)
    }

    /// `never`, `on-failure` or `always`.
    pub fn restart(self, policy: &str) -> Proc {
        self.set("restart", policy)
    }

    /// A duration as brummerd reads it (`"300ms"`, `"2s"`).
    pub fn stop_timeout(self, d: &str) -> Proc {
        self.set("stop_timeout", d)
    }

    pub fn stop_signal(self, sig: &str) -> Proc {
        self.set("stop_signal", sig)
    }

    pub fn cwd(self, dir: &Path) -> Proc {
        self.set("cwd", dir.display().to_string())
    }

    pub fn user(self, user: &str) -> Proc {
        self.set("user", user)
    }

    /// One variable of `env`.
    pub fn env(mut self, key: &str, value: &str) -> Proc {
        self.sub("env").insert(key.into(), value.into());
        self
    }

    /// `[backoff] initial, max`.
    pub fn backoff(mut self, initial: &str, max: &str) -> Proc {
        let b = self.sub("backoff");
        b.insert("initial".into(), initial.into());
        b.insert("max".into(), max.into());
        self
    }

    /// `[backoff] reset_after`: the uptime after which a run counts as stable.
    pub fn reset_after(mut self, d: &str) -> Proc {
        self.sub("backoff").insert("reset_after".into(), d.into());
        self
    }

    /// `[start_limit] burst, interval`.
    pub fn start_limit(mut self, burst: i64, interval: &str) -> Proc {
        let s = self.sub("start_limit");
        s.insert("burst".into(), burst.into());
        s.insert("interval".into(), interval.into());
        self
    }

    /// One key of `[logs]` (`max_bytes`, `max_files`, `scan`, `error_patterns`).
    pub fn logs(mut self, key: &str, value: impl Into<Value>) -> Proc {
        self.sub("logs").insert(key.into(), value.into());
        self
    }

    /// Any top-level key of the process table.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Proc {
        self.table.insert(key.into(), value.into());
        self
    }

    fn sub(&mut self, key: &str) -> &mut Table {
        let v = self
            .table
            .entry(key)
            .or_insert_with(|| Value::Table(Table::new()));
        match v {
            Value::Table(t) => t,
            other => panic!("{key} is {other}, not a table"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nested_tables_and_quotes_what_needs_it() {
        let c = Config::new().ring_bytes(65536).process(
            "my-app",
            Proc::sh(r#"echo "hi" \ there"#)
                .restart("always")
                .backoff("20ms", "100ms")
                .env("A", "b c")
                .logs("scan", false),
        );
        let v: Table = toml::from_str(&c.render()).expect("valid TOML");
        assert_eq!(v["daemon"]["ring_bytes"].as_integer(), Some(65536));
        let p = &v["process"]["my-app"];
        assert_eq!(
            p["command"][2].as_str(),
            Some(r#"echo "hi" \ there"#),
            "{c}"
        );
        assert_eq!(p["backoff"]["max"].as_str(), Some("100ms"));
        assert_eq!(p["env"]["A"].as_str(), Some("b c"));
        assert_eq!(p["logs"]["scan"].as_bool(), Some(false));
        assert_eq!(p["restart"].as_str(), Some("always"));
    }
}
