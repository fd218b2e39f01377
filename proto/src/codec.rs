//! The socket's framing: one message per `\n`-terminated line, cut out of a byte stream by
//! [`LineDecoder`] without any I/O, so that the daemon's async read loop and brummerctl's
//! blocking one share every framing rule and only read bytes into it.
//!
//! A line longer than the decoder's limit is never buffered whole: its bytes are dropped as
//! they arrive and it comes out once as [`Frame::TooLong`], after which decoding resumes at
//! the next newline (the daemon answers it with [`ErrorCode::RequestTooLarge`] and the
//! connection stays usable).
//!
//! ```
//! use brummer_proto::codec::{Frame, LineDecoder};
//!
//! let mut dec = LineDecoder::new(8);
//! // Bytes arrive in any pieces; a read loop would `read` into `dec.read_buf(..)` and call
//! // `dec.filled(n)` instead of copying through `push`.
//! dec.push(b"{\"id\":1}\n{\"id\"");
//! assert_eq!(dec.decode(), Some(Frame::Line(b"{\"id\":1}")));
//! assert_eq!(dec.decode(), None); // half a line: read more
//! dec.push(b":2}\nthis line is too long\nok");
//! assert_eq!(dec.decode(), Some(Frame::Line(b"{\"id\":2}")));
//! assert_eq!(dec.decode(), Some(Frame::TooLong(21)));
//! assert_eq!(dec.decode(), None);
//! // End of stream: what is left is the last line.
//! assert_eq!(dec.finish(), Some(Frame::Line(b"ok")));
//! assert_eq!(dec.finish(), None);
//! ```
//!
//! [`ErrorCode::RequestTooLarge`]: crate::ErrorCode::RequestTooLarge

/// What the decoder cut out of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One line, without its `\n` (a `\r` before it is kept: JSON ignores it).
    Line(&'a [u8]),
    /// A line over the limit, of this many bytes (without its `\n`), dropped.
    TooLong(usize),
}

/// Splits a byte stream into [`Frame`]s. Bytes go in through [`read_buf`](Self::read_buf) +
/// [`filled`](Self::filled) (a read loop) or [`push`](Self::push); frames come out of
/// [`decode`](Self::decode), and out of [`finish`](Self::finish) once the stream has ended.
#[derive(Debug)]
pub struct LineDecoder {
    /// Storage, all initialised; the bytes `start..end` are received and not yet framed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How many bytes from `start` are known to hold no `\n`, so that a long line arriving
    /// in many reads is searched once, not once per read.
    searched: usize,
    /// Dropping a line over the limit until its `\n`: the bytes dropped so far.
    skipping: Option<usize>,
    limit: usize,
}

impl LineDecoder {
    /// A decoder that reports lines longer than `limit` bytes as [`Frame::TooLong`]
    /// (`usize::MAX`: no limit).
    pub fn new(limit: usize) -> LineDecoder {
        LineDecoder {
            buf: Vec::new(),
            start: 0,
            end: 0,
            searched: 0,
            skipping: None,
            limit,
        }
    }

    /// Room for at least `min` more bytes: read into it, then call [`filled`](Self::filled)
    /// with the count. Nothing counts as received before that, so a read abandoned midway
    /// (a cancelled future) loses nothing.
    pub fn read_buf(&mut self, min: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.buf.len() - self.end < min {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < min {
            let want = (self.end + min).max(self.buf.capacity());
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Counts `n` bytes written at the front of the last [`read_buf`](Self::read_buf) as
    /// received.
    ///
    /// # Panics
    ///
    /// If `n` is more than that buffer held.
    pub fn filled(&mut self, n: usize) {
        assert!(
            n <= self.buf.len() - self.end,
            "filled({n}) beyond the read buffer"
        );
        self.end += n;
    }

    /// Appends received bytes (a copy; read loops use `read_buf`).
    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.read_buf(bytes.len());
        room[..bytes.len()].copy_from_slice(bytes);
        self.filled(bytes.len());
    }

    /// True when a whole line is received and not yet taken: [`decode`](Self::decode) will
    /// return a frame without more bytes.
    pub fn has_line(&self) -> bool {
        memchr::memchr(b'\n', &self.buf[self.start + self.searched..self.end]).is_some()
    }

    /// The next frame, or `None` until more bytes arrive.
    pub fn decode(&mut self) -> Option<Frame<'_>> {
        let from = self.start + self.searched;
        match memchr::memchr(b'\n', &self.buf[from..self.end]) {
            Some(at) => {
                let line = self.start..from + at;
                self.start = from + at + 1;
                self.searched = 0;
                if let Some(dropped) = self.skipping.take() {
                    return Some(Frame::TooLong(dropped + line.len()));
                }
                if line.len() > self.limit {
                    return Some(Frame::TooLong(line.len()));
                }
                Some(Frame::Line(&self.buf[line]))
            }
            None => {
                let pending = self.end - self.start;
                if self.skipping.is_some() || pending > self.limit {
                    // Over the limit already: drop what came, remember how much.
                    self.skipping = Some(self.skipping.unwrap_or(0) + pending);
                    self.start = self.end;
                    self.searched = 0;
                } else {
                    self.searched = pending;
                }
                None
            }
        }
    }

    /// After the stream ended (and [`decode`](Self::decode) returned `None`): the bytes after
    /// the last `\n` as a last line, unless they are only whitespace; the rest of a line
    /// over the limit as [`Frame::TooLong`]; then `None`.
    pub fn finish(&mut self) -> Option<Frame<'_>> {
        let rest = self.start..self.end;
        self.start = self.end;
        self.searched = 0;
        if let Some(dropped) = self.skipping.take() {
            return Some(Frame::TooLong(dropped + rest.len()));
        }
        if rest.len() > self.limit {
            return Some(Frame::TooLong(rest.len()));
        }
        let line = &self.buf[rest];
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(Frame::Line(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame of `input` fed in pieces of `chunk` bytes, then end of stream; lines as
    /// text, a too-long one as `<n>`.
    fn frames(input: &[u8], limit: usize, chunk: usize) -> Vec<String> {
        let mut dec = LineDecoder::new(limit);
        let mut out = vec![];
        let show = |f: Frame<'_>| match f {
            Frame::Line(l) => String::from_utf8(l.to_vec()).unwrap(),
            Frame::TooLong(n) => format!("<{n}>"),
        };
        for piece in input.chunks(chunk.max(1)) {
            dec.push(piece);
            while let Some(f) = dec.decode() {
                out.push(show(f));
            }
        }
        while let Some(f) = dec.finish() {
            out.push(show(f));
        }
        out
    }

    fn every_chunking(input: &[u8], limit: usize) -> Vec<String> {
        let whole = frames(input, limit, input.len());
        for chunk in 1..input.len().min(40) {
            assert_eq!(frames(input, limit, chunk), whole, "chunks of {chunk}");
        }
        whole
    }

    #[test]
    fn splits_lines_however_the_bytes_arrive() {
        assert_eq!(every_chunking(b"a\nbb\n", 10), ["a", "bb"]);
        assert_eq!(every_chunking(b"a\r\n\nbb", 10), ["a\r", "", "bb"]);
        assert_eq!(every_chunking(b"", 10), Vec::<String>::new());
        assert_eq!(every_chunking(b"a\n \r\n\t ", 10), ["a", " \r"]);
    }

    #[test]
    fn a_line_over_the_limit_is_reported_once_and_skipped() {
        assert_eq!(every_chunking(b"12345678901\nok\n", 10), ["<11>", "ok"]);
        assert_eq!(every_chunking(b"1234567890\n", 10), ["1234567890"]);
        assert_eq!(every_chunking(b"x\n12345678901", 10), ["x", "<11>"]);
        assert_eq!(every_chunking(b"1234567890", 10), ["1234567890"]);
        let mut long = vec![b'x'; 200_000];
        long.extend_from_slice(b"\nok\n");
        assert_eq!(frames(&long, 1000, 4096), ["<200000>", "ok"]);
        assert_eq!(frames(&long, 1000, 7), ["<200000>", "ok"]);
    }

    #[test]
    fn an_oversized_line_is_never_buffered_whole() {
        let mut dec = LineDecoder::new(100);
        for _ in 0..1000 {
            dec.push(&[b'x'; 64]);
            assert_eq!(dec.decode(), None);
        }
        assert!(dec.buf.len() < 1000, "buffer grew to {}", dec.buf.len());
        dec.push(b"\n");
        assert_eq!(dec.decode(), Some(Frame::TooLong(64_000)));
    }

    #[test]
    fn read_buf_and_filled_receive_in_place() {
        let mut dec = LineDecoder::new(usize::MAX);
        let room = dec.read_buf(4);
        assert!(room.len() >= 4);
        room[..3].copy_from_slice(b"ab\n");
        // Room handed out but not filled counts for nothing.
        assert!(!dec.has_line());
        dec.filled(3);
        assert!(dec.has_line());
        assert_eq!(dec.decode(), Some(Frame::Line(b"ab")));
        assert!(!dec.has_line());
        assert_eq!(dec.decode(), None);
        assert_eq!(dec.finish(), None);
    }

    #[test]
    fn a_long_line_is_searched_once() {
        let mut dec = LineDecoder::new(usize::MAX);
        for _ in 0..100 {
            dec.push(&[b'y'; 1000]);
            assert_eq!(dec.decode(), None);
            assert_eq!(dec.searched, dec.end - dec.start);
        }
        dec.push(b"z\nnext");
        match dec.decode() {
            Some(Frame::Line(l)) => assert_eq!(l.len(), 100_001),
            other => panic!("{other:?}"),
        }
        assert_eq!(dec.decode(), None);
        assert_eq!(dec.finish(), Some(Frame::Line(b"next")));
    }
}
