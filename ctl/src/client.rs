//! The JSON-RPC connection to brummerd: blocking, one JSON object per line.
//!
//! [`Client::session`] pipelines `hello` and the real requests in one write (one round
//! trip), then reads lines until every reply has arrived, matching replies by id (the
//! daemon may answer out of order) and handing notifications to a callback. Streaming
//! commands then keep calling [`Client::next_notification`] until the daemon goes away.
//! No async runtime, no threads, no timeouts: a command ends when its replies do.

use crate::exit::CtlError;
use crate::socket::{RUN_USER, SocketChoice, SocketEnv, Source};
use brummer_proto::codec::{Frame, LineDecoder};
use brummer_proto::methods::{HelloParams, HelloResult, Request};
use brummer_proto::rpc::{Incoming, JSONRPC, Notification, Response};
use brummer_proto::{PROTOCOL_VERSION, RpcError};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// What brummerctl calls itself in `hello`.
pub const CLIENT_NAME: &str = concat!("brummerctl ", env!("CARGO_PKG_VERSION"));

/// The replies to one pipelined batch: `hello`'s, then one per request, in request order.
#[derive(Debug)]
pub struct Session {
    pub hello: HelloResult,
    pub results: Vec<Value>,
}

/// Bytes asked of each read from the daemon.
const READ_CHUNK: usize = 64 * 1024;

pub struct Client {
    path: PathBuf,
    user_mode: bool,
    reader: Box<dyn Read + Send>,
    /// Lines received and not yet read; replies have no length limit.
    decoder: LineDecoder,
    writer: Box<dyn Write + Send>,
    next_id: u64,
    /// Replies that arrived while we waited for another id.
    early: HashMap<u64, Response>,
    /// The line being read, kept to reuse its allocation.
    line: Vec<u8>,
}

/// Maps a connect(2) failure to the error the user sees.
pub fn connect_error(path: &Path, user_mode: bool, e: io::Error) -> CtlError {
    let path = path.to_path_buf();
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTDIR) => CtlError::Unreachable {
            path,
            user_mode,
            user_instances: Vec::new(),
        },
        Some(libc::EACCES | libc::EPERM) => CtlError::PermissionDenied { path },
        _ => CtlError::Connect { path, source: e },
    }
}

impl Client {
    pub fn connect(socket: &SocketChoice) -> Result<Client, CtlError> {
        let stream = UnixStream::connect(&socket.path).map_err(|e| {
            let mut err = connect_error(&socket.path, socket.user_mode, e);
            if let CtlError::Unreachable { user_instances, .. } = &mut err
                && socket.source == Source::System
            {
                // Chosen by default (as root, or with no user socket of ours): say where a
                // user instance answers, if one does.
                *user_instances = crate::socket::listening_user_sockets(
                    &SocketEnv::from_process(),
                    Path::new(RUN_USER),
                    |p| UnixStream::connect(p).is_ok(),
                );
            }
            err
        })?;
        let reader = stream.try_clone().map_err(|e| CtlError::Lost {
            path: socket.path.clone(),
            source: e,
        })?;
        Ok(Client::from_parts(
            socket.path.clone(),
            socket.user_mode,
            Box::new(reader),
            Box::new(stream),
        ))
    }

    /// A client over any reader and writer (tests use socket pairs and recording writers).
    pub fn from_parts(
        path: PathBuf,
        user_mode: bool,
        reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
    ) -> Client {
        Client {
            path,
            user_mode,
            reader,
            decoder: LineDecoder::new(usize::MAX),
            writer,
            next_id: 1,
            early: HashMap::new(),
            line: Vec::new(),
        }
    }

    fn lost(&self, e: io::Error) -> CtlError {
        CtlError::Lost {
            path: self.path.clone(),
            source: e,
        }
    }

    /// Writes all `requests` with fresh ids in a single write; returns their ids.
    pub fn send(&mut self, requests: &[Request]) -> Result<Vec<u64>, CtlError> {
        let mut buf = Vec::new();
        let mut ids = Vec::with_capacity(requests.len());
        for r in requests {
            let id = self.next_id;
            self.next_id += 1;
            let (method, params) = r.encode();
            let line = json!({ "jsonrpc": JSONRPC, "id": id, "method": method, "params": params });
            serde_json::to_writer(&mut buf, &line)
                .map_err(|e| CtlError::BadReply(format!("cannot encode request: {e}")))?;
            buf.push(b'\n');
            ids.push(id);
        }
        self.writer
            .write_all(&buf)
            .and_then(|()| self.writer.flush())
            .map_err(|e| {
                // The daemon closing its end while we write is the same as closing before
                // answering; EPIPE/ECONNRESET say nothing more useful.
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) {
                    CtlError::Closed {
                        path: self.path.clone(),
                        user_mode: self.user_mode,
                    }
                } else {
                    self.lost(e)
                }
            })?;
        Ok(ids)
    }

    /// Reads the next non-empty line into `self.line` and returns it trimmed, as text;
    /// `None` at end of stream.
    fn read_line(&mut self) -> Result<Option<&str>, CtlError> {
        loop {
            while !self.decoder.has_line() {
                let buf = self.decoder.read_buf(READ_CHUNK);
                match self.reader.read(buf) {
                    // A line cut off by EOF is as good as none.
                    Ok(0) => return Ok(None),
                    Ok(n) => self.decoder.filled(n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                        return Err(CtlError::Closed {
                            path: self.path.clone(),
                            user_mode: self.user_mode,
                        });
                    }
                    Err(e) => return Err(self.lost(e)),
                }
            }
            self.line.clear();
            match self.decoder.decode() {
                Some(Frame::Line(l)) => self.line.extend_from_slice(l.trim_ascii()),
                // Unreachable without a limit; a line that is not there is no message.
                Some(Frame::TooLong(_)) | None => continue,
            }
            if self.line.is_empty() {
                continue;
            }
            let text = std::str::from_utf8(&self.line)
                .map_err(|e| CtlError::BadReply(format!("reply is not UTF-8: {e}")))?;
            return Ok(Some(text));
        }
    }

    /// Reads one message; `None` at end of stream.
    fn read_incoming(&mut self) -> Result<Option<Incoming>, CtlError> {
        let Some(text) = self.read_line()? else {
            return Ok(None);
        };
        Incoming::parse(text)
            .map(Some)
            .map_err(|e| CtlError::BadReply(format!("{e}: {}", abbreviate(text))))
    }

    /// Reads until the reply with `id` arrives, giving notifications to `on_note` and
    /// keeping replies to other ids for later.
    pub fn wait(
        &mut self,
        id: u64,
        on_note: &mut dyn FnMut(Notification) -> Result<(), CtlError>,
    ) -> Result<Response, CtlError> {
        if let Some(r) = self.early.remove(&id) {
            return Ok(r);
        }
        loop {
            match self.read_incoming()? {
                None => {
                    return Err(CtlError::Closed {
                        path: self.path.clone(),
                        user_mode: self.user_mode,
                    });
                }
                Some(Incoming::Notification(n)) => on_note(n)?,
                Some(Incoming::Response(r)) => match r.id.as_u64() {
                    Some(got) if got == id => return Ok(r),
                    Some(other) => {
                        self.early.insert(other, r);
                    }
                    // A reply without a usable id (the daemon could not read our request):
                    // if it is an error, it is the answer to whatever we wait for.
                    None => match r.error {
                        Some(e) => return Err(CtlError::Daemon(e)),
                        None => {
                            return Err(CtlError::BadReply(format!(
                                "reply with id {} to no request",
                                r.id
                            )));
                        }
                    },
                },
            }
        }
    }

    /// Sends `hello` plus `requests` in one write, then collects every reply. The first
    /// error reply (hello's first) becomes the error; a protocol mismatch is an error even
    /// when the other replies succeeded.
    pub fn session(
        &mut self,
        requests: Vec<Request>,
        on_note: &mut dyn FnMut(Notification) -> Result<(), CtlError>,
    ) -> Result<Session, CtlError> {
        let hello = Request::Hello(HelloParams {
            protocol: Some(PROTOCOL_VERSION),
            client: Some(CLIENT_NAME.to_owned()),
        });
        let mut all = Vec::with_capacity(requests.len() + 1);
        all.push(hello);
        all.extend(requests);
        let ids = self.send(&all)?;
        // Hello first: if it failed, the other replies mean nothing (and may never come).
        let hello = self
            .wait(ids[0], on_note)?
            .into_result()
            .map_err(CtlError::Daemon)?;
        let hello: HelloResult = decode(hello)?;
        if hello.protocol != PROTOCOL_VERSION {
            return Err(CtlError::ProtocolMismatch {
                path: self.path.clone(),
                daemon: hello.protocol,
                daemon_version: hello.daemon,
                client: PROTOCOL_VERSION,
            });
        }
        let mut replies = Vec::with_capacity(ids.len() - 1);
        for &id in &ids[1..] {
            replies.push(self.wait(id, on_note)?.into_result());
        }
        let results = replies
            .into_iter()
            .collect::<Result<Vec<Value>, RpcError>>()
            .map_err(CtlError::Daemon)?;
        Ok(Session { hello, results })
    }

    /// True when a whole message has already been received: the next read will not wait
    /// for the daemon. Streams flush their output when this is false.
    pub fn has_buffered_message(&self) -> bool {
        self.decoder.has_line()
    }

    /// The next notification of a stream; the daemon closing the connection is
    /// [`CtlError::StreamEnded`]. A stray reply is skipped. Its params stay unparsed text
    /// until the caller knows what they are (a follower decodes one per line, and a
    /// `serde_json::Value` tree in between cost more than the decoding itself).
    pub fn next_notification(&mut self) -> Result<RawNotification, CtlError> {
        loop {
            let Some(text) = self.read_line()? else {
                return Err(CtlError::StreamEnded {
                    path: self.path.clone(),
                });
            };
            let e: RawEnvelope = serde_json::from_str(text)
                .map_err(|e| CtlError::BadReply(format!("{e}: {}", abbreviate(text))))?;
            if let Some(method) = e.method {
                return Ok(RawNotification {
                    method,
                    params: e.params,
                });
            }
        }
    }
}

/// A notification as read from the stream, its params not yet decoded.
#[derive(Debug)]
pub struct RawNotification {
    pub method: String,
    pub params: Option<Box<RawValue>>,
}

impl RawNotification {
    /// The params as the type of its method.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, CtlError> {
        let text = self.params.as_deref().map_or("null", RawValue::get);
        serde_json::from_str(text).map_err(|e| CtlError::BadReply(e.to_string()))
    }
}

impl From<Notification> for RawNotification {
    fn from(n: Notification) -> RawNotification {
        RawNotification {
            method: n.method,
            params: serde_json::value::to_raw_value(&n.params).ok(),
        }
    }
}

/// What a notification needs to be told from a reply (which has no method).
#[derive(serde::Deserialize)]
struct RawEnvelope {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Box<RawValue>>,
}

/// A result value as the typed result of its method.
pub fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CtlError> {
    serde_json::from_value(v).map_err(|e| CtlError::BadReply(e.to_string()))
}

fn abbreviate(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;
    use crate::socket::Source;
    use brummer_proto::methods::{Selector, StatusResult};
    use brummer_proto::{ErrorCode, RpcError};
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};
    use std::thread;

    fn hello_result(protocol: u32) -> Value {
        json!({"protocol": protocol, "daemon": "brummerd 0.1.0", "mode": "user", "pid": 42,
               "can_write": true})
    }

    fn reply(id: u64, result: Value) -> String {
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": id, "result": result})
        )
    }

    fn noop() -> impl FnMut(Notification) -> Result<(), CtlError> {
        |_| Ok(())
    }

    /// A temp directory removed on drop (no tempfile dependency for one use).
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "brummerctl-test-{tag}-{}-{:?}",
                std::process::id(),
                thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A fake daemon on a real socket path: reads the first `expect` request lines, hands
    /// them to `answer`, writes what it returns, then closes.
    fn fake_daemon(
        dir: &TempDir,
        expect: usize,
        answer: impl FnOnce(Vec<Value>) -> String + Send + 'static,
    ) -> (SocketChoice, thread::JoinHandle<Vec<Value>>) {
        let path = dir.0.join("brummer.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut reqs = Vec::new();
            for _ in 0..expect {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                reqs.push(serde_json::from_str::<Value>(&line).unwrap());
            }
            let mut w = stream;
            w.write_all(answer(reqs.clone()).as_bytes()).unwrap();
            reqs
        });
        let choice = SocketChoice {
            path,
            source: Source::Flag,
            user_mode: false,
        };
        (choice, handle)
    }

    #[test]
    fn pipelined_hello_and_request_over_a_real_socket() {
        let dir = TempDir::new("pipeline");
        let (sock, server) = fake_daemon(&dir, 2, |reqs| {
            let h = reqs[0]["id"].as_u64().unwrap();
            let s = reqs[1]["id"].as_u64().unwrap();
            // Out of order: the status reply first.
            reply(s, json!({"processes": []})) + &reply(h, hello_result(1))
        });
        let mut c = Client::connect(&sock).unwrap();
        let session = c
            .session(vec![Request::Status(Selector::names(["web"]))], &mut noop())
            .unwrap();
        assert_eq!(session.hello.pid, 42);
        let st: StatusResult = decode(session.results[0].clone()).unwrap();
        assert!(st.processes.is_empty());

        let reqs = server.join().unwrap();
        assert_eq!(reqs[0]["method"], "hello");
        assert_eq!(reqs[0]["params"]["protocol"], 1);
        assert_eq!(reqs[0]["params"]["client"], CLIENT_NAME);
        assert_eq!(reqs[1]["method"], "status");
        assert_eq!(reqs[1]["params"], json!({"names": ["web"]}));
        assert_eq!(reqs[0]["jsonrpc"], "2.0");
        assert!(reqs[1]["id"].as_u64() > reqs[0]["id"].as_u64());
    }

    /// Records each write call, to prove the batch goes out in one write.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);
    impl Write for Recorder {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn canned(replies: String, rec: Recorder) -> Client {
        Client::from_parts(
            "/test.sock".into(),
            false,
            Box::new(io::Cursor::new(replies.into_bytes())),
            Box::new(rec),
        )
    }

    #[test]
    fn hello_and_request_go_out_in_one_write() {
        let rec = Recorder::default();
        let replies = reply(1, hello_result(1)) + &reply(2, json!({"processes": []}));
        let mut c = canned(replies, rec.clone());
        c.session(vec![Request::Status(Selector::default())], &mut noop())
            .unwrap();
        let writes = rec.0.lock().unwrap();
        assert_eq!(writes.len(), 1, "one write for hello + request");
        let text = String::from_utf8(writes[0].clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["method"], "hello");
        assert_eq!(lines[0]["id"], 1);
        assert_eq!(lines[1]["method"], "status");
        assert_eq!(lines[1]["id"], 2);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn notifications_go_to_the_callback_while_waiting() {
        let note = |i: u64| {
            format!(
                "{}\n",
                json!({"jsonrpc": "2.0", "method": "log", "params": {"subscription": 1, "n": i}})
            )
        };
        let replies = note(0)
            + &reply(1, hello_result(1))
            + "\n"
            + &note(1)
            + &reply(2, json!({"subscription": 1}))
            + &note(2);
        let mut c = canned(replies, Recorder::default());
        let mut seen = Vec::new();
        let s = c
            .session(
                vec![Request::Follow(Default::default())],
                &mut |n: Notification| {
                    seen.push(n.params["n"].as_u64().unwrap());
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(s.results[0]["subscription"], 1);
        assert_eq!(seen, [0, 1]);
        let n = c.next_notification().unwrap();
        assert_eq!(n.decode::<Value>().unwrap()["n"], 2);
        // Then the daemon goes away.
        let e = c.next_notification().unwrap_err();
        assert!(matches!(e, CtlError::StreamEnded { .. }), "{e:?}");
        assert_eq!(e.exit_code(), exit::UNREACHABLE);
    }

    #[test]
    fn a_callback_error_stops_the_wait() {
        let replies = format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "method": "log", "params": {}})
        ) + &reply(1, hello_result(1));
        let mut c = canned(replies, Recorder::default());
        let e = c
            .session(vec![], &mut |_| {
                Err(CtlError::Output(io::ErrorKind::BrokenPipe.into()))
            })
            .unwrap_err();
        assert!(e.is_broken_pipe());
    }

    #[test]
    fn error_reply_maps_to_its_exit_code() {
        let err = RpcError::no_such_process("wbe", Some("web"));
        let replies = reply(1, hello_result(1))
            + &format!(
                "{}\n",
                serde_json::to_string(&Response::err(Some(2.into()), err)).unwrap()
            );
        let mut c = canned(replies, Recorder::default());
        let e = c
            .session(vec![Request::Start(Selector::names(["wbe"]))], &mut noop())
            .unwrap_err();
        assert_eq!(e.exit_code(), exit::NOT_FOUND);
        assert_eq!(
            e.to_string(),
            r#"no process named "wbe" (did you mean "web"?)"#
        );

        let err = RpcError::new(
            ErrorCode::PermissionDenied,
            "uid 1001 may not start processes",
        );
        let replies = reply(1, hello_result(1))
            + &serde_json::to_string(&Response::err(Some(2.into()), err)).unwrap()
            + "\n";
        let mut c = canned(replies, Recorder::default());
        let e = c.session(vec![Request::Reload], &mut noop()).unwrap_err();
        assert_eq!(e.exit_code(), exit::PERMISSION_DENIED);
    }

    #[test]
    fn eof_mid_request_is_unreachable() {
        // Hello answered, then the connection closes (one reply cut off mid-line).
        let replies = reply(1, hello_result(1)) + r#"{"jsonrpc":"2.0","id":2,"res"#;
        let mut c = canned(replies, Recorder::default());
        let e = c
            .session(vec![Request::Status(Selector::default())], &mut noop())
            .unwrap_err();
        assert!(matches!(e, CtlError::Closed { .. }), "{e:?}");
        assert_eq!(e.exit_code(), exit::UNREACHABLE);
        assert!(
            e.to_string()
                .contains("closed the connection before answering")
        );
    }

    #[test]
    fn eof_over_a_real_socket_is_unreachable() {
        let dir = TempDir::new("eof");
        let (sock, server) = fake_daemon(&dir, 2, |_| String::new());
        let mut c = Client::connect(&sock).unwrap();
        let e = c.session(vec![Request::Reload], &mut noop()).unwrap_err();
        server.join().unwrap();
        assert_eq!(e.exit_code(), exit::UNREACHABLE, "{e:?}");
    }

    #[test]
    fn protocol_mismatch_fails_clearly() {
        let replies = reply(1, hello_result(2)) + &reply(2, json!({}));
        let mut c = canned(replies, Recorder::default());
        let e = c.session(vec![Request::Reload], &mut noop()).unwrap_err();
        assert!(matches!(e, CtlError::ProtocolMismatch { daemon: 2, .. }));
        assert!(e.to_string().contains("speaks protocol 2"), "{e}");
        assert_eq!(e.exit_code(), exit::FAILED);
    }

    #[test]
    fn garbage_is_a_bad_reply() {
        let mut c = canned("this is not json\n".into(), Recorder::default());
        let e = c.session(vec![], &mut noop()).unwrap_err();
        assert!(matches!(e, CtlError::BadReply(_)), "{e:?}");
    }

    #[test]
    fn null_id_error_answers_the_wait() {
        let err = RpcError::new(ErrorCode::ParseError, "request is not JSON");
        let replies = serde_json::to_string(&Response::err(None, err)).unwrap() + "\n";
        let mut c = canned(replies, Recorder::default());
        let e = c.session(vec![], &mut noop()).unwrap_err();
        assert!(matches!(e, CtlError::Daemon(_)));
    }

    #[test]
    fn connect_errors_are_classified() {
        let p = Path::new("/x.sock");
        let e = connect_error(p, true, io::Error::from_raw_os_error(libc::ENOENT));
        assert!(matches!(
            e,
            CtlError::Unreachable {
                user_mode: true,
                ..
            }
        ));
        let e = connect_error(p, false, io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(e.exit_code(), exit::UNREACHABLE);
        let e = connect_error(p, false, io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(e, CtlError::PermissionDenied { .. }));
        assert_eq!(e.exit_code(), exit::PERMISSION_DENIED);
        let e = connect_error(p, false, io::Error::from_raw_os_error(libc::EINVAL));
        assert!(matches!(e, CtlError::Connect { .. }));
    }

    #[test]
    fn connecting_to_nothing_or_a_dead_socket_is_unreachable() {
        let dir = TempDir::new("dead");
        let missing = SocketChoice {
            path: dir.0.join("missing.sock"),
            source: Source::Flag,
            user_mode: false,
        };
        let e = Client::connect(&missing).err().unwrap();
        assert!(matches!(e, CtlError::Unreachable { .. }), "{e:?}");
        // A socket file nobody listens on any more: ECONNREFUSED.
        let stale = dir.0.join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let e = Client::connect(&SocketChoice {
            path: stale,
            source: Source::Flag,
            user_mode: false,
        })
        .err()
        .unwrap();
        assert!(matches!(e, CtlError::Unreachable { .. }), "{e:?}");
    }
}
