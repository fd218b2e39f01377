//! The control socket's read loop: bytes from the client into brummer-proto's
//! [`LineDecoder`], which owns the framing rules (newline-terminated lines, a line over the
//! limit reported once and skipped up to the next newline, so the connection resynchronises
//! instead of buffering without bound or dying).

use brummer_proto::codec::{self, LineDecoder};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes asked of each read from the client.
const READ_CHUNK: usize = 64 * 1024;

pub enum Frame {
    Line(Vec<u8>),
    TooLong(usize),
}

impl From<codec::Frame<'_>> for Frame {
    fn from(f: codec::Frame<'_>) -> Frame {
        match f {
            codec::Frame::Line(l) => Frame::Line(l.to_vec()),
            codec::Frame::TooLong(n) => Frame::TooLong(n),
        }
    }
}

pub struct LineReader<R> {
    inner: R,
    decoder: LineDecoder,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            decoder: LineDecoder::new(limit),
            eof: false,
        }
    }

    /// Next complete line (without `\n`, trailing `\r` kept), a too-long marker, or `None`
    /// at end of stream. A final line without newline is still returned. Cancel-safe: the
    /// decoder counts bytes as received only once a read has returned them.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some(f) = self.decoder.decode() {
                return Ok(Some(f.into()));
            }
            if self.eof {
                return Ok(self.decoder.finish().map(Frame::from));
            }
            let n = self.inner.read(self.decoder.read_buf(READ_CHUNK)).await?;
            if n == 0 {
                self.eof = true;
            } else {
                self.decoder.filled(n);
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
