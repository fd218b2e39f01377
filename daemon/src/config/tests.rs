//! Loader tests: real files in a temp dir, checked through `load` and the errors' Display.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, contents).expect("write");
        path
    }

    fn opts(&self) -> LoadOptions {
        LoadOptions {
            main: self.path("brummer.toml"),
            dropin_dir: None,
            main_required: true,
            as_root: false,
            cgroup: Default::default(),
        }
    }

    fn load(&self) -> Result<Config, ConfigErrors> {
        load(&self.opts())
    }
}

/// Loads `src` as the main file; panics if it fails.
fn ok(src: &str) -> Config {
    let fx = Fixture::new();
    fx.write("brummer.toml", src);
    match fx.load() {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// Loads `src` as the main file; returns the main path and the rendered errors.
fn errors(src: &str, as_root: bool) -> (PathBuf, Vec<String>) {
    let fx = Fixture::new();
    let main = fx.write("brummer.toml", src);
    let opts = LoadOptions {
        as_root,
        ..fx.opts()
    };
    match load(&opts) {
        Ok(c) => panic!("expected errors, loaded {c:#?}"),
        Err(e) => (main, e.iter().map(ToString::to_string).collect()),
    }
}

/// Asserts that some error reads `MAIN:LINE: KEY: ...needle...`.
fn assert_error(errs: &[String], main: &Path, line: usize, key: &str, needle: &str) {
    let prefix = format!("{}:{line}: {key}: ", main.display());
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&prefix) && e.contains(needle)),
        "no error starting with {prefix:?} containing {needle:?} in:\n{}",
        errs.join("\n")
    );
}

fn web(def: &str) -> Config {
    ok(&format!("[process.web]\ncommand = \"true\"\n{def}"))
}

#[test]
fn defaults() {
    let config = ok("[process.web]\ncommand = \"echo hi\"\n");
    assert_eq!(config.daemon, DaemonSettings::default());
    let def = &config.processes["web"];
    let expected = ProcessDef::with_defaults("web", CommandSpec::Shell("echo hi".into()));
    assert_eq!(**def, expected);
    assert!(def.autostart);
    assert_eq!(def.restart, RestartPolicy::OnFailure);
    assert_eq!(def.stop_signal, libc::SIGTERM);
    assert_eq!(def.stop_timeout, Duration::from_secs(10));
    assert_eq!(
        def.backoff,
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(1),
        }
    );
    assert_eq!(
        def.start_limit,
        StartLimit {
            burst: 5,
            interval: Duration::from_secs(10),
        }
    );
    assert_eq!(def.source.line, 1);
    assert!(def.source.file.ends_with("brummer.toml"));
    assert_eq!(config.files.len(), 1);
}

#[test]
fn empty_file_is_an_empty_config() {
    let config = ok("# nothing yet\n");
    assert!(config.processes.is_empty());
}

#[test]
fn every_setting() {
    let config = ok(r#"
[daemon]
log_dir = "/var/log/x"
ring_bytes = 65536
metrics_listen = "127.0.0.1:9183"

[process.web]
command = ["python3", "-m", "http.server", "8080"]
cwd = "/srv/web"
env = { PORT = "8080", MODE = "dev" }
autostart = false
restart = "always"
stop_signal = "INT"
stop_timeout = 3
backoff = { initial = "1s", max = "1m", reset_after = "1m 30s" }
start_limit = { burst = 2, interval = "1h" }
"#);
    assert_eq!(
        config.daemon.log_dir.as_deref(),
        Some(Path::new("/var/log/x"))
    );
    assert_eq!(config.daemon.ring_bytes, Some(65536));
    assert_eq!(
        config.daemon.metrics_listen,
        Some("127.0.0.1:9183".parse().unwrap())
    );
    let def = &config.processes["web"];
    assert_eq!(def.cwd.as_deref(), Some(Path::new("/srv/web")));
    assert_eq!(def.env["PORT"], "8080");
    assert!(!def.autostart);
    assert_eq!(def.restart, RestartPolicy::Always);
    assert_eq!(def.restart.as_str(), "always");
    assert_eq!(def.stop_signal, libc::SIGINT);
    assert_eq!(def.stop_timeout, Duration::from_secs(3));
    assert_eq!(def.backoff.max, Duration::from_secs(60));
    assert_eq!(def.backoff.reset_after, Duration::from_secs(90));
    assert_eq!(def.start_limit.burst, 2);
    assert_eq!(def.start_limit.interval, Duration::from_secs(3600));
    assert_eq!(def.source.line, 7);
}

#[test]
fn string_and_array_commands() {
    let config = ok(concat!(
        "[process.sh]\ncommand = \"echo $HOME && sleep 1\"\n",
        "[process.argv]\ncommand = [\"printf\", \"%s\\n\", \"two words\"]\n",
    ));
    let sh = &config.processes["sh"].command;
    assert_eq!(sh, &CommandSpec::Shell("echo $HOME && sleep 1".into()));
    assert_eq!(sh.argv(), ["/bin/sh", "-c", "echo $HOME && sleep 1"]);
    assert_eq!(sh.display(), "echo $HOME && sleep 1");
    let argv = &config.processes["argv"].command;
    assert_eq!(argv.argv(), ["printf", "%s\n", "two words"]);
    assert_eq!(argv.display(), "printf '%s\n' 'two words'");
}

#[test]
fn signals_and_durations() {
    assert_eq!(
        web("stop_signal = \"SIGKILL\"").processes["web"].stop_signal,
        9
    );
    assert_eq!(web("stop_signal = \"hup\"").processes["web"].stop_signal, 1);
    assert_eq!(web("stop_signal = 10").processes["web"].stop_signal, 10);
    assert_eq!(
        web("stop_timeout = \"250ms\"").processes["web"].stop_timeout,
        Duration::from_millis(250)
    );
}

/// (config, line, key, part of the message, as_root)
const BAD: &[(&str, usize, &str, &str, bool)] = &[
    (
        "[process.web]\ncommand = \"x\"\nrestart = \"sometimes\"\n",
        3,
        "process.web.restart",
        "expected never, on-failure or always, found \"sometimes\"",
        false,
    ),
    (
        "\n[process.\"my app\"]\ncommand = \"x\"\n",
        2,
        "process.\"my app\"",
        "contains ' ': only letters",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nstop_timeout = -5\n",
        3,
        "process.web.stop_timeout",
        "-5 is negative",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nstop_timeout = \"soon\"\n",
        3,
        "process.web.stop_timeout",
        "invalid duration \"soon\"",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\n[process.web.backoff]\ninitial = \"-1s\"\n",
        4,
        "process.web.backoff.initial",
        "invalid duration",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nstop_timeout = 1.5\n",
        3,
        "process.web.stop_timeout",
        "expected a duration, found float",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nstop_signal = \"SIGFOO\"\n",
        3,
        "process.web.stop_signal",
        "unknown signal \"SIGFOO\"",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nstop_signal = 999\n",
        3,
        "process.web.stop_signal",
        "999 is not a signal number",
        false,
    ),
    (
        "# top\nbogus = 1\n",
        2,
        "bogus",
        "unknown key (expected one of: daemon, process)",
        false,
    ),
    (
        "[daemon]\nlogdir = \"/x\"\n",
        2,
        "daemon.logdir",
        "unknown key, did you mean \"log_dir\"?",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nrestrat = \"always\"\n",
        3,
        "process.web.restrat",
        "unknown key, did you mean \"restart\"? (expected one of: command, cwd,",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\n[process.web.backoff]\nmaximum = 3\n",
        4,
        "process.web.backoff.maximum",
        "unknown key (expected one of: initial, max, reset_after)",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nstart_limit = { bust = 3 }\n",
        3,
        "process.web.start_limit.bust",
        "did you mean \"burst\"?",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nautostart = \"yes\"\n",
        3,
        "process.web.autostart",
        "expected true or false, found string",
        false,
    ),
    (
        "[process.web]\ncommand = 5\n",
        2,
        "process.web.command",
        "expected an array of strings or a string, found integer",
        false,
    ),
    (
        "[process.web]\ncommand = [\"a\", 1]\n",
        2,
        "process.web.command[1]",
        "expected a string, found integer",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nenv = { PORT = 8080 }\n",
        3,
        "process.web.env.PORT",
        "quote the value",
        false,
    ),
    ("process = 5\n", 1, "process", "expected a table", false),
    (
        "[process]\nweb = \"x\"\n",
        2,
        "process.web",
        "expected a table ([process.web]), found string",
        false,
    ),
    ("daemon = []\n", 1, "daemon", "expected a table", false),
    (
        "[process.web]\ncommand = []\n",
        2,
        "process.web.command",
        "argv is empty",
        false,
    ),
    (
        "[process.web]\ncommand = [\"\", \"x\"]\n",
        2,
        "process.web.command[0]",
        "program name is empty",
        false,
    ),
    (
        "[process.web]\ncommand = \"  \"\n",
        2,
        "process.web.command",
        "command is empty",
        false,
    ),
    (
        "\n[process.web]\ncwd = \"/\"\n",
        2,
        "process.web",
        "missing command: add command =",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\ncwd = \"srv/web\"\n",
        3,
        "process.web.cwd",
        "not an absolute path: write it starting with /",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nuser = \"www-data\"\n",
        3,
        "process.web.user",
        "needs brummerd to run as root",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\ngroup = \"www-data\"\n",
        3,
        "process.web.group",
        "needs brummerd to run as root",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nuser = \"no-such-user-brummer\"\n",
        3,
        "process.web.user",
        "unknown user \"no-such-user-brummer\": create it",
        true,
    ),
    (
        "[process.web]\ncommand = \"x\"\ngroup = \"no-such-group-brummer\"\n",
        3,
        "process.web.group",
        "unknown group \"no-such-group-brummer\"",
        true,
    ),
    (
        "[daemon]\nring_bytes = 100\n",
        2,
        "daemon.ring_bytes",
        "100 is out of range: use a value from 4096 to 1073741824",
        false,
    ),
    (
        "[daemon]\nmetrics_listen = \"localhost\"\n",
        2,
        "daemon.metrics_listen",
        "\"localhost\" is not an IP address and port: write one such as \"127.0.0.1:9183\"",
        false,
    ),
    (
        "[daemon]\nlog_dir = \"logs\"\n",
        2,
        "daemon.log_dir",
        "not an absolute path",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\n[process.web.start_limit]\nburst = 0\n",
        4,
        "process.web.start_limit.burst",
        "out of range",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\n[process.web.start_limit]\ninterval = \"0s\"\n",
        4,
        "process.web.start_limit.interval",
        "must be longer than 0",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\n[process.web.backoff]\ninitial = \"5s\"\nmax = \"1s\"\n",
        5,
        "process.web.backoff.max",
        "max (1s) is shorter than initial (5s): raise max or lower initial",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nbackoff = 3\n",
        3,
        "process.web.backoff",
        "expected a table ([process.web.backoff]), found integer",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nenv_file = \"missing.env\"\n",
        3,
        "process.web.env_file",
        "cannot read env file",
        false,
    ),
    (
        "[process.web]\ncommand = \"x\"\nrestart = \n",
        3,
        "",
        "invalid TOML",
        false,
    ),
];

#[test]
fn every_bad_value_names_file_line_and_key() {
    for (src, line, key, needle, as_root) in BAD {
        let (main, errs) = errors(src, *as_root);
        if key.is_empty() {
            let prefix = format!("{}:{line}: ", main.display());
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(&prefix) && e.contains(needle)),
                "{src}\n=> {errs:?}"
            );
        } else {
            assert_error(&errs, &main, *line, key, needle);
        }
    }
}

#[test]
fn all_errors_of_a_file_are_reported() {
    let (main, errs) = errors(
        concat!(
            "[daemon]\n",
            "ring_bytes = 1\n",
            "[process.web]\n",
            "command = []\n",
            "restart = \"sometimes\"\n",
            "stop_signal = \"NOPE\"\n",
            "[process.ok]\n",
            "command = \"true\"\n",
            "[process.db]\n",
            "command = \"x\"\n",
            "stop_timeout = \"forever\"\n",
            "oops = 1\n",
        ),
        false,
    );
    assert_eq!(errs.len(), 6, "{}", errs.join("\n"));
    assert_error(&errs, &main, 2, "daemon.ring_bytes", "out of range");
    assert_error(&errs, &main, 4, "process.web.command", "argv is empty");
    assert_error(&errs, &main, 5, "process.web.restart", "expected never");
    assert_error(&errs, &main, 6, "process.web.stop_signal", "unknown signal");
    assert_error(
        &errs,
        &main,
        11,
        "process.db.stop_timeout",
        "invalid duration",
    );
    assert_error(&errs, &main, 12, "process.db.oops", "unknown key");
}

#[test]
fn errors_in_several_files_are_all_reported() {
    let fx = Fixture::new();
    let main = fx.write("brummer.toml", "[process.a]\ncommand = 1\n");
    let dropin = fx.write("processes.d/b.toml", "[process.b]\nrestart = 2\n");
    let errs = fx.load().expect_err("bad");
    let text = errs.to_string();
    assert_eq!(errs.len(), 3, "{text}");
    assert!(text.contains(&format!("{}:2: process.a.command", main.display())));
    assert!(text.contains(&format!(
        "{}:1: process.b: missing command",
        dropin.display()
    )));
    assert!(text.contains(&format!("{}:2: process.b.restart", dropin.display())));
    assert_eq!(text.lines().count(), 3);
}

#[test]
fn duplicate_across_files_names_both() {
    let fx = Fixture::new();
    let main = fx.write("brummer.toml", "\n[process.web]\ncommand = \"a\"\n");
    let dropin = fx.write(
        "processes.d/10-web.toml",
        "[process.web]\ncommand = \"b\"\n",
    );
    let errs = fx.load().expect_err("duplicate").to_string();
    assert!(
        errs.contains(&format!(
            "{}:1: process.web: defined twice: first at {}:2",
            dropin.display(),
            main.display()
        )),
        "{errs}"
    );
}

#[test]
fn duplicate_in_one_file_names_both_lines() {
    let (main, errs) = errors(
        "[process.web]\ncommand = \"a\"\n\n[process.web]\ncommand = \"b\"\n",
        false,
    );
    assert_error(
        &errs,
        &main,
        4,
        "process.web",
        "defined twice in this file: first at line 1",
    );
    let (main, errs) = errors(
        "[process.web]\ncommand = \"a\"\nrestart = \"never\"\nrestart = \"always\"\n",
        false,
    );
    assert_error(
        &errs,
        &main,
        4,
        "process.web.restart",
        "first set at line 3",
    );
}

#[test]
fn dropins_in_lexical_order_and_only_toml() {
    let fx = Fixture::new();
    let main = fx.write("brummer.toml", "[process.main]\ncommand = \"a\"\n");
    let b = fx.write("processes.d/b.toml", "[process.b]\ncommand = \"b\"\n");
    let a = fx.write("processes.d/a.toml", "[process.a]\ncommand = \"a\"\n");
    fx.write("processes.d/notes.txt", "not toml at all [");
    fx.write("processes.d/c.toml.disabled", "nor this [");
    std::fs::create_dir_all(fx.path("processes.d/dir.toml")).expect("mkdir");
    let config = fx.load().expect("loads");
    assert_eq!(config.files, vec![main, a.clone(), b]);
    assert_eq!(
        config.processes.keys().collect::<Vec<_>>(),
        ["a", "b", "main"]
    );
    assert_eq!(config.processes["a"].source.file, a);
}

#[test]
fn explicit_dropin_dir() {
    let fx = Fixture::new();
    fx.write("brummer.toml", "");
    fx.write("elsewhere/x.toml", "[process.x]\ncommand = \"a\"\n");
    let opts = LoadOptions {
        dropin_dir: Some(fx.path("elsewhere")),
        ..fx.opts()
    };
    assert!(load(&opts).expect("loads").processes.contains_key("x"));
}

#[test]
fn daemon_table_in_a_dropin_is_rejected() {
    let fx = Fixture::new();
    let main = fx.write("brummer.toml", "");
    let dropin = fx.write(
        "processes.d/x.toml",
        "processes = 1\n\n[daemon]\nring_bytes = 8192\n",
    );
    let errs = fx.load().expect_err("daemon in drop-in").to_string();
    assert!(
        errs.contains(&format!(
            "{}:3: daemon: [daemon] is only allowed in the main config file: move it to {}",
            dropin.display(),
            main.display()
        )),
        "{errs}"
    );
    assert!(
        errs.contains(&format!(
            "{}:1: processes: unknown key, did you mean \"process\"?",
            dropin.display()
        )),
        "{errs}"
    );
}

#[test]
fn env_file_is_read_and_env_wins() {
    let fx = Fixture::new();
    fx.write(
        "web.env",
        "# web settings\nexport PORT=80\nNAME=\"my web\"\nRAW='$HOME'\n\nKEEP=yes\n",
    );
    fx.write(
        "brummer.toml",
        "[process.web]\ncommand = \"x\"\nenv_file = \"web.env\"\nenv = { PORT = \"8080\" }\n",
    );
    let config = fx.load().expect("loads");
    let def = &config.processes["web"];
    assert_eq!(def.env_file.as_deref(), Some(fx.path("web.env").as_path()));
    assert_eq!(def.env["PORT"], "8080");
    assert_eq!(def.env["NAME"], "my web");
    assert_eq!(def.env["RAW"], "$HOME");
    assert_eq!(def.env["KEEP"], "yes");
    assert_eq!(def.env.len(), 4);
}

#[test]
fn env_file_absolute_path() {
    let fx = Fixture::new();
    let env = fx.write("abs/web.env", "A=1\n");
    fx.write(
        "brummer.toml",
        &format!(
            "[process.web]\ncommand = \"x\"\nenv_file = {:?}\n",
            env.display().to_string()
        ),
    );
    assert_eq!(fx.load().expect("loads").processes["web"].env["A"], "1");
}

#[test]
fn env_file_bad_lines_name_the_env_file() {
    let fx = Fixture::new();
    let env = fx.write("web.env", "A=1\n\nthis is not an assignment\nB=\"open\n");
    fx.write(
        "brummer.toml",
        "[process.web]\ncommand = \"x\"\nenv_file = \"web.env\"\n",
    );
    let errs = fx.load().expect_err("bad env file");
    let text = errs.to_string();
    assert_eq!(errs.len(), 2, "{text}");
    assert!(
        text.contains(&format!(
            "{}:3: process.web.env_file: expected KEY=VALUE",
            env.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}:4: process.web.env_file: missing closing",
            env.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("(env_file set at ") && text.contains("brummer.toml:3)"),
        "names where it is used: {text}"
    );
}

#[test]
fn missing_main_file() {
    let fx = Fixture::new();
    let errs = fx.load().expect_err("required");
    assert_eq!(errs.len(), 1);
    let text = errs.to_string();
    assert!(
        text.starts_with(&format!(
            "{}: cannot read config file: ",
            fx.path("brummer.toml").display()
        )),
        "{text}"
    );
    assert!(text.contains("create it"), "{text}");

    let optional = LoadOptions {
        main_required: false,
        ..fx.opts()
    };
    let config = load(&optional).expect("optional main");
    // No program, no file; only the record that the main file was looked for.
    assert_eq!(
        Config {
            inputs: Default::default(),
            ..config
        },
        Config::default()
    );

    // Drop-ins still count without a main file.
    fx.write("processes.d/a.toml", "[process.a]\ncommand = \"x\"\n");
    let config = load(&optional).expect("drop-in only");
    assert_eq!(config.files, vec![fx.path("processes.d/a.toml")]);
    assert!(config.processes.contains_key("a"));
}

#[test]
fn user_and_group_resolve_as_root() {
    let config = {
        let fx = Fixture::new();
        fx.write(
            "brummer.toml",
            "[process.web]\ncommand = \"x\"\nuser = \"root\"\ngroup = \"root\"\n",
        );
        load(&LoadOptions {
            as_root: true,
            cgroup: Default::default(),
            ..fx.opts()
        })
        .expect("root exists")
    };
    let def = &config.processes["web"];
    assert_eq!(
        def.user,
        Some(UserSpec {
            name: "root".into(),
            uid: 0,
            gid: 0
        })
    );
    assert_eq!(
        def.group,
        Some(GroupSpec {
            name: "root".into(),
            gid: 0
        })
    );
}

#[test]
fn equality_ignores_source() {
    let fx = Fixture::new();
    fx.write("brummer.toml", "[process.web]\ncommand = [\"a\"]\n");
    let before = fx.load().expect("loads");
    fx.write("brummer.toml", "# moved\n\n");
    fx.write(
        "processes.d/web.toml",
        "\n\n[process.web]\ncommand = [\"a\"]\n",
    );
    let after = fx.load().expect("loads");
    let (old, new) = (&before.processes["web"], &after.processes["web"]);
    assert_ne!(old.source, new.source);
    assert_eq!(old, new);

    let mut changed = (**new).clone();
    changed.stop_timeout = Duration::from_secs(1);
    assert_ne!(**old, changed);
}

#[test]
fn example_config_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/brummer.toml");
    let opts = LoadOptions {
        main: example,
        dropin_dir: Some(PathBuf::from("/nonexistent/brummer-example/processes.d")),
        main_required: true,
        as_root: false,
        cgroup: Default::default(),
    };
    let config = match load(&opts) {
        Ok(c) => c,
        Err(e) => panic!("examples/brummer.toml:\n{e}"),
    };
    assert_eq!(
        config.processes.keys().collect::<Vec<_>>(),
        ["ticker", "web", "worker"]
    );
    assert!(config.processes.values().any(|p| !p.autostart));
    assert_eq!(config.processes["worker"].restart, RestartPolicy::Always);
}

/// Prints a few real errors; run with `--nocapture` to see them.
#[test]
fn show_errors() {
    let fx = Fixture::new();
    fx.write(
        "brummer.toml",
        "[process.web]\ncommand = \"x\"\nrestart = \"sometimes\"\nrestrat = 1\nuser = \"www-data\"\nstop_timeout = \"-3s\"\nenv_file = \"web.env\"\n\n[process.db]\ncommand = []\n",
    );
    fx.write("web.env", "# ok\nPORT=1\nexport BAD LINE\n");
    fx.write(
        "processes.d/web.toml",
        "[daemon]\nring_bytes = 4096\n\n[process.web]\ncommand = \"y\"\n",
    );
    fx.write(
        "processes.d/z.toml",
        "[process.z]\ncommand = \"a\"\nrestart = \n",
    );
    let errs = fx.load().expect_err("bad");
    println!("{errs}");
    assert_eq!(errs.len(), 9, "{errs}");
}

#[test]
fn log_settings() {
    let config = ok(r#"
[process.web]
command = "x"

[process.web.logs]
max_bytes = "2MiB"
max_files = 3
scan = false
error_patterns = ["oops", '^E\d+']

[process.db]
command = "y"
logs = { max_bytes = 100000 }
"#);
    let web = &config.processes["web"].logs;
    assert_eq!(web.max_bytes, 2 << 20);
    assert_eq!(web.max_files, 3);
    assert!(!web.scan);
    assert_eq!(web.error_patterns, ["oops", r"^E\d+"]);
    let db = &config.processes["db"].logs;
    assert_eq!(db.max_bytes, 100_000);
    assert_eq!(db.max_files, DEFAULT_LOG_MAX_FILES);
    assert!(db.scan && !db.error_patterns.is_empty());

    let (main, errs) = errors(
        "[process.web]\ncommand = \"x\"\n[process.web.logs]\nmax_bytes = \"10 parsecs\"\nmax_files = 0\nerror_patterns = [\"a(\"]\nrotate = 1\n",
        false,
    );
    assert_error(&errs, &main, 4, "process.web.logs.max_bytes", "not a size");
    assert_error(
        &errs,
        &main,
        5,
        "process.web.logs.max_files",
        "out of range",
    );
    assert_error(
        &errs,
        &main,
        6,
        "process.web.logs.error_patterns[0]",
        "not a valid regular expression",
    );
    assert_error(&errs, &main, 7, "process.web.logs.rotate", "unknown key");
    assert_eq!(super::values::parse_size("1GiB"), Some(1 << 30));
    assert_eq!(super::values::parse_size("5MB"), Some(5_000_000));
    assert_eq!(super::values::parse_size("512 KiB"), Some(512 << 10));
    assert_eq!(super::values::parse_size("x"), None);
}

#[test]
fn readiness_and_health() {
    let config = ok(r#"
[process.db]
command = "x"
ready = { log = "ready to accept connections", timeout = "2s" }
ready_timeout = "30s"

[process.api]
command = "x"
ready = "notify"
watchdog = "10s"

[process.web]
command = "x"
ready = { http = "http://127.0.0.1:8080/health", interval = "200ms", start_period = "1s" }
health = { tcp = "127.0.0.1:8080", interval = "5s", timeout = "1s", failures = 2 }

[process.job]
command = "x"
ready = { exec = ["pg_isready", "-q"] }
health = { exec = ["true"] }
"#);
    let db = &config.processes["db"];
    let Ready::Probe(p) = &db.ready else {
        panic!("{:?}", db.ready)
    };
    assert!(matches!(&p.check, Check::Log(re) if re.0.as_str() == "ready to accept connections"));
    assert_eq!(p.interval, Duration::from_millis(100));
    assert_eq!(p.timeout, Duration::from_secs(2));
    assert_eq!(db.ready_timeout, Duration::from_secs(30));
    assert_eq!(db.health, None);
    let api = &config.processes["api"];
    assert_eq!(api.ready, Ready::Notify);
    assert_eq!(api.watchdog, Some(Duration::from_secs(10)));
    assert_eq!(api.ready_timeout, DEFAULT_READY_TIMEOUT);
    let web = &config.processes["web"];
    let Ready::Probe(p) = &web.ready else {
        panic!("{:?}", web.ready)
    };
    let Check::Http(u) = &p.check else {
        panic!("{p:?}")
    };
    assert_eq!(
        (u.authority.as_str(), u.target.as_str()),
        ("127.0.0.1:8080", "/health")
    );
    assert_eq!(p.interval, Duration::from_millis(200));
    assert_eq!(p.start_period, Duration::from_secs(1));
    let h = web.health.as_ref().expect("health");
    assert_eq!(h.failures, 2);
    assert_eq!(h.probe.check, Check::Tcp("127.0.0.1:8080".into()));
    assert_eq!(h.probe.interval, Duration::from_secs(5));
    assert_eq!(h.probe.timeout, Duration::from_secs(1));
    let job = &config.processes["job"];
    assert!(
        matches!(&job.ready, Ready::Probe(p) if p.check == Check::Exec(vec!["pg_isready".into(), "-q".into()]))
    );
    let h = job.health.as_ref().expect("health");
    assert_eq!(h.failures, DEFAULT_HEALTH_FAILURES);
    assert_eq!(h.probe.interval, Duration::from_secs(10));
    // The default stays today's behaviour.
    assert_eq!(web_default().ready, Ready::Started);
}

fn web_default() -> ProcessDef {
    (*web("").processes["web"]).clone()
}

#[test]
fn readiness_errors_name_the_line_and_key() {
    let (main, errs) = errors(
        r#"[process.a]
command = "x"
ready = "soon"
watchdog = "5s"
[process.b]
command = "x"
ready = { log = "a(" }
ready_timeout = "0s"
[process.c]
command = "x"
ready = { http = "https://example.org/" }
health = { http = "http://h:1/", log = "x", failures = 0 }
[process.d]
command = "x"
ready = { tcp = "localhost", exec = ["x"] }
[process.e]
command = "x"
ready = { tcp = "localhost" }
health = { interval = "1s" }
[process.f]
command = "x"
ready = { exec = [] , interval = 0, colour = 1 }
[process.g]
command = "x"
ready = { tcp = "h:1", start_period = "2m" }
"#,
        false,
    );
    assert_error(
        &errs,
        &main,
        3,
        "process.a.ready",
        "expected \"started\", \"notify\"",
    );
    assert_error(
        &errs,
        &main,
        4,
        "process.a.watchdog",
        "needs ready = \"notify\"",
    );
    assert_error(
        &errs,
        &main,
        7,
        "process.b.ready.log",
        "not a valid regular expression",
    );
    assert_error(&errs, &main, 8, "process.b.ready_timeout", "longer than 0");
    assert_error(&errs, &main, 11, "process.c.ready.http", "only http://");
    assert_error(&errs, &main, 12, "process.c.health.log", "unknown key");
    assert_error(
        &errs,
        &main,
        12,
        "process.c.health.failures",
        "out of range",
    );
    assert_error(&errs, &main, 15, "process.d.ready", "one probe per table");
    assert_error(&errs, &main, 18, "process.e.ready.tcp", "has no port");
    assert_error(&errs, &main, 19, "process.e.health", "no probe");
    assert_error(&errs, &main, 22, "process.f.ready.exec", "empty command");
    assert_error(
        &errs,
        &main,
        22,
        "process.f.ready.interval",
        "longer than 0",
    );
    assert_error(&errs, &main, 22, "process.f.ready.colour", "unknown key");
    assert_error(
        &errs,
        &main,
        25,
        "process.g.ready.start_period",
        "2m is not shorter than ready_timeout (1m 30s)",
    );
}

#[test]
fn example_stack_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stack.toml");
    let opts = LoadOptions {
        main: example,
        dropin_dir: Some(PathBuf::from("/nonexistent/brummer-example/processes.d")),
        main_required: true,
        as_root: false,
        cgroup: Default::default(),
    };
    let config = match load(&opts) {
        Ok(c) => c,
        Err(e) => panic!("examples/stack.toml:\n{e}"),
    };
    let p = &config.processes;
    assert_eq!(p["db"].ready.kind(), "log");
    assert_eq!(p["worker"].ready, Ready::Notify);
    assert_eq!(p["worker"].watchdog, Some(Duration::from_secs(10)));
    assert_eq!(p["web"].ready.kind(), "http");
    assert_eq!(p["web"].health.as_ref().map(|h| h.failures), Some(3));
    assert_eq!(p["worker"].deps.requires, ["db"]);
    assert_eq!(p["web"].deps.requires, ["db", "worker"]);
}

#[test]
fn dependencies_are_read() {
    let config = ok(r#"
[process.db]
command = "db"

[process.cache]
command = "cache"

[process.web]
command = "web"
requires = ["db"]
wants = ["cache"]
after = []
"#);
    let web = &config.processes["web"];
    assert_eq!(web.deps.requires, ["db"]);
    assert_eq!(web.deps.wants, ["cache"]);
    assert!(web.deps.after.is_empty());
    assert_eq!(web.deps_at.requires, [10]);
    assert!(config.processes["db"].deps.is_empty());
}

#[test]
fn dependency_errors_name_the_entry() {
    let (main, errs) = errors(
        r#"[process.web]
command = "web"
requires = ["dbb", "web"]
wants = "cache"
after = ["db", "db"]

[process.db]
command = "db"
"#,
        false,
    );
    assert_error(
        &errs,
        &main,
        3,
        "process.web.requires[1]",
        "web cannot depend on itself",
    );
    assert_error(
        &errs,
        &main,
        4,
        "process.web.wants",
        "expected an array of program names",
    );
    assert_error(
        &errs,
        &main,
        5,
        "process.web.after[1]",
        "\"db\" is listed twice",
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    // Names are checked against every file once each definition is valid.
    let (main, errs) = errors(
        "[process.web]\ncommand = \"web\"\nwants = [\"cache\", \"dbb\"]\n\n[process.db]\ncommand = \"db\"\n",
        false,
    );
    assert_error(
        &errs,
        &main,
        3,
        "process.web.wants[0]",
        "unknown program \"cache\": define it",
    );
    assert_error(
        &errs,
        &main,
        3,
        "process.web.wants[1]",
        "unknown program \"dbb\": did you mean \"db\"?",
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
}

#[test]
fn dependency_on_a_broken_program_is_not_unknown() {
    // `db` is defined but invalid: its own error is enough.
    let (_, errs) = errors(
        "[process.db]\nrestart = 1\n\n[process.web]\ncommand = \"web\"\nrequires = [\"db\"]\n",
        false,
    );
    assert!(
        errs.iter().all(|e| !e.contains("unknown program")),
        "{errs:#?}"
    );
}

#[test]
fn a_cycle_across_files_is_spelled_out() {
    let fx = Fixture::new();
    let main = fx.write(
        "brummer.toml",
        "[process.web]\ncommand = \"web\"\nrequires = [\"worker\"]\n",
    );
    fx.write(
        "processes.d/stack.toml",
        "[process.worker]\ncommand = \"w\"\nwants = [\"db\"]\n\n[process.db]\ncommand = \"db\"\nafter = [\"web\"]\n",
    );
    let errs: Vec<String> = match fx.load() {
        Ok(_) => panic!("a cycle loaded"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(errs.len(), 1, "{errs:#?}");
    // The search starts at the first name (db), whose `after` closes the cycle.
    let dropin = fx.path("processes.d/stack.toml");
    assert_eq!(
        errs[0],
        format!(
            "{}:7: process.db.after[0]: cycle: db -> web -> worker -> db: programs cannot wait for each other; remove one of these dependencies",
            dropin.display()
        )
    );
    let _ = main;
}

#[test]
fn a_dependency_change_alone_is_told_apart() {
    let a = web("");
    let b =
        ok("[process.web]\ncommand = \"true\"\nafter = [\"db\"]\n[process.db]\ncommand = \"x\"\n");
    let (a, b) = (&a.processes["web"], &b.processes["web"]);
    assert_ne!(**a, **b);
    assert!(a.same_but_deps(b));
    let c = web("autostart = false\n");
    assert!(!c.processes["web"].same_but_deps(b));
}

fn with_cgroup(src: &str, controllers: &[&str]) -> Result<Config, ConfigErrors> {
    let fx = Fixture::new();
    fx.write("brummer.toml", src);
    load(&LoadOptions {
        cgroup: CgroupSupport::Cgroup {
            controllers: controllers.iter().map(|c| (*c).to_owned()).collect(),
        },
        ..fx.opts()
    })
}

#[test]
fn limits_are_read_where_the_cgroup_offers_their_controllers() {
    let src = "[process.web]\ncommand = \"x\"\nmemory_max = \"20M\"\nmemory_high = \"16MiB\"\ncpu_max = \"50%\"\ncpu_weight = 200\npids_max = 64\nio_weight = 50\nnofile = 4096\ncore = 0\nnproc = \"unlimited\"\n";
    let c = match with_cgroup(src, &["cpu", "memory", "pids", "io"]) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    };
    let def = &c.processes["web"];
    assert_eq!(
        def.cgroup_limits,
        CgroupLimits {
            memory_max: Some(20 << 20),
            memory_high: Some(16 << 20),
            cpu_weight: Some(200),
            cpu_max_percent: Some(50),
            pids_max: Some(64),
            io_weight: Some(50),
        }
    );
    assert_eq!(
        def.rlimits,
        Rlimits {
            nofile: Some(4096),
            core: Some(0),
            nproc: Some(u64::MAX),
        }
    );
}

#[test]
fn a_cgroup_limit_without_containment_or_controller_is_an_error_with_the_fix() {
    // No cgroup containment at all (the default here): the reason and the fix.
    let (main, errs) = errors(
        "[process.web]\ncommand = \"x\"\nmemory_max = \"20M\"\n",
        false,
    );
    assert_error(
        &errs,
        &main,
        3,
        "process.web.memory_max",
        "brummerd has no cgroup containment here: no cgroup v2 subtree was looked for; remove the key",
    );
    // rlimits need no cgroup.
    ok("[process.web]\ncommand = \"x\"\nnofile = 1024\n");
    // A cgroup without the controller.
    let e = with_cgroup(
        "[process.web]\ncommand = \"x\"\n\ncpu_max = \"20%\"\n",
        &["memory", "pids"],
    )
    .expect_err("cpu is missing");
    let text = e.to_string();
    assert!(
        text.contains(":4: process.web.cpu_max: cpu_max needs the cgroup controller \"cpu\"")
            && text.contains("(it has: memory pids)"),
        "{text}"
    );
    let e = with_cgroup(
        "[process.web]\ncommand = \"x\"\ncpu_max = \"half\"\n",
        &["cpu"],
    )
    .expect_err("not a percentage");
    assert!(e.to_string().contains("is not a percentage"), "{e}");
}

#[test]
fn unchanged_files_are_told_apart_from_any_edit() {
    let fx = Fixture::new();
    fx.write(
        "brummer.toml",
        "[process.web]\ncommand = \"x\"\nenv_file = \"web.env\"\n",
    );
    fx.write("web.env", "PORT=1\n");
    fx.write("processes.d/a.toml", "[process.a]\ncommand = \"a\"\n");
    let loaded = || fx.load().expect("loads").inputs;
    let inputs = loaded();
    assert!(unchanged(&fx.opts(), &inputs), "nothing was touched");

    // Each edit, of the same length, is seen; undone, the files are the loaded ones again.
    for (rel, edited, original) in [
        (
            "brummer.toml",
            "[process.wob]\ncommand = \"x\"\nenv_file = \"web.env\"\n",
            None,
        ),
        ("web.env", "PORT=2\n", Some("PORT=1\n")),
        (
            "processes.d/a.toml",
            "[process.b]\ncommand = \"a\"\n",
            Some("[process.a]\ncommand = \"a\"\n"),
        ),
    ] {
        let before = std::fs::read_to_string(fx.path(rel)).expect("read");
        fx.write(rel, edited);
        assert!(!unchanged(&fx.opts(), &inputs), "{rel} edited");
        fx.write(rel, original.unwrap_or(&before));
        assert!(unchanged(&fx.opts(), &inputs), "{rel} restored");
    }

    // A new drop-in, and one removed.
    fx.write("processes.d/b.toml", "[process.b]\ncommand = \"b\"\n");
    assert!(!unchanged(&fx.opts(), &inputs), "drop-in added");
    std::fs::remove_file(fx.path("processes.d/b.toml")).expect("rm");
    std::fs::remove_file(fx.path("processes.d/a.toml")).expect("rm");
    assert!(!unchanged(&fx.opts(), &inputs), "drop-in removed");
    // A file the load did not read (not *.toml) changes nothing.
    let inputs = loaded();
    fx.write("processes.d/notes.txt", "x");
    assert!(unchanged(&fx.opts(), &inputs), "not a drop-in");
    std::fs::remove_file(fx.path("web.env")).expect("rm");
    assert!(!unchanged(&fx.opts(), &inputs), "env file gone");
}

#[test]
fn an_absent_main_file_is_unchanged_until_created() {
    let fx = Fixture::new();
    let opts = LoadOptions {
        main_required: false,
        ..fx.opts()
    };
    let inputs = load(&opts).expect("no file is no programs").inputs;
    assert!(unchanged(&opts, &inputs));
    fx.write("brummer.toml", "");
    assert!(!unchanged(&opts, &inputs));
}

#[test]
fn a_configuration_with_users_is_never_called_unchanged() {
    let fx = Fixture::new();
    fx.write(
        "brummer.toml",
        "[process.web]\ncommand = \"x\"\nuser = \"root\"\n",
    );
    let opts = LoadOptions {
        as_root: true,
        ..fx.opts()
    };
    let inputs = load(&opts).expect("loads").inputs;
    // The user database may have changed without a file of ours changing.
    assert!(!unchanged(&opts, &inputs));
}
