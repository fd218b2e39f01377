//! Fuzz target `control`: bytes a client sends on the control socket, through the daemon's
//! read loop (`control::framing::LineReader` over brummer-proto's `LineDecoder`) and
//! request parsing (`control::connection::parse`: JSON-RPC envelope, method, params).
//!
//! The input picks a line limit (the real `MAX_LINE` or a tiny one, so that over-long
//! lines are common), how the bytes arrive (read sizes, reads that are not ready and
//! `next()` futures dropped meanwhile), then the byte stream. Checks:
//!
//! - framing: the frames are those of a plain model (split at `\n`; a line over the limit
//!   reported once with its length; a last unterminated line unless blank), whatever the
//!   read sizes, through the async reader and through the decoder fed by `push`;
//! - parsing: a request decodes to a `Request` whose `encode` decodes back to itself; an
//!   answered line gets an error with a known code, echoing the request's `id` when it had
//!   one, serialised as one line that a client (`Incoming::parse`) reads back as that
//!   reply; nothing else is skipped than blank lines and notifications.

use super::input::Input;
use crate::control::connection::{Next, parse};
use crate::control::framing::{Frame, LineReader};
use brummer_proto::MAX_LINE;
use brummer_proto::codec::{self, LineDecoder};
use brummer_proto::methods::Request;
use brummer_proto::rpc::Incoming;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

/// Frames as comparable values: a line's bytes, or a too-long marker with its length.
#[derive(Debug, Clone, PartialEq, Eq)]
enum F {
    Line(Vec<u8>),
    TooLong(usize),
}

pub fn control(data: &[u8]) {
    let mut input = Input::new(data);
    let limit = if input.bool() {
        MAX_LINE
    } else {
        input.upto(64) as usize
    };
    let sizes: Vec<usize> = (0..input.upto(7) + 1)
        .map(|_| input.upto(255) as usize + 1)
        .collect();
    let pending_every = input.upto(7) as usize;
    let cancel = input.bool();
    let stream = input.rest();

    let want = model(stream, limit);
    let got = through_reader(stream, limit, &sizes, pending_every, cancel);
    assert_eq!(got, want, "LineReader, limit {limit}, reads of {sizes:?}");
    for size in [1, 7, sizes[0]] {
        assert_eq!(
            through_decoder(stream, limit, size),
            want,
            "LineDecoder, limit {limit}, pushes of {size}"
        );
    }
    for f in got {
        check_parse(f);
    }
}

/// The framing rules, written plainly.
fn model(stream: &[u8], limit: usize) -> Vec<F> {
    let mut out = Vec::new();
    let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let tail = parts.pop().unwrap_or_default();
    for line in parts {
        out.push(if line.len() > limit {
            F::TooLong(line.len())
        } else {
            F::Line(line.to_vec())
        });
    }
    if tail.len() > limit {
        out.push(F::TooLong(tail.len()));
    } else if !tail.iter().all(u8::is_ascii_whitespace) {
        out.push(F::Line(tail.to_vec()));
    }
    out
}

fn through_decoder(stream: &[u8], limit: usize, size: usize) -> Vec<F> {
    let own = |f: codec::Frame<'_>| match f {
        codec::Frame::Line(l) => F::Line(l.to_vec()),
        codec::Frame::TooLong(n) => F::TooLong(n),
    };
    let mut dec = LineDecoder::new(limit);
    let mut out = Vec::new();
    for piece in stream.chunks(size.max(1)) {
        // Room asked for is sometimes more, sometimes exactly what arrives.
        let room = dec.read_buf(piece.len() + size % 3);
        room[..piece.len()].copy_from_slice(piece);
        dec.filled(piece.len());
        while let Some(f) = dec.decode() {
            out.push(own(f));
        }
    }
    while let Some(f) = dec.finish() {
        out.push(own(f));
    }
    out
}

/// A client that sends `data` in reads of the given sizes, not ready every
/// `pending_every + 1`-th time (0: always ready; never twice in a row).
struct Client<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    reads: usize,
    pending_every: usize,
}

impl AsyncRead for Client<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.reads += 1;
        if self.pending_every > 0 && self.reads.is_multiple_of(self.pending_every + 1) {
            return Poll::Pending;
        }
        let size = self.sizes[self.reads % self.sizes.len()];
        let n = size.min(self.data.len()).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}

fn through_reader(
    stream: &[u8],
    limit: usize,
    sizes: &[usize],
    pending_every: usize,
    cancel: bool,
) -> Vec<F> {
    let client = Client {
        data: stream,
        sizes,
        reads: 0,
        pending_every,
    };
    let mut reader = LineReader::new(client, limit);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        let mut next = Box::pin(reader.next());
        let polled = loop {
            match next.as_mut().poll(&mut cx) {
                Poll::Ready(r) => break Some(r),
                // A select! that chose another branch drops the read and calls again.
                Poll::Pending if cancel => break None,
                Poll::Pending => {}
            }
        };
        drop(next);
        match polled {
            None => continue,
            Some(Ok(Some(Frame::Line(l)))) => out.push(F::Line(l)),
            Some(Ok(Some(Frame::TooLong(n)))) => out.push(F::TooLong(n)),
            Some(Ok(None)) => return out,
            Some(Err(e)) => panic!("the reader failed: {e}"),
        }
    }
}

fn check_parse(f: F) {
    let (frame, line) = match f {
        F::Line(l) => (Frame::Line(l.clone()), Some(l)),
        F::TooLong(n) => (Frame::TooLong(n), None),
    };
    // The id a reply must carry: the request's, when the line is a JSON object with one.
    let id = line
        .as_deref()
        .and_then(|l| serde_json::from_slice::<Value>(l).ok())
        .filter(Value::is_object)
        .and_then(|v| v.get("id").cloned());
    match parse(frame) {
        Next::Request(rid, req) => {
            assert_eq!(rid, id, "request id");
            let (method, params) = req.encode();
            let back = Request::decode(method, Some(params));
            assert_eq!(back.as_ref(), Ok(&req), "{req:?} does not round-trip");
        }
        Next::Answer(resp) => {
            let e = resp
                .error
                .as_ref()
                .expect("an answer to a bad line is an error");
            assert!(resp.result.is_none());
            assert!(e.kind().is_some(), "unknown error code {}", e.code);
            assert_eq!(resp.id, id.unwrap_or(Value::Null), "reply id");
            let text = serde_json::to_string(&resp).expect("a reply serialises");
            assert!(!text.contains('\n'), "a reply is one line: {text:?}");
            match Incoming::parse(&text) {
                Ok(Incoming::Response(r)) => assert_eq!(r, resp),
                other => panic!("a client reads {text:?} as {other:?}"),
            }
        }
        Next::Skip => {
            let line = line.expect("a too-long line is answered");
            let blank = line.iter().all(u8::is_ascii_whitespace);
            assert!(blank || id.is_none(), "a request with an id got no answer");
        }
    }
}
