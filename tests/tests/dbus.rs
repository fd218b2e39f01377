//! The D-Bus control plane against a private `dbus-daemon`: through a zbus proxy (list,
//! start, stop, properties, signals, ObjectManager across a reload), through the stock tools
//! a desktop user has (busctl, gdbus, dbus-monitor), the shipped bus policy on a system-type
//! bus, the daemon's own uid check, the shipped interface XML, and a subscriber that never
//! reads not holding a crash loop up. The tests that call as another uid need root: they are
//! ignored unless asked for (`.ci/run` runs them as root).

use brummer_tests::{
    Config, Daemon, DbusDaemon, LineChild, Proc, T, as_nobody, brummerd_in, require_root, run,
    run_ok, wait_for,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zbus::{Connection, OwnedObjectPath, OwnedVariant};

const NAME: &str = "io.github.brummer.Brummer1";
const MANAGER: &str = "/io/github/brummer/Brummer1";
const MANAGER_IFACE: &str = "io.github.brummer.Brummer1.Manager";
const PROCESS_IFACE: &str = "io.github.brummer.Brummer1.Process";

#[zbus::proxy(
    interface = "io.github.brummer.Brummer1.Manager",
    default_service = "io.github.brummer.Brummer1",
    default_path = "/io/github/brummer/Brummer1"
)]
trait Manager {
    fn list_processes(&self) -> zbus::Result<Vec<(String, String, OwnedObjectPath, u32, u32)>>;
    fn get_process(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn start(&self, name: &str) -> zbus::Result<()>;
    fn stop(&self, name: &str) -> zbus::Result<()>;
    fn restart(&self, name: &str) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<(Vec<String>, Vec<String>, Vec<String>)>;
    fn reexec(&self) -> zbus::Result<String>;
    #[allow(clippy::type_complexity)]
    fn get_state(&self) -> zbus::Result<(u64, HashMap<String, HashMap<String, OwnedVariant>>)>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn event_sequence(&self) -> zbus::Result<u64>;
    #[zbus(signal)]
    fn state_changed(&self, name: String, old: String, new: String, seq: u64) -> zbus::Result<()>;
    #[zbus(signal)]
    fn process_added(&self, name: String, path: OwnedObjectPath) -> zbus::Result<()>;
    #[zbus(signal)]
    fn process_removed(&self, name: String, path: OwnedObjectPath) -> zbus::Result<()>;
    #[zbus(signal)]
    fn url_detected(&self, name: String, url: String) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "io.github.brummer.Brummer1.Process",
    default_service = "io.github.brummer.Brummer1"
)]
trait Process {
    fn start(&self) -> zbus::Result<()>;
    fn stop(&self) -> zbus::Result<()>;
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn pid(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn restarts(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn exit_code(&self) -> zbus::Result<i32>;
    #[zbus(property)]
    fn exit_signal(&self) -> zbus::Result<i32>;
    #[zbus(property)]
    fn started_at(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn urls(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn status_text(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
}

/// A daemon on `bus`, returned once it owns the name: brummerd accepts on its socket only
/// after the D-Bus side is up, so one answered `hello` proves it.
fn start(bus: &DbusDaemon, config: &Config) -> Daemon {
    let d = Daemon::builder(config).args(bus.daemon_args()).start();
    let reply = d.rpc().call("hello", serde_json::json!({}));
    assert!(reply.get("result").is_some(), "hello failed: {reply}");
    d
}

async fn connect(bus: &DbusDaemon) -> Connection {
    zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .expect("connect to the private bus")
}

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(T, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {T:?} waiting for {what}"))
}

/// The object path of program `name` (a `-` escaped as `_2d`, as brummerd exports it).
fn process_path(name: &str) -> String {
    format!(
        "/io/github/brummer/Brummer1/process/{}",
        name.replace('-', "_2d")
    )
}

fn busctl(bus: &DbusDaemon) -> Command {
    let mut c = Command::new("busctl");
    c.arg(format!("--address={}", bus.address));
    c
}

fn gdbus(bus: &DbusDaemon, sub: &str) -> Command {
    let mut c = Command::new("gdbus");
    c.args([sub, "--address", &bus.address]);
    c
}

/// `argv` run as uid/gid 65534 (needs root).
fn nobody(argv: &[&str]) -> Command {
    let mut c = as_nobody(argv[0]);
    c.args(&argv[1..]);
    c
}

/// `web` waits to be started, `my-app` runs.
fn two() -> Config {
    Config::new()
        .process("web", Proc::sleep().autostart(false))
        .process("my-app", Proc::sleep())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_lists_starts_stops_and_reads_properties() {
    let bus = DbusDaemon::session();
    let d = start(&bus, &two());
    d.wait_state("my-app", "running");
    let conn = connect(&bus).await;
    let m = ManagerProxy::new(&conn).await.expect("manager proxy");

    assert_eq!(
        m.version().await.expect("Version"),
        env!("CARGO_PKG_VERSION")
    );
    let list = m.list_processes().await.expect("ListProcesses");
    let names: Vec<&str> = list.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["my-app", "web"]);
    assert_eq!(
        list[0].2.as_str(),
        "/io/github/brummer/Brummer1/process/my_2dapp"
    );
    assert_eq!(list[1].1, "stopped");

    // A wrong name is a named error with the CLI's message.
    let err = m.start("wbe").await.expect_err("no such process");
    match err {
        zbus::Error::MethodError(name, Some(msg), _) => {
            assert_eq!(
                name.as_str(),
                "io.github.brummer.Brummer1.Error.NoSuchProcess"
            );
            assert_eq!(msg, r#"no process named "wbe" (did you mean "web"?)"#);
        }
        other => panic!("unexpected error {other:?}"),
    }

    let path = m.get_process("web").await.expect("GetProcess");
    assert_eq!(path.as_str(), "/io/github/brummer/Brummer1/process/web");
    let p = ProcessProxy::builder(&conn)
        .path(path)
        .build()
        .await
        .expect("process proxy");
    assert_eq!(p.name().await.expect("Name"), "web");
    assert_eq!(p.state().await.expect("State"), "stopped");
    assert_eq!(p.pid().await.expect("Pid"), 0);
    assert_eq!(p.exit_code().await.expect("ExitCode"), -1);
    assert!(p.urls().await.expect("Urls").is_empty());

    let mut states = p.receive_state_changed().await;
    m.start("web").await.expect("Start");
    let status = d.state_of("web");
    assert_eq!(status["state"], "running");
    // PropertiesChanged brings State (and Pid) to the proxy's cache.
    within("State running via PropertiesChanged", async {
        while let Some(c) = states.next().await {
            if c.get().await.ok().as_deref() == Some("running") {
                break;
            }
        }
    })
    .await;
    let pid = p.pid().await.expect("Pid");
    assert_eq!(Some(u64::from(pid)), status["pid"].as_u64());
    assert!(p.started_at().await.expect("StartedAt") > 0);

    p.stop().await.expect("Process.Stop");
    assert_eq!(d.state_of("web")["state"], "stopped");
    within("State stopped via PropertiesChanged", async {
        while let Some(c) = states.next().await {
            if c.get().await.ok().as_deref() == Some("stopped") {
                break;
            }
        }
    })
    .await;
    assert_eq!(p.pid().await.expect("Pid"), 0);
    assert_eq!(p.exit_signal().await.expect("ExitSignal"), 15);

    let (seq, all) = m.get_state().await.expect("GetState");
    assert!(seq >= 4, "seq {seq}");
    let uncached = ManagerProxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .expect("uncached proxy");
    assert!(seq <= uncached.event_sequence().await.expect("EventSequence"));
    let web = &all["web"];
    assert_eq!(
        String::try_from(web["State"].try_clone().expect("clone")).expect("string"),
        "stopped"
    );
    assert_eq!(
        String::try_from(all["my-app"]["State"].try_clone().expect("clone")).expect("string"),
        "running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changed_signals_arrive_in_order_with_increasing_seq() {
    let bus = DbusDaemon::session();
    let d = start(&bus, &two());
    let conn = connect(&bus).await;
    let m = ManagerProxy::new(&conn).await.expect("manager proxy");
    let mut signals = m.receive_state_changed().await.expect("subscribe");
    m.start("web").await.expect("Start");
    m.restart("web").await.expect("Restart");
    m.stop("web").await.expect("Stop");
    let mut seen = Vec::new();
    within("8 StateChanged signals for web", async {
        while let Some(s) = signals.next().await {
            let a = s.args().expect("args");
            if a.name == "web" {
                seen.push((a.old.clone(), a.new.clone(), a.seq));
            }
            if seen.len() == 8 {
                break;
            }
        }
    })
    .await;
    let chain: Vec<(&str, &str)> = seen
        .iter()
        .map(|(o, n, _)| (o.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        chain,
        [
            ("stopped", "starting"),
            ("starting", "running"),
            ("running", "stopping"),
            ("stopping", "stopped"),
            ("stopped", "starting"),
            ("starting", "running"),
            ("running", "stopping"),
            ("stopping", "stopped"),
        ],
        "{seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0].2 < w[1].2),
        "seq not increasing: {seen:?}"
    );
    assert!(d.state_of("web")["pid"].is_null());
}

/// A D-Bus client that follows StateChanged keeps following across Manager.Reexec: the
/// new image takes the name again, the pids are the same, and the signals' seq numbers go
/// on from the old image's without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dbus_client_follows_across_a_reexec() {
    let bus = DbusDaemon::session();
    let d = start(&bus, &two());
    let conn = connect(&bus).await;
    let m = ManagerProxy::new(&conn).await.expect("manager proxy");
    let mut signals = m.receive_state_changed().await.expect("subscribe");
    let app_pid = d.pid_of("my-app");
    m.start("web").await.expect("Start");
    let binary = m.reexec().await.expect("Reexec");
    assert!(binary.ends_with("brummerd"), "{binary}");
    // The new image owns the name once it answers on the socket (D-Bus comes up first).
    wait_for("the new image to answer", T, || {
        d.ctl(&["status"]).status.success().then_some(())
    });
    let web_pid = d.pid_of("web");
    // Called on the new image through the same proxy (the well-known name).
    m.stop("web").await.expect("Stop after the re-exec");
    let mut seen = Vec::new();
    within(
        "web's four transitions, two before and two after the re-exec",
        async {
            while let Some(s) = signals.next().await {
                let a = s.args().expect("args");
                if a.name == "web" {
                    seen.push((a.old.clone(), a.new.clone(), a.seq));
                }
                if seen.len() == 4 {
                    break;
                }
            }
        },
    )
    .await;
    let chain: Vec<(&str, &str)> = seen
        .iter()
        .map(|(o, n, _)| (o.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        chain,
        [
            ("stopped", "starting"),
            ("starting", "running"),
            ("running", "stopping"),
            ("stopping", "stopped"),
        ]
    );
    assert!(
        seen.windows(2).all(|w| w[1].2 == w[0].2 + 1),
        "seq numbers go on without a gap: {seen:?}"
    );
    assert_eq!(d.pid_of("my-app"), app_pid, "my-app kept its pid");
    assert_ne!(web_pid, 0);
    let p = ProcessProxy::builder(&conn)
        .path(m.get_process("my-app").await.expect("path"))
        .build()
        .await
        .expect("proxy");
    assert_eq!(p.pid().await.expect("Pid"), app_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_manager_follows_a_reload_that_adds_and_removes() {
    let bus = DbusDaemon::session();
    let kept = || Config::new().process("kept", Proc::sleep().autostart(false));
    let d = start(&bus, &kept().process("old", Proc::sleep()));
    let conn = connect(&bus).await;
    let om = zbus::fdo::ObjectManagerProxy::builder(&conn)
        .destination(NAME)
        .path(MANAGER)
        .build()
        .await
        .expect("object manager proxy");
    let m = ManagerProxy::new(&conn).await.expect("manager proxy");
    let with_process = |objs: &zbus::fdo::ManagedObjects| -> Vec<String> {
        let mut v: Vec<String> = objs
            .iter()
            .filter(|(_, ifaces)| ifaces.keys().any(|i| i.as_str() == PROCESS_IFACE))
            .map(|(p, _)| p.as_str().to_owned())
            .collect();
        v.sort();
        v
    };
    let before = om.get_managed_objects().await.expect("GetManagedObjects");
    assert_eq!(
        with_process(&before),
        [
            "/io/github/brummer/Brummer1/process/kept",
            "/io/github/brummer/Brummer1/process/old"
        ]
    );
    let old = &before
        [&OwnedObjectPath::try_from("/io/github/brummer/Brummer1/process/old").expect("path")];
    let props = &old[&zbus::names::OwnedInterfaceName::try_from(PROCESS_IFACE).expect("iface")];
    assert_eq!(
        String::try_from(props["Name"].try_clone().expect("clone")).expect("string"),
        "old"
    );
    assert!(props.contains_key("Pid") && props.contains_key("StartedAt"));

    let mut added = om
        .receive_interfaces_added()
        .await
        .expect("InterfacesAdded");
    let mut removed = om
        .receive_interfaces_removed()
        .await
        .expect("InterfacesRemoved");
    let mut p_added = m.receive_process_added().await.expect("ProcessAdded");
    let mut p_removed = m.receive_process_removed().await.expect("ProcessRemoved");

    d.write_config(&kept().process("new-one", Proc::sleep()));
    let (a, r, c) = m.reload().await.expect("Reload");
    assert_eq!(
        (a, r, c),
        (vec!["new-one".to_string()], vec!["old".to_string()], vec![])
    );

    let new_path = "/io/github/brummer/Brummer1/process/new_2done";
    within("InterfacesAdded for new-one", async {
        let s = added.next().await.expect("stream");
        let a = s.args().expect("args");
        assert_eq!(a.object_path.as_str(), new_path);
        assert!(
            a.interfaces_and_properties
                .keys()
                .any(|i| i.as_str() == PROCESS_IFACE)
        );
    })
    .await;
    within("InterfacesRemoved for old", async {
        let s = removed.next().await.expect("stream");
        let a = s.args().expect("args");
        assert_eq!(
            a.object_path.as_str(),
            "/io/github/brummer/Brummer1/process/old"
        );
    })
    .await;
    within("ProcessAdded / ProcessRemoved", async {
        let a = p_added.next().await.expect("stream");
        assert_eq!(a.args().expect("args").name, "new-one");
        let r = p_removed.next().await.expect("stream");
        assert_eq!(r.args().expect("args").name, "old");
    })
    .await;

    let after = om.get_managed_objects().await.expect("GetManagedObjects");
    assert_eq!(
        with_process(&after),
        ["/io/github/brummer/Brummer1/process/kept", new_path]
    );
}

/// `Enable`/`Disable` over D-Bus, as `brummerctl enable/disable`: neither starts nor stops
/// (unless `now`), `Enabled` tells, and the setting decides what runs after a restart.
#[test]
fn enable_and_disable_over_dbus_hold_across_a_restart() {
    let bus = DbusDaemon::session();
    let mut d = start(&bus, &two());
    d.wait_state("my-app", "running");
    let call = |method: &str, name: &str, now: &str| {
        run_ok(busctl(&bus).args([
            "call",
            NAME,
            MANAGER,
            MANAGER_IFACE,
            method,
            "asb",
            "1",
            name,
            now,
        ]))
    };
    let enabled = |name: &str| {
        run_ok(busctl(&bus).args([
            "get-property",
            NAME,
            &process_path(name),
            PROCESS_IFACE,
            "Enabled",
        ]))
    };
    assert_eq!(call("Enable", "web", "false").trim(), "as 1 \"web\"");
    assert_eq!(call("Enable", "web", "false").trim(), "as 0");
    assert_eq!(call("Disable", "my-app", "false").trim(), "as 1 \"my-app\"");
    assert_eq!(enabled("web").trim(), "b true");
    assert_eq!(enabled("my-app").trim(), "b false");
    assert_eq!(d.state_of("web")["state"], "stopped");
    assert_eq!(d.state_of("my-app")["state"], "running");

    d.restart_daemon();
    d.wait_state("web", "running");
    assert_eq!(d.state_of("my-app")["state"], "stopped");

    // `now`: disable stops.
    assert_eq!(call("Disable", "web", "true").trim(), "as 1 \"web\"");
    assert_eq!(d.state_of("web")["state"], "stopped");
}

/// A failed call answers the error that names what went wrong, as gdbus shows it.
fn gdbus_error(bus: &DbusDaemon, path: &str, method: &str, args: &[&str]) -> String {
    let mut c = gdbus(bus, "call");
    c.args(["--dest", NAME, "--object-path", path, "--method", method]);
    c.args(args);
    let out = run(&mut c);
    assert!(!out.status.success(), "{method} {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn failed_calls_answer_named_errors() {
    let bus = DbusDaemon::session();
    let config = two().process(
        "broken",
        Proc::new(["/nonexistent/brummer-test-program"])
            .autostart(false)
            .restart("never"),
    );
    let d = start(&bus, &config);
    d.wait_state("my-app", "running");
    let start = "io.github.brummer.Brummer1.Manager.Start";

    let err = gdbus_error(&bus, MANAGER, start, &["my-app"]);
    assert!(
        err.contains("io.github.brummer.Brummer1.Error.AlreadyRunning: my-app is already running"),
        "{err}"
    );
    let err = gdbus_error(
        &bus,
        "/io/github/brummer/Brummer1/process/my_2dapp",
        "io.github.brummer.Brummer1.Process.Start",
        &[],
    );
    assert!(
        err.contains("io.github.brummer.Brummer1.Error.AlreadyRunning"),
        "{err}"
    );
    let err = gdbus_error(&bus, MANAGER, start, &["wbe"]);
    assert!(
        err.contains(
            r#"io.github.brummer.Brummer1.Error.NoSuchProcess: no process named "wbe" (did you mean "web"?)"#
        ),
        "{err}"
    );
    let err = gdbus_error(&bus, MANAGER, start, &["broken"]);
    assert!(
        err.contains("io.github.brummer.Brummer1.Error.Failed: broken: failed: "),
        "{err}"
    );
    // StartAll starts what does not run and passes over what does; only `broken` fails.
    let err = gdbus_error(
        &bus,
        MANAGER,
        "io.github.brummer.Brummer1.Manager.StartAll",
        &[],
    );
    assert!(err.contains("Error.Failed: broken: failed: "), "{err}");
    assert!(!err.contains("my-app"), "{err}");
    d.wait_state("web", "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_tools_busctl_and_gdbus() {
    let bus = DbusDaemon::session();
    let d = start(&bus, &two());
    d.wait_state("my-app", "running");

    let out = run_ok(busctl(&bus).args(["call", NAME, MANAGER, MANAGER_IFACE, "ListProcesses"]));
    assert!(
        out.starts_with("a(ssouu) 2 \"my-app\" \"running\""),
        "{out}"
    );
    assert!(
        out.contains("\"web\" \"stopped\" \"/io/github/brummer/Brummer1/process/web\" 0 0"),
        "{out}"
    );

    let out = run_ok(gdbus(&bus, "call").args([
        "--dest",
        NAME,
        "--object-path",
        MANAGER,
        "--method",
        "io.github.brummer.Brummer1.Manager.Start",
        "web",
    ]));
    assert_eq!(out.trim(), "()");
    let pid = d.state_of("web")["pid"].as_u64().expect("pid");

    let out = run_ok(busctl(&bus).args([
        "get-property",
        NAME,
        "/io/github/brummer/Brummer1/process/web",
        PROCESS_IFACE,
        "State",
        "Pid",
    ]));
    assert_eq!(out, format!("s \"running\"\nu {pid}\n"));

    let out = run(gdbus(&bus, "call").args([
        "--dest",
        NAME,
        "--object-path",
        MANAGER,
        "--method",
        "io.github.brummer.Brummer1.Manager.Stop",
        "wbe",
    ]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"io.github.brummer.Brummer1.Error.NoSuchProcess: no process named "wbe" (did you mean "web"?)"#
        ),
        "{err}"
    );

    let out = run_ok(gdbus(&bus, "introspect").args([
        "--dest",
        NAME,
        "--object-path",
        "/io/github/brummer/Brummer1/process/my_2dapp",
    ]));
    assert!(
        out.contains("interface io.github.brummer.Brummer1.Process"),
        "{out}"
    );
    assert!(out.contains("readonly s State = 'running';"), "{out}");
    let out = run_ok(gdbus(&bus, "introspect").args(["--dest", NAME, "--object-path", MANAGER]));
    assert!(out.contains("StateChanged(s name,"), "{out}");
    assert!(
        out.contains("interface org.freedesktop.DBus.ObjectManager"),
        "{out}"
    );
}

/// StateChanged signals from dbus-monitor's output.
struct Monitor {
    lines: LineChild,
    block: Vec<String>,
}

impl Monitor {
    /// Next StateChanged as (name, old, new, seq), or None when `deadline` passes.
    fn next(&mut self, deadline: Instant) -> Option<(String, String, String, u64)> {
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.next_within(left)?;
            let t = line.trim();
            if t.starts_with("signal ") {
                self.block = vec![t.to_owned()];
            } else if let Some(s) = t.strip_prefix("string \"") {
                self.block.push(s.trim_end_matches('"').to_owned());
            } else if let Some(n) = t.strip_prefix("uint64 ")
                && self.block.len() == 4
                && self.block[0].contains("member=StateChanged")
            {
                let seq = n.parse().unwrap_or(0);
                let b = std::mem::take(&mut self.block);
                return Some((b[1].clone(), b[2].clone(), b[3].clone(), seq));
            }
        }
    }
}

#[test]
fn dbus_monitor_sees_state_changed_when_a_program_is_killed_and_restarted() {
    let bus = DbusDaemon::session();
    let d = start(
        &bus,
        &Config::new().process(
            "web",
            Proc::sleep()
                .restart("always")
                .autostart(false)
                .backoff("1ms", "1ms"),
        ),
    );
    let mut mon = Monitor {
        lines: LineChild::spawn(
            Command::new("dbus-monitor")
                .args([
                    "--address",
                    &bus.address,
                    "type='signal',interface='io.github.brummer.Brummer1.Manager',member='StateChanged'",
                ])
                .stderr(Stdio::null()),
        ),
        block: vec![],
    };
    // The monitor is listening once it reports a start we make (retried until it does).
    let deadline = Instant::now() + T;
    d.ctl_ok(&["start", "web"]);
    loop {
        match mon.next(Instant::now() + Duration::from_millis(300)) {
            Some((_, _, new, _)) if new == "running" => break,
            Some(_) => {}
            None => {
                assert!(
                    Instant::now() < deadline,
                    "dbus-monitor never saw StateChanged"
                );
                d.ctl_ok(&["restart", "web"]);
            }
        }
    }
    let pid = d.state_of("web")["pid"].as_u64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let mut after = Vec::new();
    let deadline = Instant::now() + T;
    while let Some(s) = mon.next(deadline) {
        let back = s.2 == "running";
        after.push(s);
        if back {
            break;
        }
    }
    drop(mon);
    let chain: Vec<(&str, &str)> = after.iter().map(|s| (s.1.as_str(), s.2.as_str())).collect();
    assert_eq!(
        chain,
        [
            ("running", "backoff"),
            ("backoff", "starting"),
            ("starting", "running")
        ],
        "{after:?}"
    );
    assert!(after.iter().all(|s| s.0 == "web"));
    assert!(after.windows(2).all(|w| w[0].3 < w[1].3), "{after:?}");
    let s = d.state_of("web");
    assert_eq!(s["restarts"], 1);
    assert_ne!(s["pid"].as_u64(), Some(pid as u64));
}

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// Needs root to own the name under the shipped policy and to call as another uid.
#[test]
#[ignore = "needs root"]
fn system_bus_policy_denies_stop_to_others_and_allows_reads() {
    require_root();
    let bus = DbusDaemon::system_with_policy(&repo_file("systemd/io.github.brummer.Brummer1.conf"));
    let d = start(&bus, &two());
    d.wait_state("my-app", "running");
    let addr = format!("--address={}", bus.address);
    let web_path = "/io/github/brummer/Brummer1/process/my_2dapp";

    let out = run(&mut nobody(&[
        "busctl",
        &addr,
        "call",
        NAME,
        MANAGER,
        MANAGER_IFACE,
        "Stop",
        "s",
        "my-app",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "Stop as uid 65534 succeeded");
    assert!(
        err.contains("Access denied") || err.contains("AccessDenied"),
        "{err}"
    );
    assert_eq!(d.state_of("my-app")["state"], "running");

    let out = run(&mut nobody(&[
        "busctl",
        &addr,
        "call",
        web_path,
        PROCESS_IFACE,
        "Stop",
    ]));
    assert!(!out.status.success(), "Process.Stop as uid 65534 succeeded");

    let out = run_ok(&mut nobody(&[
        "busctl",
        &addr,
        "get-property",
        NAME,
        web_path,
        PROCESS_IFACE,
        "State",
    ]));
    assert_eq!(out.trim(), "s \"running\"");
    let out = run_ok(&mut nobody(&[
        "busctl",
        &addr,
        "call",
        NAME,
        MANAGER,
        MANAGER_IFACE,
        "ListProcesses",
    ]));
    assert!(out.contains("\"my-app\""), "{out}");
    let out = run_ok(&mut nobody(&[
        "gdbus",
        "introspect",
        "--address",
        &bus.address,
        "--dest",
        NAME,
        "--object-path",
        web_path,
    ]));
    assert!(out.contains("io.github.brummer.Brummer1.Process"), "{out}");

    // root may.
    run_ok(busctl(&bus).args(["call", NAME, MANAGER, MANAGER_IFACE, "Stop", "s", "my-app"]));
    assert_eq!(d.state_of("my-app")["state"], "stopped");
}

#[test]
#[ignore = "needs root"]
fn daemon_checks_the_callers_uid_itself() {
    require_root();
    // A permissive bus: only brummerd's own check stands between uid 65534 and Stop.
    let bus = DbusDaemon::session();
    let d = start(&bus, &two());
    d.wait_state("my-app", "running");
    let out = run(&mut nobody(&[
        "gdbus",
        "call",
        "--address",
        &bus.address,
        "--dest",
        NAME,
        "--object-path",
        MANAGER,
        "--method",
        "io.github.brummer.Brummer1.Manager.Stop",
        "my-app",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "io.github.brummer.Brummer1.Error.PermissionDenied: permission denied: uid 65534 may read but not change anything"
        ),
        "{err}"
    );
    assert_eq!(d.state_of("my-app")["state"], "running");
    let out = run_ok(&mut nobody(&[
        "busctl",
        &format!("--address={}", bus.address),
        "get-property",
        NAME,
        "/io/github/brummer/Brummer1/process/my_2dapp",
        PROCESS_IFACE,
        "State",
    ]));
    assert_eq!(out.trim(), "s \"running\"");
}

/// The `<interface>` elements named `io.github.brummer.*`, trimmed lines, first occurrence of
/// each (zbus's introspection also describes child nodes, so the Process interface appears
/// once per program).
fn our_interfaces(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<String>> = None;
    for line in xml.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("<interface name=\"io.github.brummer.") {
            cur = Some(vec![line.to_owned()]);
        } else if let Some(c) = cur.as_mut() {
            c.push(line.to_owned());
            if line == "</interface>" {
                let block = c.join("\n");
                if !out
                    .iter()
                    .any(|b: &String| b.lines().next() == block.lines().next())
                {
                    out.push(block);
                }
                cur = None;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_interface_xml_matches_introspection() {
    let bus = DbusDaemon::session();
    let _d = start(&bus, &two());
    let conn = connect(&bus).await;
    let mut live = Vec::new();
    for path in [MANAGER, "/io/github/brummer/Brummer1/process/web"] {
        let xml = zbus::fdo::IntrospectableProxy::builder(&conn)
            .destination(NAME)
            .path(path)
            .build()
            .await
            .expect("proxy")
            .introspect()
            .await
            .expect("Introspect");
        for block in our_interfaces(&xml) {
            if !live
                .iter()
                .any(|b: &String| b.lines().next() == block.lines().next())
            {
                live.push(block);
            }
        }
    }
    let file = repo_file("dbus/io.github.brummer.Brummer1.xml");
    let shipped = std::fs::read_to_string(&file).expect("read the interface XML");
    assert_eq!(live.len(), 2);
    assert_eq!(
        our_interfaces(&shipped),
        live,
        "{} differs from what brummerd introspects:\n{}",
        file.display(),
        live.join("\n")
    );
}

/// A subscriber to every signal of ours that stops reading (SIGSTOP) holds nothing up: a
/// crash loop still makes its ~1,000 state changes, each a signal, and both control planes
/// answer meanwhile. (Were brummerd waiting on the bus for that reader, the loop would stall
/// and the deadline fail.)
#[test]
fn a_subscriber_that_never_reads_does_not_hold_up_the_daemon() {
    let bus = DbusDaemon::session();
    let d = start(
        &bus,
        &Config::new().process(
            "crash",
            Proc::new(["false"])
                .restart("always")
                .autostart(false)
                .backoff("1ms", "1ms")
                .start_limit(100_000, "1m"),
        ),
    );
    // gdbus monitor subscribes (AddMatch) to every signal of the name and says so.
    let sub = LineChild::spawn(
        Command::new("gdbus")
            .args(["monitor", "--address", &bus.address, "--dest", NAME])
            .stderr(Stdio::null()),
    );
    sub.until(|l| l.contains("is owned by"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sub.pid() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .expect("SIGSTOP the subscriber");

    d.ctl_ok(&["start", "crash"]);
    // Each crash is running -> backoff -> starting -> running: 3 state changes.
    wait_for("334 restarts of crash", Duration::from_secs(120), || {
        let r = d.state_of("crash")["restarts"].as_u64().unwrap_or(0);
        (r >= 334).then_some(r)
    });
    let out = run_ok(busctl(&bus).args(["call", NAME, MANAGER, MANAGER_IFACE, "ListProcesses"]));
    assert!(out.contains("\"crash\""), "{out}");
    d.ctl_ok(&["stop", "crash"]);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sub.pid() as i32),
        nix::sys::signal::Signal::SIGCONT,
    );
}

#[test]
fn dbus_on_without_a_bus_refuses_to_start_and_auto_runs_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("cfg/brummer")).expect("mkdir");
    std::fs::write(
        root.join("cfg/brummer/brummer.toml"),
        Config::new().process("web", Proc::sleep()).render(),
    )
    .expect("config");
    let brummerd = |mode: &str| {
        let mut c = brummerd_in(root);
        c.arg(mode).arg(format!(
            "--dbus-address=unix:path={}",
            root.join("no-bus").display()
        ));
        c
    };
    let out = run(&mut brummerd("--dbus=on"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("brummerd: cannot connect to the D-Bus bus at unix:path=")
            && err.contains("(run with --dbus=off to go without D-Bus)"),
        "{err}"
    );
    assert!(
        !root.join("state/brummer/logs/web.log").exists(),
        "a program ran"
    );

    // auto: one warning, then the daemon serves its socket as usual.
    let child = brummerd("--dbus=auto")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn brummerd");
    let sock = root.join("run/brummer/brummer.sock");
    wait_for("the socket of brummerd --dbus=auto", T, || {
        std::os::unix::net::UnixStream::connect(&sock).ok()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("running without D-Bus").count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_detected_signal_and_urls_property() {
    let bus = DbusDaemon::session();
    // The program announces its URL only after a flag file appears, so the signal is
    // subscribed to before the line can exist.
    let dir = tempfile::tempdir().expect("tempdir");
    let flag = dir.path().join("go");
    let d = start(
        &bus,
        &Config::new().process(
            "dev",
            Proc::sh(&format!(
                "while [ ! -e {} ]; do sleep 0.01; done; echo 'ready at http://localhost:5173/ now'; exec sleep 1000",
                flag.display()
            )),
        ),
    );
    let conn = connect(&bus).await;
    let manager = ManagerProxy::new(&conn).await.expect("manager proxy");
    let mut urls = manager.receive_url_detected().await.expect("subscribe");
    std::fs::write(&flag, b"").expect("flag");
    let sig = within("UrlDetected", urls.next()).await.expect("signal");
    let args = sig.args().expect("args");
    assert_eq!(args.name(), "dev");
    assert_eq!(args.url(), "http://localhost:5173/");
    let path = manager.get_process("dev").await.expect("path");
    let p = ProcessProxy::builder(&conn)
        .path(path)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .expect("process proxy");
    assert_eq!(
        p.urls().await.expect("Urls"),
        vec!["http://localhost:5173/".to_string()]
    );
    // The socket side reports the same URL in status.
    let s = d.state_of("dev");
    assert_eq!(
        s["urls"],
        serde_json::json!(["http://localhost:5173/"]),
        "{s}"
    );
}

/// The usage properties carry systemd's names and types (`t`) and the sample's values;
/// while nothing runs they are systemd's "not set" (`u64::MAX`).
#[test]
fn usage_properties_read_as_systemd_names_them() {
    let bus = DbusDaemon::session();
    let d = start(&bus, &two());
    d.wait_state("my-app", "running");
    let m = wait_for("a sample of my-app", T, || {
        d.state_of("my-app").get("metrics").cloned()
    });
    let get = |name: &str| {
        run_ok(busctl(&bus).args([
            "get-property",
            NAME,
            &process_path(name),
            PROCESS_IFACE,
            "MemoryCurrent",
            "CPUUsageNSec",
            "TasksCurrent",
            "IOReadBytes",
            "IOWriteBytes",
            "MemoryPeak",
        ]))
    };
    let numbers = |out: String| -> Vec<u64> {
        out.lines()
            .map(|l| {
                l.strip_prefix("t ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("not a t: {l:?}"))
            })
            .collect()
    };
    let running = numbers(get("my-app"));
    // A sleep: its memory and CPU time do not move between two samples.
    let want = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{k}: {m:#}"));
    assert_eq!(
        running,
        vec![
            want("memory_bytes"),
            want("cpu_usage_ns"),
            1,
            want("io_read_bytes"),
            want("io_write_bytes"),
            want("memory_peak_bytes"),
        ],
        "{m:#}"
    );
    assert_eq!(numbers(get("web")), vec![u64::MAX; 6]);
}

/// A notify program's STATUS= reaches D-Bus as `StatusText` (PropertiesChanged, also while
/// its state stays the same), and a failed health check's reason as `LastError` (issue 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_text_and_the_health_failure_reason_are_properties() {
    let bus = DbusDaemon::session();
    let dir = tempfile::tempdir().unwrap();
    let (go, sick) = (dir.path().join("go"), dir.path().join("sick"));
    let script = format!(
        "import os, socket, time\n\
         a = os.environ['NOTIFY_SOCKET']\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.sendto(b'STATUS=warming up', a)\n\
         while not os.path.exists('{go}'): time.sleep(0.02)\n\
         s.sendto(b'STATUS=phase 2', a)\n\
         while not os.path.exists('{go}2'): time.sleep(0.02)\n\
         s.sendto(b'READY=1', a)\n\
         time.sleep(100000)\n",
        go = go.display()
    );
    let mut health = toml::Table::new();
    health.insert(
        "exec".into(),
        toml::Value::Array(
            ["test", "!", "-e", &sick.display().to_string()]
                .iter()
                .map(|a| toml::Value::String(a.to_string()))
                .collect(),
        ),
    );
    health.insert("interval".into(), "50ms".into());
    health.insert("failures".into(), 1.into());
    let d = start(
        &bus,
        &Config::new().process(
            "svc",
            Proc::python(&script)
                .set("ready", "notify")
                .set("health", toml::Value::Table(health))
                .restart("never"),
        ),
    );
    let conn = connect(&bus).await;
    let p = ProcessProxy::builder(&conn)
        .path("/io/github/brummer/Brummer1/process/svc")
        .build()
        .await
        .expect("process proxy");
    let mut texts = p.receive_status_text_changed().await;
    let mut errors = p.receive_last_error_changed().await;
    within("StatusText warming up", async {
        loop {
            if p.status_text().await.expect("StatusText") == "warming up" {
                break;
            }
            texts.next().await.expect("status text stream");
        }
    })
    .await;
    assert_eq!(p.state().await.expect("State"), "starting");
    std::fs::write(&go, b"").unwrap();
    within("StatusText phase 2 by PropertiesChanged", async {
        while let Some(c) = texts.next().await {
            if c.get().await.expect("value") == "phase 2" {
                break;
            }
        }
    })
    .await;
    assert_eq!(d.state_of("svc")["state"], "starting");
    std::fs::write(format!("{}2", go.display()), b"").unwrap();
    d.wait_state("svc", "running");
    assert_eq!(p.last_error().await.expect("LastError"), "");

    std::fs::write(&sick, b"").unwrap();
    let reason = within("LastError by PropertiesChanged", async {
        loop {
            let c = errors.next().await.expect("last error stream");
            let v = c.get().await.expect("value");
            if !v.is_empty() {
                break v;
            }
        }
    })
    .await;
    assert!(
        reason.starts_with("health check failed: test ! -e ") && reason.ends_with("exit code 1"),
        "{reason}"
    );
    d.wait_state("svc", "failed");
    assert_eq!(d.state_of("svc")["last_error"], reason.as_str());
}

/// `Requires`, `Wants` and `After` show a program's dependencies, as configured.
#[test]
fn dependencies_are_process_properties() {
    let bus = DbusDaemon::session();
    let deps = |v: &[&str]| toml::Value::Array(v.iter().map(|s| toml::Value::from(*s)).collect());
    let d = start(
        &bus,
        &Config::new()
            .process("db", Proc::sleep())
            .process("cache", Proc::sleep())
            .process(
                "web",
                Proc::sleep()
                    .set("requires", deps(&["db"]))
                    .set("wants", deps(&["cache"])),
            ),
    );
    d.wait_state("web", "running");
    let get = |name: &str, prop: &str| {
        run_ok(busctl(&bus).args([
            "get-property",
            NAME,
            &format!("/io/github/brummer/Brummer1/process/{name}"),
            PROCESS_IFACE,
            prop,
        ]))
    };
    assert_eq!(get("web", "Requires").trim(), "as 1 \"db\"");
    assert_eq!(get("web", "Wants").trim(), "as 1 \"cache\"");
    assert_eq!(get("web", "After").trim(), "as 0");
    assert_eq!(get("db", "Requires").trim(), "as 0");
}
