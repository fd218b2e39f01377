//! brummerctl's exit codes end to end: 0 ok, 1 failed, 2 usage, 3 unreachable, 4 no such
//! process, and a reader that goes away (`| head`) is a quiet 0.

use brummer_tests::{Config, Proc, T, bin, brtest, run, wait_for};
use std::io::Read;
use std::process::{Command, Stdio};

fn code_and_stderr(out: &std::process::Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

brtest!(
    exit_codes,
    Config::new().process("web", Proc::sleep().autostart(false)),
    |d| {
        // 0
        for args in [&["status"][..], &["version"], &["logs", "web"]] {
            let out = d.ctl(args);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        }

        // 2: usage errors, before any connection.
        for args in [
            &["stauts"][..],
            &["start"],
            &["stop", "web", "--all"],
            &["start", "my app"],
            &["logs", "-n", "many", "web"],
            &[],
        ] {
            let out = d.ctl(args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        }

        // 3: nothing listens there.
        let missing = d.dir.path().join("no-such-dir/brummer.sock");
        for args in [&["status"][..], &["start", "web"], &["logs", "-f", "web"]] {
            let out = run(Command::new(bin("brummerctl"))
                .arg("--socket")
                .arg(&missing)
                .args(args)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null()));
            let (code, stderr) = code_and_stderr(&out);
            assert_eq!(code, Some(3), "{args:?}: {out:?}");
            assert!(
                stderr.starts_with("brummerctl: cannot reach brummerd at ")
                    && stderr.contains(&missing.display().to_string()),
                "{stderr}"
            );
        }

        // 4: names the daemon does not know, with a suggestion.
        for args in [
            &["start", "wbe"][..],
            &["stop", "wbe"],
            &["status", "wbe"],
            &["logs", "wbe"],
            &["logs", "-f", "wbe"],
            &["start", "web", "wbe"],
        ] {
            let out = d.ctl(args);
            let (code, stderr) = code_and_stderr(&out);
            assert_eq!(code, Some(4), "{args:?}: {out:?}");
            assert_eq!(
                stderr, "brummerctl: no process named \"wbe\" (did you mean \"web\"?)\n",
                "{args:?}"
            );
        }
        // `start web wbe` changed nothing.
        assert_eq!(d.state_of("web")["state"], "stopped");

        // 1: the daemon tried and failed (a config that does not load).
        d.write_config_text("[process.web]\ncommand = 5\n");
        let out = d.ctl(&["reload"]);
        let (code, stderr) = code_and_stderr(&out);
        assert_eq!(code, Some(1), "{out:?}");
        assert!(stderr.contains("reload failed"), "{stderr}");
        assert!(d.status().contains_key("web"));
    }
);

brtest!(
    a_closed_stdout_is_a_quiet_success,
    Config::new()
        .ring_bytes(16 << 20)
        .process("many", Proc::new(["seq", "1", "20000"]).restart("never")),
    |d| {
        wait_for("all 20000 lines in the ring", T, || {
            let s = d.state_of("many");
            (s["state"] == "exited" && s["logs"]["lines"] == 20_000).then_some(())
        });
        for json in [false, true] {
            let mut args = vec!["logs", "-n", "20000", "many"];
            if json {
                args.insert(0, "--json");
            }
            let mut child = d
                .ctl_cmd(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn brummerctl");
            // Close the read end before brummerctl writes its ~130 KB (twice a pipe buffer): every write gets EPIPE.
            drop(child.stdout.take());
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr)
                .expect("read stderr");
            let status = child.wait().expect("wait");
            assert_eq!(status.code(), Some(0), "json={json}: {status} {stderr}");
            assert!(stderr.is_empty(), "json={json}: {stderr}");
        }
        // The same command with a reader gets every line.
        let out = d.ctl_ok(&["logs", "-n", "20000", "many"]);
        assert_eq!(out.lines().count(), 20_000);
        assert_eq!(out.lines().last(), Some("20000"));
    }
);

brtest!(
    /// Issue 17: as root, brummerctl goes to the system socket; when no system daemon
    /// answers but a `brummerd --user` does, the error names that socket and how to reach
    /// it. The system socket is hidden by an empty /run in a mount namespace of its own, so
    /// a system brummerd on this machine changes nothing.
    #[ignore = "needs root"]
    issue17_root_without_system_daemon_is_told_where_a_user_instance_listens,
    Config::new().process("web", Proc::sleep().autostart(false)),
    |d| {
        brummer_tests::require_root();
        let out = run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs brummer-test /run && exec \"$0\" status")
            .arg(bin("brummerctl"))
            .env("XDG_RUNTIME_DIR", d.dir.path().join("run"))
            .env_remove("BRUMMER_SOCKET")
            .env("NO_COLOR", "1"));
        let (code, stderr) = code_and_stderr(&out);
        assert_eq!(code, Some(3), "{stderr}");
        let sock = d.socket.display();
        assert!(
            stderr.contains("cannot reach brummerd at /run/brummer/brummer.sock"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "a user instance (brummerd --user) listens at {sock}: reach it with \
                 brummerctl --socket {sock}"
            )),
            "{stderr}"
        );
        // And that way works.
        assert!(d.ctl_ok(&["status"]).contains("web"));
    }
);
