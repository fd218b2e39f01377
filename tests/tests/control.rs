//! The control socket at the protocol level: every kind of bad input gets its JSON-RPC
//! error and the connection keeps working; replies correlate by id when they come out of
//! order; clients that vanish mid-stream do not disturb the daemon.

use brummer_tests::{Config, Proc, Rpc, T, brtest, socat, wait_for};
use serde_json::{Value, json};
use std::io::Write;
use std::process::Command;

/// One program that waits to be started.
fn web() -> Config {
    Config::new().process("web", Proc::sleep().autostart(false))
}

/// The connection still answers: a `version` call on it succeeds.
fn assert_alive(rpc: &mut Rpc) {
    let v = rpc.call("version", json!({}));
    assert_eq!(v["result"]["protocol"], 1, "{v}");
    assert!(v["result"]["version"].is_string(), "{v}");
}

/// Sends a raw line, reads one reply and returns its error object (asserting there is one).
fn raw_error(rpc: &mut Rpc, line: &[u8]) -> Value {
    rpc.send_raw(line);
    let v = rpc.read();
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    assert!(v.get("result").is_none(), "{v}");
    v["error"].clone()
}

brtest!(
    malformed_requests_get_errors_and_the_connection_survives,
    web(),
    |d| {
        let mut rpc = d.rpc();

        let e = raw_error(&mut rpc, b"{not json\n");
        assert_eq!(e["code"], -32700, "{e}");
        assert_alive(&mut rpc);

        let e = raw_error(
            &mut rpc,
            b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"\xff\xfe\"}\n",
        );
        assert_eq!(e["code"], -32700, "invalid UTF-8: {e}");
        assert_alive(&mut rpc);

        for not_an_object in [&b"[1,2,3]\n"[..], b"42\n", b"\"version\"\n", b"null\n"] {
            let e = raw_error(&mut rpc, not_an_object);
            assert_eq!(
                e["code"],
                -32600,
                "{}: {e}",
                String::from_utf8_lossy(not_an_object)
            );
            assert_alive(&mut rpc);
        }

        rpc.send_raw(b"{\"jsonrpc\":\"1.0\",\"id\":9,\"method\":\"version\"}\n");
        let v = rpc.read();
        assert_eq!(v["error"]["code"], -32600, "{v}");
        assert_alive(&mut rpc);

        let v = rpc.call("stauts", json!({}));
        assert_eq!(v["error"]["code"], -32601, "{v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("did you mean \"status\""), "{msg}");
        assert_alive(&mut rpc);

        for params in [
            json!({"nmes": ["web"]}),
            json!({"names": 5}),
            json!({"names": [1]}),
            json!(["web"]),
        ] {
            let v = rpc.call("status", params.clone());
            assert_eq!(v["error"]["code"], -32602, "{params}: {v}");
            assert_alive(&mut rpc);
        }
        let v = rpc.call("unsubscribe", json!({}));
        assert_eq!(v["error"]["code"], -32602, "missing field: {v}");
        assert_alive(&mut rpc);

        let v = rpc.call("status", json!({"names": ["wbe"]}));
        assert_eq!(v["error"]["code"], -32001, "{v}");
        assert_eq!(
            v["error"]["message"],
            r#"no process named "wbe" (did you mean "web"?)"#
        );
        assert_eq!(v["error"]["data"]["suggestion"], "web");
        assert_eq!(v["error"]["data"]["name"], "wbe");
        let v = rpc.call("start", json!({"names": ["wbe"]}));
        assert_eq!(v["error"]["code"], -32001, "{v}");
        assert_alive(&mut rpc);
        assert_eq!(d.state_of("web")["state"], "stopped");

        let v = rpc.call("unsubscribe", json!({"subscription": 12345}));
        assert_eq!(v["error"]["code"], -32007, "{v}");
        assert_alive(&mut rpc);
    }
);

brtest!(
    oversized_line_is_rejected_and_the_stream_resyncs_at_the_newline,
    web(),
    |d| {
        let mut rpc = d.rpc();
        // A well-formed request padded to 1.5 MiB: only its size is wrong.
        let pad = "x".repeat(1536 * 1024);
        let mut line =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"version","params":{{}},"pad":"{pad}"}}"#)
                .into_bytes();
        line.push(b'\n');
        // A valid request right behind it, in the same write.
        line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"version\"}\n");
        let writer = {
            let mut s = rpc.stream.try_clone().expect("clone");
            std::thread::spawn(move || s.write_all(&line).expect("write"))
        };
        let e = rpc.read();
        assert_eq!(e["error"]["code"], -32004, "{e}");
        assert!(e["id"].is_null(), "{e}");
        let v = rpc.read();
        assert_eq!(v["id"], 2, "{v}");
        assert_eq!(v["result"]["protocol"], 1, "{v}");
        writer.join().expect("writer");
        assert_alive(&mut rpc);
    }
);

brtest!(
    replies_come_out_of_order_and_correlate_by_id,
    Config::new().process(
        "stubborn",
        Proc::sh("trap '' TERM; echo ready; while true; do sleep 0.05; done").stop_timeout("1s"),
    ),
    |d| {
        d.wait_state("stubborn", "running");
        // The trap is set before `ready` is printed.
        wait_for("stubborn to ignore SIGTERM", T, || {
            (d.state_of("stubborn")["logs"]["lines"] == 1).then_some(())
        });
        let mut rpc = d.rpc();
        rpc.send_raw(
        b"{\"jsonrpc\":\"2.0\",\"id\":\"slow\",\"method\":\"stop\",\"params\":{\"names\":[\"stubborn\"]}}\n\
          {\"jsonrpc\":\"2.0\",\"id\":\"fast\",\"method\":\"status\",\"params\":{\"names\":[\"stubborn\"]}}\n",
    );
        let first = rpc.read();
        assert_eq!(
            first["id"], "fast",
            "status must not wait for the stop: {first}"
        );
        let state = first["result"]["processes"][0]["state"].clone();
        assert!(state == "stopping" || state == "running", "{first}");
        let second = rpc.read();
        assert_eq!(second["id"], "slow", "{second}");
        let outcome = &second["result"]["results"][0];
        assert_eq!(outcome["name"], "stubborn", "{second}");
        assert_eq!(outcome["status"]["state"], "stopped", "{second}");
        // It took SIGKILL after the 1 s timeout.
        assert_eq!(outcome["status"]["exit_signal"], 9, "{second}");
        assert_alive(&mut rpc);
    }
);

brtest!(
    clients_vanishing_mid_stream_do_not_disturb_the_daemon,
    Config::new().process(
        "chatty",
        Proc::sh("i=0; while true; do i=$((i+1)); echo line $i; done"),
    ),
    |d| {
        wait_for("chatty to produce output", T, || {
            (d.state_of("chatty")["logs"]["lines"].as_u64()? > 1000).then_some(())
        });
        for _ in 0..5 {
            let mut rpc = d.rpc();
            let v = rpc.call("follow", json!({"lines": 100}));
            assert!(v["result"]["subscription"].is_u64(), "{v}");
            let v = rpc.call("subscribe", json!({}));
            assert!(v["result"]["subscription"].is_u64(), "{v}");
            // Some notifications are on their way; the client reads one and vanishes.
            let n = rpc.read();
            assert!(n.get("method").is_some(), "{n}");
            drop(rpc);
        }
        // Another client that stops reading without closing, then closes later.
        let mut stalled = d.rpc();
        stalled.call("follow", json!({}));

        let mut fresh = d.rpc();
        assert_alive(&mut fresh);
        let v = fresh.call("status", json!({}));
        assert_eq!(v["result"]["processes"][0]["state"], "running", "{v}");
        let v = fresh.call("follow", json!({"names": ["chatty"]}));
        let sub = v["result"]["subscription"].as_u64().expect("subscription");
        let n = loop {
            let n = fresh.read();
            if n["method"] == "log" {
                break n;
            }
        };
        assert_eq!(n["params"]["subscription"], sub);
        drop(stalled);
        assert_eq!(d.ctl(&["status"]).status.code(), Some(0));
        let log = d.daemon_log();
        assert!(
            !log.contains(" ERROR ") && !log.contains("panicked"),
            "daemon logged errors:\n{log}"
        );
    }
);

brtest!(hello_reports_protocol_and_write_permission, web(), |d| {
    let mut rpc = d.rpc();
    let v = rpc.call("hello", json!({"protocol": 1, "client": "e2e"}));
    let r = &v["result"];
    assert_eq!(r["protocol"], 1, "{v}");
    assert_eq!(r["mode"], "user");
    assert_eq!(r["pid"], d.pid());
    assert!(
        r["daemon"]
            .as_str()
            .unwrap_or_default()
            .starts_with("brummerd ")
    );
    // Root, and the daemon's own uid, may change things.
    assert_eq!(r["can_write"], true, "{v}");
    let v = rpc.call("hello", json!({"protocol": 2}));
    assert_eq!(v["error"]["code"], -32602, "{v}");
    // After a failed hello nothing else runs on this connection (a pipelined request must
    // not be executed by a daemon speaking another protocol) ...
    let v = rpc.call("status", json!({}));
    assert_eq!(v["error"]["code"], -32600, "{v}");
    // ... until a hello succeeds.
    let v = rpc.call("hello", json!({"protocol": 1}));
    assert_eq!(v["result"]["protocol"], 1, "{v}");
    assert_alive(&mut rpc);
});

brtest!(socat_is_a_usable_client, web(), |d| {
    let out = socat(
        Command::new("socat"),
        &d.socket,
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"list\"}\n",
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["id"], 1);
    assert_eq!(
        v["result"]["processes"],
        json!([{"name": "web", "state": "stopped"}])
    );
});
