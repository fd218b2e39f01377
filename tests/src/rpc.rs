//! A raw JSON-RPC client over brummerd's socket, for protocol-level tests.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Rpc {
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Rpc {
    pub fn connect(path: &Path) -> Rpc {
        let stream = UnixStream::connect(path).expect("connect to brummerd");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Rpc {
            stream,
            reader,
            next_id: 1,
        }
    }

    /// Sends raw bytes (a line, or garbage).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one line (waiting at most 30 s) and parses it as JSON.
    pub fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("read from brummerd");
        assert!(n > 0, "brummerd closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// Calls `subscribe` and returns the subscription's `result` (subscription, seq).
    pub fn subscribe(&mut self) -> Value {
        let r = self.call("subscribe", serde_json::json!({}));
        assert!(
            r["result"]["subscription"].is_u64(),
            "subscribe failed: {r}"
        );
        r["result"].clone()
    }

    /// Reads the next notification (a line without `id`), waiting at most `timeout`;
    /// None when nothing arrived in time.
    pub fn next_notification(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!("brummerd closed the connection"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("read from brummerd: {e}"),
            }
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            if v.get("id").is_none() {
                return Some(v);
            }
        }
    }

    /// The `params` of the next `log` notification; panics when none comes within `timeout`.
    pub fn next_log(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = self
                .next_notification(left)
                .unwrap_or_else(|| panic!("no log notification within {timeout:?}"));
            if n["method"] == "log" {
                return n["params"].clone();
            }
        }
    }

    /// Sends a request and returns the response with its id (skipping notifications).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut line = serde_json::to_vec(&req).expect("json");
        line.push(b'\n');
        self.send_raw(&line);
        loop {
            let v = self.read();
            if v.get("id") == Some(&Value::from(id)) {
                return v;
            }
        }
    }
}
