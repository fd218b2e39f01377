//! Newline framing with a length limit: a line longer than `MAX_LINE` is reported once and
//! skipped up to the next newline, so the connection resynchronises instead of buffering
//! without bound or dying.

use tokio::io::{AsyncRead, AsyncReadExt};

pub enum Frame {
    Line(Vec<u8>),
    TooLong(usize),
}

pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// Discarding an oversized line until its newline; counts the bytes dropped.
    skipping: Option<usize>,
    limit: usize,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(4096),
            pos: 0,
            skipping: None,
            limit,
            eof: false,
        }
    }

    /// Next complete line (without `\n`, trailing `\r` kept), a too-long marker, or `None`
    /// at end of stream. A final line without newline is still returned.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            let pending = &self.buf[self.pos..];
            if let Some(i) = memchr::memchr(b'\n', pending) {
                let start = self.pos;
                self.pos += i + 1;
                if let Some(dropped) = self.skipping.take() {
                    return Ok(Some(Frame::TooLong(dropped + i)));
                }
                if i > self.limit {
                    return Ok(Some(Frame::TooLong(i)));
                }
                return Ok(Some(Frame::Line(self.buf[start..start + i].to_vec())));
            }
            // No newline in what we have.
            if pending.len() > self.limit || self.skipping.is_some() {
                let n = pending.len();
                self.skipping = Some(self.skipping.unwrap_or(0) + n);
                self.pos += n;
            }
            if self.eof {
                if let Some(dropped) = self.skipping.take() {
                    return Ok(Some(Frame::TooLong(dropped)));
                }
                let rest = &self.buf[self.pos..];
                if rest.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                let line = rest.to_vec();
                self.pos = self.buf.len();
                return Ok(Some(Frame::Line(line)));
            }
            // Compact, then read more.
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            // read_buf only appends what was read: cancel-safe, unlike a pre-sized buffer.
            self.buf.reserve(64 * 1024);
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                self.eof = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], limit: usize) -> Vec<String> {
        let mut r = LineReader::new(input, limit);
        let mut out = vec![];
        while let Some(f) = r.next().await.unwrap() {
            out.push(match f {
                Frame::Line(l) => String::from_utf8(l).unwrap(),
                Frame::TooLong(n) => format!("<{n}>"),
            });
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_skips_oversized_ones() {
        assert_eq!(frames(b"a\nbb\n", 10).await, vec!["a", "bb"]);
        assert_eq!(frames(b"a\nbb", 10).await, vec!["a", "bb"]);
        let mut long = vec![b'x'; 200_000];
        long.extend_from_slice(b"\nok\n");
        assert_eq!(frames(&long, 1000).await, vec!["<200000>", "ok"]);
        assert_eq!(frames(b"12345678901\nok\n", 10).await, vec!["<11>", "ok"]);
        assert_eq!(frames(b"1234567890\n", 10).await, vec!["1234567890"]);
    }
}
