//! `enable` / `disable`: they override a program's `autostart`, on disk in the state
//! directory, so they hold across restarts of brummerd, reloads and reboots (a reboot
//! clears the runtime directory, and with it the starts and stops by hand). As with
//! systemctl, enable does not start and disable does not stop, unless `--now`.

use brummer_tests::{Config, Proc, brtest};

brtest!(
    enable_and_disable_override_autostart_across_restarts_reloads_and_reboots,
    Config::new()
        .process("off", Proc::sleep().autostart(false))
        .process("on", Proc::sleep()),
    |d| {
        d.wait_state("on", "running");
        let out = d.ctl_ok(&["enable", "off"]);
        assert_eq!(
            out.trim(),
            "off: enabled (not running; start it with: brummerctl start off, or enable --now)"
        );
        let out = d.ctl_ok(&["disable", "on"]);
        assert!(
            out.starts_with("on: disabled (pid ") && out.contains("(still running; stop it with"),
            "{out}"
        );
        // Neither started nor stopped anything.
        assert_eq!(d.state_of("off")["state"], "stopped");
        assert_eq!(d.state_of("on")["state"], "running");
        assert_eq!(d.state_of("off")["enabled"], true);
        assert_eq!(d.state_of("on")["enabled"], false);
        assert_eq!(d.state_of("on")["autostart"], true);
        let table = d.ctl_ok(&["status"]);
        assert!(table.lines().next().unwrap().contains("ENABLED"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("off ") && l.contains("enabled")),
            "{table}"
        );
        assert_eq!(
            d.ctl_ok(&["enable", "off"]).trim().split(" (").next(),
            Some("off: already enabled")
        );

        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.enabled_file()).expect("enabled.json"))
                .expect("JSON");
        assert_eq!(doc["format"], 1);
        assert_eq!(doc["enabled"]["off"], true);
        assert_eq!(doc["enabled"]["on"], false);

        // A restart of brummerd: the overrides decide what starts.
        d.restart_daemon();
        d.wait_state("off", "running");
        assert_eq!(d.state_of("on")["state"], "stopped");

        // A reload keeps them.
        d.ctl_ok(&["reload"]);
        assert_eq!(d.state_of("off")["enabled"], true);
        assert_eq!(d.state_of("on")["enabled"], false);

        // A stop by hand holds across a restart of brummerd, but not across a reboot (the
        // runtime directory, and the state beside the socket, are gone); the override does.
        d.ctl_ok(&["stop", "off"]);
        d.restart_daemon();
        assert_eq!(d.state_of("off")["state"], "stopped");
        d.stop_daemon();
        std::fs::remove_dir_all(d.socket.parent().unwrap()).expect("clear the runtime dir");
        d.start_again();
        d.wait_state("off", "running");
        assert_eq!(d.state_of("on")["state"], "stopped");

        // --now: enable starts, disable stops.
        let out = d.ctl_ok(&["disable", "--now", "off"]);
        assert_eq!(out.trim(), "off: disabled, stopped");
        let out = d.ctl_ok(&["enable", "--now", "on"]);
        assert!(out.starts_with("on: enabled, started (pid "), "{out}");
        assert_eq!(d.state_of("on")["state"], "running");
        assert_eq!(d.state_of("off")["state"], "stopped");
        let json: serde_json::Value =
            serde_json::from_str(&d.ctl_ok(&["--json", "enable", "on"])).expect("JSON");
        assert_eq!(json["results"][0]["note"], "already enabled");
        assert_eq!(json["results"][0]["status"]["enabled"], true);
    }
);

brtest!(
    an_unknown_name_is_refused_and_nothing_is_written,
    Config::new().process("web", Proc::sleep()),
    |d| {
        let out = d.ctl(&["enable", "wbe"]);
        assert_eq!(out.status.code(), Some(4));
        assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean \"web\""));
        assert!(!d.enabled_file().exists());
    }
);

brtest!(
    enable_settings_of_a_newer_brummerd_are_kept_and_not_overwritten,
    Config::new()
        .process("web", Proc::sleep())
        .process("idle", Proc::sleep().autostart(false)),
    |d| {
        d.stop_daemon();
        let path = d.enabled_file();
        let newer = br#"{"format":9,"enabled":{"web":false,"idle":true},"profiles":{}}"#;
        std::fs::write(&path, newer).expect("write");
        d.start_again();
        // Not understood, so not obeyed: autostart decides.
        d.wait_state("web", "running");
        assert_eq!(d.state_of("idle")["state"], "stopped");
        let p = path.display().to_string();
        let log = d.daemon_log();
        assert!(
            log.lines().any(|l| l.contains("ignoring enable settings")
                && l.contains(&p)
                && l.contains("format 9 is newer than this brummerd reads (1)")),
            "{log}"
        );
        let out = d.ctl(&["enable", "idle"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&p) && err.contains("move it away"), "{err}");
        assert_eq!(std::fs::read(&path).expect("still there"), newer);
    }
);
