//! The opt-in HTTP listener a Prometheus scrape reads (`[daemon] metrics_listen`, off by
//! default): `GET /metrics` answers the text of `ops::metrics`, the same as the socket's
//! `metrics` method. One request per connection (`Connection: close`), a bounded request
//! head read under a deadline, and a bounded number of connections at once: a client that
//! sends nothing, or too much, costs one slot for a few seconds and nothing else. It
//! listens where the administrator says, loopback in the documented example; what it
//! shows is what `brummerctl status` shows anyone allowed on the socket, so a wider
//! address is the administrator's decision.

use crate::ops;
use crate::state::State;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connections served at once; more are closed at accept (counted and logged).
const MAX_CONNECTIONS: usize = 16;
/// Largest request head read (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head, and to take the answer.
const DEADLINE: Duration = Duration::from_secs(5);

/// Binds `addr` and serves until the state's shutdown token ends the loop.
pub fn serve(state: Arc<State>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std)?;
    let bound = listener.local_addr()?;
    let tasks = state.shutdown().clone();
    tasks.spawn(accept(state, listener));
    Ok(bound)
}

async fn accept(state: Arc<State>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut refused: u64 = 0;
    let mut failing: u64 = 0;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Logged when a run of failures begins and when it ends, not 20 times a
                // second (out of descriptors, every retry fails).
                if failing == 0 {
                    tracing::warn!(cause = %e, "metrics listener: accept failed; retrying every 50 ms");
                }
                failing += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if failing > 0 {
            tracing::warn!(failed = failing, "metrics listener: accepting again");
            failing = 0;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            // The first and then every 100th: a flood of clients must not flood the log.
            if refused % 100 == 1 {
                tracing::warn!(
                    refused,
                    limit = MAX_CONNECTIONS,
                    "metrics listener: too many connections at once; closing new ones"
                );
            }
            continue;
        };
        let state = state.clone();
        state.shutdown().clone().spawn(async move {
            let _ = tokio::time::timeout(DEADLINE, exchange(&state, stream)).await;
            drop(slot);
        });
    }
}

/// Reads one request head and writes its answer.
async fn exchange(state: &State, mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break false;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if memchr::memmem::find(&head, b"\r\n\r\n").is_some() {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
    };
    let answer = if complete {
        answer(state, &head)
    } else {
        Answer::text(
            400,
            "Bad Request",
            "bad request: expected an HTTP/1.x request head\n",
        )
    };
    stream.write_all(&answer.bytes()).await?;
    stream.shutdown().await
}

struct Answer {
    code: u16,
    reason: &'static str,
    content_type: &'static str,
    extra: &'static str,
    body: String,
    head_only: bool,
}

impl Answer {
    fn text(code: u16, reason: &'static str, body: &str) -> Answer {
        Answer {
            code,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra: "",
            body: body.to_owned(),
            head_only: false,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
            self.code,
            self.reason,
            self.content_type,
            self.body.len(),
            self.extra
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// The answer to a complete request head.
fn answer(state: &State, head: &[u8]) -> Answer {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Answer::text(400, "Bad Request", "bad request: malformed request line\n");
    };
    if !version.starts_with(b"HTTP/1.") {
        return Answer::text(400, "Bad Request", "bad request: only HTTP/1.x is served\n");
    }
    let head_only = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => {
            let mut a = Answer::text(
                405,
                "Method Not Allowed",
                "method not allowed: use GET /metrics\n",
            );
            a.extra = "Allow: GET, HEAD\r\n";
            return a;
        }
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let mut a = if path == b"/metrics" {
        Answer {
            code: 200,
            reason: "OK",
            content_type: ops::metrics::CONTENT_TYPE,
            extra: "",
            body: ops::metrics::render(state),
            head_only: false,
        }
    } else {
        Answer::text(404, "Not Found", "not found: brummerd serves /metrics\n")
    };
    a.head_only = head_only;
    a
}
