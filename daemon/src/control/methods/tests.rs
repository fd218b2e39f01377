//! The method table on a real `State` with programs that never start (no autostart): the
//! answers a client gets for good and bad requests, without a socket in between.

use super::*;
use crate::config::{CommandSpec, Config, ProcessDef};
use crate::mode::Mode;
use crate::shutdown::Shutdown;
use brummer_proto::PROTOCOL_VERSION;
use brummer_proto::methods::{FollowParams, HelloParams, LogsParams, Selector};

struct Stub {
    state: Arc<State>,
    _dir: tempfile::TempDir,
}

/// A state holding programs `web` and `worker` (`sleep 60`, not started).
fn stub() -> Stub {
    let dir = tempfile::tempdir().expect("temp dir");
    let (desired, _) = crate::desired::Desired::open(
        dir.path().join("run/brummer.state.json"),
        &dir.path().join("state"),
        Mode::User,
        None,
    );
    let tasks = Shutdown::new();
    // Its writers run: `start`/`stop` answer once the runtime state is written.
    desired.start(&tasks);
    let (state, _reload_rx) = State::new(
        Mode::User,
        dir.path().to_path_buf(),
        64 * 1024,
        tasks,
        Arc::new(desired),
        &dir.path().join("run/brummer.sock"),
        0,
    )
    .expect("state");
    let mut config = Config::default();
    for name in ["web", "worker"] {
        let mut def = ProcessDef::with_defaults(name, CommandSpec::Shell("sleep 60".into()));
        def.autostart = false;
        config.processes.insert(name.into(), Arc::new(def));
    }
    crate::ops::reload::install(&state, &config);
    Stub {
        state: Arc::new(state),
        _dir: dir,
    }
}

const READER: Peer = Peer {
    uid: 4_000_000,
    can_write: false,
};
const WRITER: Peer = Peer {
    uid: 0,
    can_write: true,
};

async fn answer(s: &Stub, peer: Peer, req: Request) -> Reply {
    let cx = Ctx {
        state: &s.state,
        peer,
    };
    match call(&cx, req) {
        Call::Now(r) => r,
        Call::Later(t) => t.await,
        Call::LaterThen(t) => {
            let (r, after) = t.await;
            after();
            r
        }
        Call::Stream(_) | Call::Unsubscribe(_) => panic!("not a plain answer"),
    }
}

fn value(r: Reply) -> serde_json::Value {
    serde_json::from_str(r.expect("a result").get()).expect("JSON")
}

fn code(r: Reply) -> ErrorCode {
    r.expect_err("an error").kind().expect("a known code")
}

#[tokio::test]
async fn reads_answer_from_the_registry() {
    let s = stub();
    let list = value(answer(&s, READER, Request::List).await);
    assert_eq!(list["processes"][0]["name"], "web");
    assert_eq!(list["processes"][1]["state"], "stopped");
    let st = value(answer(&s, READER, Request::Status(Selector::names(["worker"]))).await);
    assert_eq!(st["processes"].as_array().map(Vec::len), Some(1));
    assert_eq!(st["processes"][0]["name"], "worker");
    let hello = HelloParams {
        protocol: Some(PROTOCOL_VERSION),
        ..Default::default()
    };
    let h = value(answer(&s, READER, Request::Hello(hello)).await);
    assert_eq!(h["mode"], "user");
    assert_eq!(h["can_write"], false);
}

#[tokio::test]
async fn an_unknown_name_is_no_such_process_with_a_suggestion() {
    let s = stub();
    let e = answer(&s, READER, Request::Status(Selector::names(["wbe"])))
        .await
        .expect_err("unknown name");
    assert_eq!(e.kind(), Some(ErrorCode::NoSuchProcess));
    assert_eq!(e.message, r#"no process named "wbe" (did you mean "web"?)"#);
    let e = answer(&s, WRITER, Request::Start(Selector::names(["wbe"]))).await;
    assert_eq!(code(e), ErrorCode::NoSuchProcess);
}

#[tokio::test]
async fn a_reader_may_not_change_anything() {
    let s = stub();
    for req in [
        Request::Start(Selector::names(["web"])),
        Request::Stop(Selector::default()),
        Request::Restart(Selector::names(["web"])),
        Request::Reload,
    ] {
        let e = answer(&s, READER, req).await.expect_err("denied");
        assert_eq!(e.kind(), Some(ErrorCode::PermissionDenied));
        assert!(e.message.contains("uid 4000000 may read"), "{}", e.message);
    }
}

#[tokio::test]
async fn bad_requests_are_invalid_params() {
    let s = stub();
    let nothing = answer(&s, WRITER, Request::Stop(Selector::default())).await;
    assert_eq!(code(nothing), ErrorCode::InvalidParams);
    let wrong = HelloParams {
        protocol: Some(PROTOCOL_VERSION + 1),
        ..Default::default()
    };
    assert_eq!(
        code(answer(&s, READER, Request::Hello(wrong)).await),
        ErrorCode::InvalidParams
    );
    let huge = LogsParams {
        lines: Some(1_000_001),
        ..Default::default()
    };
    assert_eq!(
        code(answer(&s, READER, Request::Logs(huge)).await),
        ErrorCode::InvalidParams
    );
    let grep = LogsParams {
        grep: Some("(".into()),
        ..Default::default()
    };
    assert_eq!(
        code(answer(&s, READER, Request::Logs(grep)).await),
        ErrorCode::InvalidParams
    );
}

#[tokio::test]
async fn stop_of_a_stopped_program_notes_it_and_shutdown_refuses_work() {
    let s = stub();
    let r = value(answer(&s, WRITER, Request::Stop(Selector::names(["web"]))).await);
    assert_eq!(r["results"][0]["ok"], true);
    assert_eq!(r["results"][0]["note"], "already stopped");
    s.state.begin_shutdown();
    let e = answer(&s, WRITER, Request::Start(Selector::names(["web"]))).await;
    assert_eq!(code(e), ErrorCode::ShuttingDown);
}

#[tokio::test]
async fn streams_and_unsubscribe_go_to_the_connection() {
    let s = stub();
    let cx = Ctx {
        state: &s.state,
        peer: READER,
    };
    assert!(matches!(
        call(&cx, Request::Follow(FollowParams::default())),
        Call::Stream(_)
    ));
    assert!(matches!(
        call(
            &cx,
            Request::Unsubscribe(brummer_proto::methods::UnsubscribeParams { subscription: 7 })
        ),
        Call::Unsubscribe(7)
    ));
}
