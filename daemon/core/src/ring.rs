//! Owns `LogRing`, the per-process in-memory log buffer, `RingWriter`, its only writer, and
//! `RingArena`, the memory of many rings mapped at once.
//!
//! The process's output pump is the single writer (through `RingWriter`, which is not
//! `Clone`); `logs`/`tail -f` requests and log forwarders read concurrently with cursors
//! (sequence numbers). It must never make the writer wait for a reader, never hand a reader a
//! torn line (a line overwritten mid-copy is discarded and counted as missed), and never
//! commit memory for a ring nobody wrote to.
//!
//! Layout: a power-of-two array of `AtomicU64` words addressed by ever-growing word offsets
//! (`offset & mask`). A record holds a run of consecutive lines that share their capture
//! metadata (one read from the program's pipe): `[first_seq][len|stream|piece|lines]
//! [wall_us][mono_ns][pid|gen]`, then the lines as the program wrote them, newlines
//! included, packed little-endian into words, then a trailer word holding the record's
//! total size so readers can walk backwards from the head. A record per run rather than
//! per line keeps the writer at one header and one pass of word stores per read (a
//! record per line cost 48 bytes and 19 stores for each 100-byte line); readers find the
//! lines inside a record with `memchr`. The writer moves `tail` past the records it is
//! about to overwrite and issues a Release fence before writing; a reader copies with
//! Relaxed loads, issues an Acquire fence and re-reads `tail`: any word it read at an
//! offset `>= tail` cannot have been overwritten (seqlock-style validation). All accesses
//! are atomic, so there is no data race even when a copy is discarded.

use crate::sync::{AtomicU64, Ordering, fence, spin_hint};
use brummer_proto::Stream;
use std::sync::Arc;

/// Header words before the payload.
const HDR: u64 = 5;
/// Header plus trailer.
const OVERHEAD: u64 = HDR + 1;
/// 4 KiB.
#[cfg(not(any(brummer_loom, brummer_shuttle)))]
const MIN_WORDS: usize = 512;
/// Under loom/shuttle every word is a modelled atomic, so rings must be tiny to stay
/// explorable (and to wrap after a handful of pushes).
#[cfg(any(brummer_loom, brummer_shuttle))]
const MIN_WORDS: usize = 32;
/// Keeps a mistyped size from asking the allocator for the impossible (64-bit: 32 GiB).
const MAX_WORDS: usize = if usize::BITS >= 64 { 1 << 32 } else { 1 << 24 };
/// A reader that keeps getting overtaken gives up after this many resyncs and returns what
/// it has, with exact accounting, instead of chasing a faster writer forever.
const MAX_RESYNC: u32 = 16;
/// `read_from` validates its copies once per this many records.
const VALIDATE_EVERY: usize = 16;

const LEN_MASK: u64 = 0xffff_ffff;
const STREAM_SHIFT: u32 = 32;
/// The record is one piece of a line longer than `max_payload`, without a newline.
const PIECE_BIT: u64 = 1 << 40;
/// Lines in the record: the top 23 bits (a record holds at most `MAX_LINE + 1` bytes).
const LINES_SHIFT: u32 = 41;

/// Everything about a line except its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineMeta {
    pub seq: u64,
    /// µs since the Unix epoch.
    pub wall_us: u64,
    pub mono_ns: u64,
    pub stream: Stream,
    pub pid: u32,
    pub generation: u32,
    /// The line was split; it continues in the next record.
    pub partial: bool,
}

/// One log record as handed to readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub meta: LineMeta,
    /// Without the newline.
    pub bytes: Vec<u8>,
}

/// What the lines of one push share: where they came from and when they were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub stream: Stream,
    pub pid: u32,
    pub generation: u32,
    /// µs since the Unix epoch.
    pub wall_us: u64,
    pub mono_ns: u64,
}

/// Result of `read_from` besides the lines themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOutcome {
    /// Lines between the requested seq and the first one returned that the ring no longer had.
    pub missed: u64,
    /// Cursor to pass next time.
    pub next_seq: u64,
}

/// All-time counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingStats {
    pub lines: u64,
    /// Bytes pushed, newlines included.
    pub bytes: u64,
    pub evicted: u64,
}

// Keeps the writer's hot counters and the tail readers poll off each other's cache lines
// and off the read-mostly fields.
#[repr(align(128))]
struct Padded<T>(T);

struct HeadSide {
    head: AtomicU64,
    next_seq: AtomicU64,
    bytes: AtomicU64,
}

struct TailSide {
    tail: AtomicU64,
    tail_seq: AtomicU64,
    evicted: AtomicU64,
}

/// Byte-bounded, single-writer, multi-reader log ring.
pub struct LogRing {
    buf: Words,
    mask: u64,
    cap_words: u64,
    max_payload: usize,
    first_seq: u64,
    h: Padded<HeadSide>,
    t: Padded<TailSide>,
}

struct RawHeader {
    /// Seq of the record's first line.
    seq: u64,
    lines: u64,
    len: usize,
    stream: Stream,
    piece: bool,
    wall_us: u64,
    mono_ns: u64,
    pid: u32,
    generation: u32,
    words: u64,
}

/// The ring's word array: an anonymous private mapping, so its pages are zero and cost no
/// RSS until the writer first touches them. (Through the global allocator a 1 MiB
/// `alloc_zeroed` may come from the brk heap once glibc's dynamic mmap threshold has risen,
/// and then every byte is memset: every idle program's ring becomes resident and every
/// fork copies those page tables.)
#[cfg(not(any(brummer_loom, brummer_shuttle)))]
struct Words {
    ptr: std::ptr::NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: `Words` owns its mapping exclusively and only hands out `&[AtomicU64]`, which
// is Sync; moving the owner between threads moves nothing but the pointer.
#[cfg(not(any(brummer_loom, brummer_shuttle)))]
unsafe impl Send for Words {}
// SAFETY: see above: shared access is only through atomics.
#[cfg(not(any(brummer_loom, brummer_shuttle)))]
unsafe impl Sync for Words {}

#[cfg(not(any(brummer_loom, brummer_shuttle)))]
impl std::ops::Deref for Words {
    type Target = [AtomicU64];
    fn deref(&self) -> &[AtomicU64] {
        // SAFETY: ptr/len describe a live mapping of `len` zero-initialised (hence valid)
        // AtomicU64s, unmapped only in Drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(not(any(brummer_loom, brummer_shuttle)))]
impl Drop for Words {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `alloc_words` with exactly this length.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len * 8);
        }
    }
}

#[cfg(not(any(brummer_loom, brummer_shuttle)))]
fn alloc_words(n: usize) -> Words {
    // SAFETY: a fresh anonymous private mapping; no existing memory is touched. Zero bytes
    // are a valid AtomicU64.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            n * 8,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    match std::ptr::NonNull::new(p.cast::<AtomicU64>()) {
        Some(ptr) if p != libc::MAP_FAILED => Words { ptr, len: n },
        _ => std::alloc::handle_alloc_error(
            std::alloc::Layout::array::<AtomicU64>(n).unwrap_or(std::alloc::Layout::new::<u64>()),
        ),
    }
}

/// Memory for many rings of one size in one anonymous mapping, for the rings made at once
/// at start-up and when a re-exec's programs are adopted: one `mmap` instead of one per
/// ring, and one mapping for `execve` to tear down. Each ring taken owns its slice and
/// unmaps just that slice when it is dropped (unmapping part of a mapping is allowed, and
/// a ring's size is a whole number of pages); the slices never taken are unmapped with the
/// arena. A slice is untouched memory like a ring's own mapping: it costs no RSS until
/// written.
#[cfg(not(any(brummer_loom, brummer_shuttle)))]
pub struct RingArena {
    base: std::ptr::NonNull<AtomicU64>,
    /// Words per ring.
    words: usize,
    count: usize,
    taken: usize,
}

// SAFETY: the arena owns the slices not taken yet exclusively; moving it between threads
// moves nothing but the pointer.
#[cfg(not(any(brummer_loom, brummer_shuttle)))]
unsafe impl Send for RingArena {}

#[cfg(not(any(brummer_loom, brummer_shuttle)))]
impl RingArena {
    /// Room for `count` rings of `capacity_bytes`; `None` when `count` is zero or the
    /// mapping fails (then each ring maps its own, as [`LogRing::new`] does).
    pub fn new(capacity_bytes: usize, count: usize) -> Option<RingArena> {
        let words = LogRing::words_of(capacity_bytes);
        let bytes = words.checked_mul(8)?.checked_mul(count)?;
        if count == 0 || !(words * 8).is_multiple_of(4096) {
            return None;
        }
        // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(RingArena {
            base: std::ptr::NonNull::new(p.cast::<AtomicU64>())?,
            words,
            count,
            taken: 0,
        })
    }

    /// The next ring, as [`LogRing::new`] makes it; `None` when every slice is taken or
    /// the arena holds rings of another size.
    pub fn take(
        &mut self,
        capacity_bytes: usize,
        first_seq: u64,
    ) -> Option<(Arc<LogRing>, RingWriter)> {
        if self.taken == self.count || LogRing::words_of(capacity_bytes) != self.words {
            return None;
        }
        // SAFETY: slice `taken` lies inside the mapping and was never handed out; from
        // here on the ring's `Words` owns (and unmaps) it.
        let ptr = unsafe { self.base.add(self.taken * self.words) };
        self.taken += 1;
        let buf = Words {
            ptr,
            len: self.words,
        };
        Some(LogRing::with_words(buf, capacity_bytes, first_seq))
    }
}

#[cfg(not(any(brummer_loom, brummer_shuttle)))]
impl Drop for RingArena {
    fn drop(&mut self) {
        if self.taken < self.count {
            // SAFETY: the slices from `taken` on were never handed out; they are the tail
            // of the mapping.
            unsafe {
                libc::munmap(
                    self.base.add(self.taken * self.words).as_ptr().cast(),
                    (self.count - self.taken) * self.words * 8,
                );
            }
        }
    }
}

/// The models' arena: each ring is its own allocation.
#[cfg(any(brummer_loom, brummer_shuttle))]
pub struct RingArena {
    left: usize,
}

#[cfg(any(brummer_loom, brummer_shuttle))]
impl RingArena {
    pub fn new(_capacity_bytes: usize, count: usize) -> Option<RingArena> {
        (count > 0).then_some(RingArena { left: count })
    }

    pub fn take(
        &mut self,
        capacity_bytes: usize,
        first_seq: u64,
    ) -> Option<(Arc<LogRing>, RingWriter)> {
        self.left = self.left.checked_sub(1)?;
        Some(LogRing::new(capacity_bytes, first_seq))
    }
}

#[cfg(any(brummer_loom, brummer_shuttle))]
type Words = Box<[AtomicU64]>;

#[cfg(any(brummer_loom, brummer_shuttle))]
fn alloc_words(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn words_for(len: usize) -> u64 {
    OVERHEAD + ((len as u64 + 7) >> 3)
}

/// Lines in a record's payload: one per newline, plus the bytes after the last newline
/// if there are any (or if the payload is empty: an empty line).
fn count_lines(bytes: &[u8]) -> u64 {
    let nl = memchr::memchr_iter(b'\n', bytes).count() as u64;
    nl + u64::from(bytes.last() != Some(&b'\n'))
}

/// Packs `bytes` little-endian into `dst` (`dst.len()` == `bytes.len().div_ceil(8)`), the
/// last word zero-padded.
#[inline]
fn store_bytes(dst: &[AtomicU64], bytes: &[u8]) {
    let chunks = bytes.chunks_exact(8);
    let rem = chunks.remainder();
    let mut words = dst.iter();
    // Chunks first: `zip` pulls its left side first and would drop a word at the end.
    for (c, d) in chunks.zip(&mut words) {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        d.store(u64::from_le_bytes(w), Ordering::Relaxed);
    }
    if let Some(d) = words.next() {
        let n = rem.len();
        let w = if bytes.len() >= 8 {
            // The last 8 bytes as one load, shifted down to the `n` that are the remainder:
            // a byte-wise copy into a stack word and reading it back stalls store
            // forwarding, and that showed as a quarter of the push in a profile.
            let mut last = [0u8; 8];
            last.copy_from_slice(&bytes[bytes.len() - 8..]);
            u64::from_le_bytes(last) >> (8 * (8 - n))
        } else {
            rem.iter()
                .enumerate()
                .fold(0u64, |w, (i, &b)| w | (u64::from(b) << (8 * i)))
        };
        d.store(w, Ordering::Relaxed);
    }
}

/// Fills `dst` from little-endian words, the last one partly when `dst.len()` is not a
/// multiple of 8; `src` must hold `ceil(dst.len() / 8)` words.
#[inline]
fn copy_words(dst: &mut [std::mem::MaybeUninit<u8>], src: &[AtomicU64]) {
    let full = dst.len() / 8;
    let mut chunks = dst.chunks_exact_mut(8);
    for (c, w) in (&mut chunks).zip(src) {
        c.copy_from_slice(
            &w.load(Ordering::Relaxed)
                .to_le_bytes()
                .map(std::mem::MaybeUninit::new),
        );
    }
    let rem = chunks.into_remainder();
    if let Some(w) = src.get(full).filter(|_| !rem.is_empty()) {
        let n = rem.len();
        rem.copy_from_slice(
            &w.load(Ordering::Relaxed)
                .to_le_bytes()
                .map(std::mem::MaybeUninit::new)[..n],
        );
    }
}

impl LogRing {
    /// Longest line one record carries; longer lines are cut into pieces of this size
    /// (`RingWriter::push_lines` does).
    pub const MAX_LINE: usize = 64 * 1024;

    /// `capacity_bytes` is rounded up to a power of two of 8-byte words (min 4 KiB).
    /// `first_seq` is the seq the first pushed line gets.
    pub fn new(capacity_bytes: usize, first_seq: u64) -> (Arc<LogRing>, RingWriter) {
        let words = Self::words_of(capacity_bytes);
        Self::with_words(alloc_words(words), capacity_bytes, first_seq)
    }

    /// A ring over `buf`, which holds `words_of(capacity_bytes)` zero words.
    fn with_words(buf: Words, capacity_bytes: usize, first_seq: u64) -> (Arc<LogRing>, RingWriter) {
        let cap_words = buf.len() as u64;
        let max_payload = Self::max_payload_for(capacity_bytes);
        let ring = Arc::new(LogRing {
            buf,
            mask: cap_words - 1,
            cap_words,
            max_payload,
            first_seq,
            h: Padded(HeadSide {
                head: AtomicU64::new(0),
                next_seq: AtomicU64::new(first_seq),
                bytes: AtomicU64::new(0),
            }),
            t: Padded(TailSide {
                tail: AtomicU64::new(0),
                tail_seq: AtomicU64::new(first_seq),
                evicted: AtomicU64::new(0),
            }),
        });
        let writer = RingWriter {
            ring: Arc::clone(&ring),
            head: 0,
            tail: 0,
            next_seq: first_seq,
            tail_seq: first_seq,
            bytes: 0,
            evicted: 0,
        };
        (ring, writer)
    }

    #[inline]
    fn word(&self, off: u64) -> &AtomicU64 {
        &self.buf[(off & self.mask) as usize]
    }

    #[inline]
    fn ld(&self, off: u64) -> u64 {
        self.word(off).load(Ordering::Relaxed)
    }

    /// Seq the next pushed line will get.
    pub fn next_seq(&self) -> u64 {
        self.h.0.next_seq.load(Ordering::Acquire)
    }

    /// Oldest seq still held (== `next_seq` when empty).
    pub fn oldest_seq(&self) -> u64 {
        self.t.0.tail_seq.load(Ordering::Acquire)
    }

    /// The seq this ring started numbering at.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Longest line this ring keeps whole: `MAX_LINE`, or less for rings under 256 KiB
    /// (a record never exceeds half the ring).
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// The [`max_payload`](Self::max_payload) of a ring of `capacity_bytes`, without
    /// making one.
    pub fn max_payload_for(capacity_bytes: usize) -> usize {
        let cap_words = Self::words_of(capacity_bytes) as u64;
        // A record (a line of `max_payload` bytes and its newline at most) may use at most
        // half the ring, so evicting older records always makes room; small rings
        // therefore carry shorter lines per record.
        Self::MAX_LINE.min(((cap_words / 2 - OVERHEAD) * 8 - 8) as usize)
    }

    fn words_of(capacity_bytes: usize) -> usize {
        capacity_bytes
            .div_ceil(8)
            .clamp(MIN_WORDS, MAX_WORDS)
            .next_power_of_two()
    }

    pub fn capacity_bytes(&self) -> usize {
        (self.cap_words * 8) as usize
    }

    pub fn stats(&self) -> RingStats {
        RingStats {
            lines: self.next_seq() - self.first_seq,
            bytes: self.h.0.bytes.load(Ordering::Relaxed),
            evicted: self.t.0.evicted.load(Ordering::Relaxed),
        }
    }

    /// Consistent (tail, head) pair. The tail is stored Relaxed, so in theory it can be seen
    /// ahead of a stale head; such a pair is simply re-read.
    fn bounds(&self) -> (u64, u64) {
        loop {
            let h = self.h.0.head.load(Ordering::Acquire);
            let t = self.t.0.tail.load(Ordering::Acquire);
            if t <= h {
                return (t, h);
            }
            spin_hint();
        }
    }

    /// True if no word at an offset `>= lo` read before this call can have been overwritten:
    /// the writer advances the tail past a word (then fences) before overwriting it.
    #[inline]
    fn still_valid(&self, lo: u64) -> bool {
        fence(Ordering::Acquire);
        self.t.0.tail.load(Ordering::Relaxed) <= lo
    }

    /// Decodes a header; None when the words cannot be a header (only possible if torn).
    fn header(&self, pos: u64) -> Option<RawHeader> {
        let meta = self.ld(pos + 1);
        let len = (meta & LEN_MASK) as usize;
        let lines = meta >> LINES_SHIFT;
        let piece = meta & PIECE_BIT != 0;
        let plausible = if piece {
            len <= self.max_payload && lines == 1
        } else {
            len <= self.max_payload + 1 && lines >= 1 && lines <= len.max(1) as u64
        };
        if !plausible {
            return None;
        }
        let stream = Stream::from_u8((meta >> STREAM_SHIFT) as u8)?;
        let pg = self.ld(pos + 4);
        Some(RawHeader {
            seq: self.ld(pos),
            lines,
            len,
            stream,
            piece,
            wall_us: self.ld(pos + 2),
            mono_ns: self.ld(pos + 3),
            pid: pg as u32,
            generation: (pg >> 32) as u32,
            words: words_for(len),
        })
    }

    /// The `n` words from offset `pos` as two contiguous slices, split at the end of the
    /// array (the second is empty unless the range wraps). `n` is at most half the ring.
    #[inline]
    fn span(&self, pos: u64, n: usize) -> (&[AtomicU64], &[AtomicU64]) {
        let buf: &[AtomicU64] = &self.buf;
        let i = (pos & self.mask) as usize;
        let first = n.min(buf.len() - i);
        (&buf[i..i + first], &buf[..n - first])
    }

    /// Replaces `v`'s contents with the `len` payload bytes at `pos`.
    fn payload_into(&self, pos: u64, len: usize, v: &mut Vec<u8>) {
        // Filled in place from the two contiguous word ranges, so the copy loops carry no
        // mask, no bounds check and no capacity check, and the bytes are not zeroed first.
        // Not `vec![0; len]`: that is calloc, which skips glibc's per-thread cache.
        v.clear();
        v.reserve(len);
        let (a, b) = self.span(pos, len.div_ceil(8));
        let dst = &mut v.spare_capacity_mut()[..len];
        let (da, db) = dst.split_at_mut(len.min(a.len() * 8));
        copy_words(da, a);
        copy_words(db, b);
        // SAFETY: `da` and `db` cover `len` bytes of the spare capacity and `copy_words`
        // wrote every byte of both (a and b hold `ceil(len / 8)` words between them).
        unsafe { v.set_len(len) };
    }

    /// Appends lines `skip .. skip + take` of the record at `pos` to `out`. A torn record
    /// may yield fewer (or garbled) lines; the caller's validation then discards them.
    fn decode(
        &self,
        pos: u64,
        hd: &RawHeader,
        skip: u64,
        take: u64,
        scratch: &mut Vec<u8>,
        out: &mut Vec<Line>,
    ) {
        let meta = |seq, partial| LineMeta {
            seq,
            wall_us: hd.wall_us,
            mono_ns: hd.mono_ns,
            stream: hd.stream,
            pid: hd.pid,
            generation: hd.generation,
            partial,
        };
        if take == 0 {
            return;
        }
        if hd.piece || (hd.lines == 1 && skip == 0) {
            // One line: copied straight into its own buffer, no scratch and no search.
            let mut bytes = Vec::new();
            self.payload_into(pos + HDR, hd.len, &mut bytes);
            if !hd.piece && bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            out.push(Line {
                meta: meta(hd.seq, hd.piece),
                bytes,
            });
            return;
        }
        self.payload_into(pos + HDR, hd.len, scratch);
        // A torn header may carry any seq; its lines are discarded by the caller's
        // validation, so the seqs only must not overflow on the way (hence wrapping_add).
        let data = &scratch[..];
        let end = skip + take;
        let mut i = 0;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            if i >= skip {
                out.push(Line {
                    meta: meta(hd.seq.wrapping_add(i), false),
                    bytes: data[start..nl].to_vec(),
                });
            }
            i += 1;
            start = nl + 1;
            if i == end {
                return;
            }
        }
        // The last line of a record may come without its newline.
        if i >= skip && i < end && (start < data.len() || data.is_empty()) {
            out.push(Line {
                meta: meta(hd.seq.wrapping_add(i), false),
                bytes: data[start..].to_vec(),
            });
        }
    }

    /// Size from the trailer ending at `end`, if plausible for a record inside `[t, end)`.
    fn trailer(&self, end: u64, t: u64) -> Option<u64> {
        // No record ends at or before the tail. A reader walking back can get here when the
        // record it stood on was overwritten meanwhile; at offset 0, `end - 1` would wrap.
        if end <= t {
            return None;
        }
        let r = self.ld(end - 1);
        let max = words_for(self.max_payload + 1);
        (OVERHEAD..=max)
            .contains(&r)
            .then_some(r)
            .filter(|&r| end.checked_sub(r).is_some_and(|s| s >= t))
    }

    /// Last `n` lines (optionally of one stream), oldest first, appended to `out`. Lines
    /// overwritten while reading are skipped, never torn.
    pub fn tail(&self, n: usize, stream: Option<Stream>, out: &mut Vec<Line>) {
        let base = out.len();
        let (t, h) = self.bounds();
        // Start offset of each record read, newest first, with the length `out` had after
        // its lines, for the validation at the end.
        let mut starts: Vec<(u64, usize)> = Vec::new();
        let mut scratch = Vec::new();
        let mut got = 0;
        // Offset of the word that stopped the walk, if an implausible one did.
        let mut stopped_at = None;
        let mut end = h;
        while end > t && got < n {
            let Some(r) = self.trailer(end, t) else {
                stopped_at = Some(end - 1);
                break;
            };
            let start = end - r;
            let Some(hd) = self.header(start).filter(|hd| hd.words == r) else {
                stopped_at = Some(start);
                break;
            };
            if stream.is_none_or(|s| s == hd.stream) {
                let k = hd.lines.min((n - got) as u64);
                let before = out.len();
                self.decode(start, &hd, hd.lines - k, k, &mut scratch, out);
                // The walk collects newest first; one reverse at the end restores order.
                out[before..].reverse();
                got += k as usize;
                starts.push((start, out.len()));
            }
            end = start;
        }
        // One validation for the whole walk instead of one per record (each a load of the
        // tail line the writer keeps dirtying): every word read at an offset >= the tail
        // seen now is intact (see `still_valid`). The walk went newest to oldest, so the
        // intact records are a prefix of `starts` and were reached through intact trailers
        // only; the rest may be torn (a torn trailer may even have sent the walk astray) and
        // are gone from the ring anyway, as is everything older.
        fence(Ordering::Acquire);
        let now = self.t.0.tail.load(Ordering::Relaxed);
        debug_assert!(
            stopped_at.is_none_or(|o| o < now),
            "ring corrupt: bad record at valid offset {stopped_at:?}"
        );
        let intact = starts.partition_point(|&(s, _)| s >= now);
        out.truncate(intact.checked_sub(1).map_or(base, |i| starts[i].1));
        out[base..].reverse();
    }

    /// Lines with seq >= `from`, at most `max` of them counted before the stream filter,
    /// appended to `out`. Seqs below `first_seq` never existed here and are not "missed".
    pub fn read_from(
        &self,
        from: u64,
        max: usize,
        stream: Option<Stream>,
        out: &mut Vec<Line>,
    ) -> ReadOutcome {
        let mut cursor = from.max(self.first_seq);
        let mut missed = 0;
        let mut taken = 0;
        let mut scratch = Vec::new();
        'resync: for _ in 0..MAX_RESYNC {
            if taken > 0 {
                // Overtaken after delivering lines: the gap lies after them, which one
                // ReadOutcome cannot express, so the next call reports it instead.
                break;
            }
            let (t, h) = self.bounds();
            if t == h {
                // Only before the first push: a record never fills the ring, so a push
                // always leaves at least itself behind.
                break;
            }
            let oldest = self.ld(t);
            let last = self.trailer(h, t);
            let newest = last.and_then(|r| self.header(h - r));
            if !self.still_valid(t) {
                continue 'resync;
            }
            let (Some(last), Some(newest)) = (last, newest) else {
                debug_assert!(false, "ring corrupt: bad record at head");
                break;
            };
            if cursor >= newest.seq + newest.lines {
                break;
            }
            let mut pos;
            if cursor <= oldest {
                missed += oldest - cursor;
                cursor = oldest;
                pos = t;
            } else {
                // Walk back from the newest record: readers that follow live output ask
                // for something near the head.
                pos = h - last;
                let mut s = newest.seq;
                while s > cursor {
                    match self.trailer(pos, t) {
                        Some(r) => pos -= r,
                        None => continue 'resync,
                    }
                    s = self.ld(pos);
                }
                if !self.still_valid(pos) {
                    continue 'resync;
                }
            }
            // Validated once per chunk of records instead of once per record (each check
            // loads the tail line the writer keeps dirtying). A failed check drops the whole
            // chunk: a torn header inside it may have sent the walk anywhere, so even its
            // later records cannot be trusted. Chunks keep a reader that is being overtaken
            // delivering what it copied before the overtake.
            let (mut chunk_pos, mut chunk_len, mut chunk_cursor) = (pos, out.len(), cursor);
            let (mut in_chunk, mut chunk_taken) = (0, 0);
            while taken < max && pos < h {
                let hdr = self.header(pos).filter(|hd| {
                    hd.seq <= cursor && cursor < hd.seq + hd.lines && pos + hd.words <= h
                });
                let Some(hd) = hdr else {
                    if !self.still_valid(chunk_pos) {
                        // Overtaken: the next pass starts at the new tail and counts the gap.
                        out.truncate(chunk_len);
                        taken -= chunk_taken;
                        cursor = chunk_cursor;
                        continue 'resync;
                    }
                    debug_assert!(false, "ring corrupt: bad header at valid offset");
                    break 'resync;
                };
                let skip = cursor - hd.seq;
                let want = (hd.lines - skip).min((max - taken) as u64);
                if stream.is_none_or(|s| s == hd.stream) {
                    self.decode(pos, &hd, skip, want, &mut scratch, out);
                }
                taken += want as usize;
                chunk_taken += want as usize;
                in_chunk += 1;
                cursor += want;
                if skip + want == hd.lines {
                    pos += hd.words;
                }
                if in_chunk == VALIDATE_EVERY || taken == max || pos >= h {
                    if !self.still_valid(chunk_pos) {
                        out.truncate(chunk_len);
                        taken -= chunk_taken;
                        cursor = chunk_cursor;
                        continue 'resync;
                    }
                    (chunk_pos, chunk_len, chunk_cursor) = (pos, out.len(), cursor);
                    (in_chunk, chunk_taken) = (0, 0);
                }
            }
            break;
        }
        ReadOutcome {
            missed,
            next_seq: cursor,
        }
    }
}

impl std::fmt::Debug for LogRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogRing")
            .field("capacity_bytes", &self.capacity_bytes())
            .field("oldest_seq", &self.oldest_seq())
            .field("next_seq", &self.next_seq())
            .field("stats", &self.stats())
            .finish()
    }
}

/// The one writer of a `LogRing`. Not `Clone`: single-writer is a type-level fact.
pub struct RingWriter {
    ring: Arc<LogRing>,
    // Writer-private copies of the shared positions, so the hot path never reads back
    // contended atomics.
    head: u64,
    tail: u64,
    next_seq: u64,
    tail_seq: u64,
    bytes: u64,
    evicted: u64,
}

impl RingWriter {
    /// Appends `bytes` as lines, cut at each newline; bytes after the last newline are a
    /// line too, and so is an empty `bytes` (one empty line). A line longer than
    /// `ring().max_payload()` is cut into pieces of that size, all but the last marked
    /// partial, so a reader never waits for a newline that may never come. Returns the seq
    /// of the last line. Evicts the oldest records as needed and never waits for readers.
    pub fn push_lines(&mut self, stamp: &Stamp, bytes: &[u8]) -> u64 {
        let max = self.ring.max_payload;
        let mut rest = bytes;
        loop {
            // A record ends at a newline and holds at most `max + 1` bytes, so each of its
            // lines has at most `max` bytes.
            let cut = if rest.len() <= max || (rest.len() == max + 1 && rest[max] == b'\n') {
                rest.len()
            } else {
                match memchr::memrchr(b'\n', &rest[..max + 1]) {
                    Some(i) => i + 1,
                    None => {
                        self.record(stamp, true, 1, &rest[..max]);
                        rest = &rest[max..];
                        continue;
                    }
                }
            };
            let (now, later) = rest.split_at(cut);
            self.record(stamp, false, count_lines(now), now);
            rest = later;
            if rest.is_empty() {
                return self.next_seq - 1;
            }
        }
    }

    /// Appends one piece of a line still being written: at most `ring().max_payload()`
    /// bytes (the rest is dropped), no newline, marked partial. Returns its seq.
    pub fn push_piece(&mut self, stamp: &Stamp, bytes: &[u8]) -> u64 {
        let bytes = &bytes[..bytes.len().min(self.ring.max_payload)];
        self.record(stamp, true, 1, bytes);
        self.next_seq - 1
    }

    /// Writes one record of `lines` lines. `bytes` fits a record (at most `max_payload`
    /// bytes for a piece, `max_payload + 1` otherwise).
    fn record(&mut self, stamp: &Stamp, piece: bool, lines: u64, bytes: &[u8]) {
        let ring = &*self.ring;
        let words = words_for(bytes.len());
        let new_head = self.head + words;
        if new_head - self.tail > ring.cap_words {
            while new_head - self.tail > ring.cap_words {
                // Our own earlier write, so a Relaxed load returns it exactly.
                let meta = ring.ld(self.tail + 1);
                self.tail += words_for((meta & LEN_MASK) as usize);
                self.tail_seq += meta >> LINES_SHIFT;
                self.evicted += meta >> LINES_SHIFT;
            }
            let t = &ring.t.0;
            t.tail_seq.store(self.tail_seq, Ordering::Relaxed);
            t.evicted.store(self.evicted, Ordering::Relaxed);
            t.tail.store(self.tail, Ordering::Relaxed);
            // Orders the tail advance before the overwrites below for any reader that
            // observes one of them (it fences Acquire and re-reads the tail).
            fence(Ordering::Release);
        }
        let seq = self.next_seq;
        let p = self.head;
        let meta = bytes.len() as u64
            | (u64::from(stamp.stream as u8) << STREAM_SHIFT)
            | if piece { PIECE_BIT } else { 0 }
            | (lines << LINES_SHIFT);
        // The slice and mask are read once: through `ring.word()` the compiler reloads both
        // after every atomic store, which made this copy the daemon's hottest loop.
        let buf: &[AtomicU64] = &ring.buf;
        let mask = ring.mask;
        let st = |off: u64, v: u64| buf[(off & mask) as usize].store(v, Ordering::Relaxed);
        st(p, seq);
        st(p + 1, meta);
        st(p + 2, stamp.wall_us);
        st(p + 3, stamp.mono_ns);
        st(
            p + 4,
            u64::from(stamp.pid) | (u64::from(stamp.generation) << 32),
        );
        let start = ((p + HDR) & mask) as usize;
        let payload_words = bytes.len().div_ceil(8);
        // Payload words run to the end of the array and continue at its start.
        let first = payload_words.min(buf.len() - start);
        let (head_bytes, wrapped) = bytes.split_at((first * 8).min(bytes.len()));
        store_bytes(&buf[start..start + first], head_bytes);
        store_bytes(&buf[..payload_words - first], wrapped);
        st(p + HDR + payload_words as u64, words);
        self.head = new_head;
        self.next_seq += lines;
        self.bytes += bytes.len() as u64;
        let h = &ring.h.0;
        h.bytes.store(self.bytes, Ordering::Relaxed);
        h.next_seq.store(self.next_seq, Ordering::Relaxed);
        // Publishes the record (and next_seq) to readers that Acquire-load the head.
        h.head.store(new_head, Ordering::Release);
    }

    pub fn ring(&self) -> &Arc<LogRing> {
        &self.ring
    }
}

impl std::fmt::Debug for RingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingWriter")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(any(brummer_loom, brummer_shuttle))))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// Bytes of the line with `seq`: never a newline.
    fn payload(seq: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(
                |i| match (seq as u8).wrapping_mul(31).wrapping_add(i as u8) {
                    b'\n' => b'.',
                    b => b,
                },
            )
            .collect()
    }

    fn stream_of(b: bool) -> Stream {
        if b { Stream::Stderr } else { Stream::Stdout }
    }

    fn stamp(stream: Stream, pid: u32, generation: u32, wall_us: u64, mono_ns: u64) -> Stamp {
        Stamp {
            stream,
            pid,
            generation,
            wall_us,
            mono_ns,
        }
    }

    /// What the ring must retain: the longest suffix of pushed records whose word sizes
    /// fit, each record a run of lines.
    struct Model {
        cap_words: u64,
        max_payload: usize,
        first_seq: u64,
        next_seq: u64,
        used: u64,
        pushes: u64,
        records: VecDeque<(Vec<Line>, u64)>,
    }

    impl Model {
        fn new(ring: &LogRing) -> Self {
            Model {
                cap_words: ring.capacity_bytes() as u64 / 8,
                max_payload: ring.max_payload(),
                first_seq: ring.first_seq(),
                next_seq: ring.first_seq(),
                used: 0,
                pushes: 0,
                records: VecDeque::new(),
            }
        }

        fn stamp(&self, stream: Stream) -> Stamp {
            let p = self.pushes;
            stamp(
                stream,
                p as u32 ^ 0xdead,
                (p as u32).wrapping_mul(3),
                p * 10,
                p * 1000 + 7,
            )
        }

        fn line(&mut self, s: &Stamp, partial: bool, len: usize) -> Line {
            let seq = self.next_seq;
            self.next_seq += 1;
            Line {
                meta: LineMeta {
                    seq,
                    wall_us: s.wall_us,
                    mono_ns: s.mono_ns,
                    stream: s.stream,
                    pid: s.pid,
                    generation: s.generation,
                    partial,
                },
                bytes: payload(seq, len),
            }
        }

        fn add(&mut self, lines: Vec<Line>, payload_bytes: usize) {
            let w = words_for(payload_bytes);
            while self.used + w > self.cap_words {
                let (_, old) = self.records.pop_front().unwrap();
                self.used -= old;
            }
            self.records.push_back((lines, w));
            self.used += w;
        }

        /// Pushes lines of these lengths (each at most `max_payload`) with one
        /// `push_lines`, newline-terminated, into the ring and the model; returns the bytes.
        fn push_lines(&mut self, w: &mut RingWriter, stream: Stream, lens: &[usize]) {
            let s = self.stamp(stream);
            self.pushes += 1;
            let mut bytes = Vec::new();
            let mut rec: Vec<Line> = Vec::new();
            let mut rec_bytes = 0;
            for &len in lens {
                let len = len.min(self.max_payload);
                // A record takes whole lines up to `max_payload + 1` bytes.
                if rec_bytes + len + 1 > self.max_payload + 1 {
                    self.add(std::mem::take(&mut rec), rec_bytes);
                    rec_bytes = 0;
                }
                let line = self.line(&s, false, len);
                bytes.extend_from_slice(&line.bytes);
                bytes.push(b'\n');
                rec_bytes += len + 1;
                rec.push(line);
            }
            if !rec.is_empty() {
                self.add(rec, rec_bytes);
            }
            if !bytes.is_empty() {
                let last = w.push_lines(&s, &bytes);
                assert_eq!(last, self.next_seq - 1);
            }
        }

        /// One line without a newline (`push_lines`), or one piece (`push_piece`).
        fn push_one(&mut self, w: &mut RingWriter, stream: Stream, partial: bool, len: usize) {
            let s = self.stamp(stream);
            self.pushes += 1;
            let len = len.min(self.max_payload);
            let line = self.line(&s, partial, len);
            let seq = line.meta.seq;
            let got = if partial {
                w.push_piece(&s, &line.bytes)
            } else {
                w.push_lines(&s, &line.bytes)
            };
            assert_eq!(got, seq);
            self.add(vec![line], len);
        }

        fn lines(&self) -> impl DoubleEndedIterator<Item = &Line> {
            self.records.iter().flat_map(|(r, _)| r.iter())
        }

        fn oldest(&self) -> u64 {
            self.lines().next().map_or(self.next_seq, |l| l.meta.seq)
        }

        fn tail(&self, n: usize, stream: Option<Stream>) -> Vec<Line> {
            let mut v: Vec<Line> = self
                .lines()
                .rev()
                .filter(|l| stream.is_none_or(|s| s == l.meta.stream))
                .take(n)
                .cloned()
                .collect();
            v.reverse();
            v
        }

        fn read_from(
            &self,
            from: u64,
            max: usize,
            stream: Option<Stream>,
        ) -> (Vec<Line>, ReadOutcome) {
            let mut cursor = from.max(self.first_seq);
            let mut missed = 0;
            let oldest = self.oldest();
            if cursor < oldest && !self.records.is_empty() {
                missed = oldest - cursor;
                cursor = oldest;
            }
            let mut out = Vec::new();
            let start = cursor;
            for l in self.lines().filter(|l| l.meta.seq >= start).take(max) {
                if stream.is_none_or(|s| s == l.meta.stream) {
                    out.push(l.clone());
                }
                cursor = l.meta.seq + 1;
            }
            (
                out,
                ReadOutcome {
                    missed,
                    next_seq: cursor,
                },
            )
        }
    }

    fn check_all(ring: &LogRing, m: &Model) {
        assert_eq!(ring.next_seq(), m.next_seq);
        assert_eq!(ring.oldest_seq(), m.oldest());
        let mut out = Vec::new();
        ring.tail(usize::MAX, None, &mut out);
        let want: Vec<Line> = m.lines().cloned().collect();
        assert_eq!(out, want);
    }

    #[test]
    fn capacity_rounding_and_limits() {
        assert_eq!(LogRing::new(0, 0).0.capacity_bytes(), 4096);
        assert_eq!(LogRing::new(4097, 0).0.capacity_bytes(), 8192);
        assert_eq!(LogRing::new(1 << 20, 0).0.capacity_bytes(), 1 << 20);
        assert_eq!(LogRing::new(4096, 0).0.max_payload(), (256 - 6) * 8 - 8);
        assert_eq!(LogRing::new(1 << 20, 0).0.max_payload(), LogRing::MAX_LINE);
        // Smallest ring that carries full MAX_LINE records.
        let (r, _) = LogRing::new(256 << 10, 0);
        assert_eq!(r.max_payload(), LogRing::MAX_LINE);
        let (r, _) = LogRing::new(128 << 10, 0);
        assert!(r.max_payload() < LogRing::MAX_LINE);
    }

    #[test]
    fn empty_ring() {
        let (ring, _w) = LogRing::new(4096, 42);
        assert_eq!(ring.next_seq(), 42);
        assert_eq!(ring.oldest_seq(), 42);
        let mut out = Vec::new();
        ring.tail(10, None, &mut out);
        assert!(out.is_empty());
        let o = ring.read_from(0, 10, None, &mut out);
        assert_eq!(
            o,
            ReadOutcome {
                missed: 0,
                next_seq: 42
            }
        );
        assert!(out.is_empty());
        assert_eq!(ring.stats(), RingStats::default());
    }

    #[test]
    fn push_roundtrips_meta_and_bytes() {
        let (ring, mut w) = LogRing::new(1 << 16, 1);
        let s1 = w.push_lines(
            &stamp(Stream::Stdout, 77, 5, 1_700_000_000_000_000, 99),
            b"hello",
        );
        let s2 = w.push_piece(&stamp(Stream::Stderr, 78, 6, 2, 3), b"");
        let s3 = w.push_lines(
            &stamp(Stream::Stdout, u32::MAX, u32::MAX, u64::MAX, u64::MAX),
            b"12345678\n",
        );
        assert_eq!((s1, s2, s3), (1, 2, 3));
        let mut out = Vec::new();
        let o = ring.read_from(1, 10, None, &mut out);
        assert_eq!(
            o,
            ReadOutcome {
                missed: 0,
                next_seq: 4
            }
        );
        assert_eq!(out[0].bytes, b"hello");
        assert_eq!(
            out[0].meta,
            LineMeta {
                seq: 1,
                wall_us: 1_700_000_000_000_000,
                mono_ns: 99,
                stream: Stream::Stdout,
                pid: 77,
                generation: 5,
                partial: false
            }
        );
        assert!(out[1].bytes.is_empty() && out[1].meta.partial);
        assert_eq!(out[1].meta.stream, Stream::Stderr);
        assert_eq!(out[2].meta.pid, u32::MAX);
        assert_eq!(out[2].meta.generation, u32::MAX);
        assert_eq!(out[2].meta.wall_us, u64::MAX);
        assert_eq!(out[2].bytes, b"12345678");
        let mut errs = Vec::new();
        ring.tail(5, Some(Stream::Stderr), &mut errs);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].meta.seq, 2);
        assert_eq!(
            ring.stats(),
            RingStats {
                lines: 3,
                bytes: 14,
                evicted: 0
            }
        );
    }

    #[test]
    fn a_run_of_lines_is_one_record_and_reads_back_line_by_line() {
        let (ring, mut w) = LogRing::new(1 << 16, 10);
        let s = stamp(Stream::Stdout, 7, 1, 100, 200);
        assert_eq!(w.push_lines(&s, b"a\n\nccc\nlast without newline"), 13);
        assert_eq!(w.push_lines(&s, b"x\ny\n"), 15);
        let texts = |v: &[Line]| -> Vec<(u64, Vec<u8>)> {
            v.iter().map(|l| (l.meta.seq, l.bytes.clone())).collect()
        };
        let mut out = Vec::new();
        let o = ring.read_from(11, 3, None, &mut out);
        assert_eq!(o.next_seq, 14);
        assert_eq!(
            texts(&out),
            [
                (11, b"".to_vec()),
                (12, b"ccc".to_vec()),
                (13, b"last without newline".to_vec())
            ]
        );
        assert!(out.iter().all(|l| l.meta.pid == 7 && !l.meta.partial));
        out.clear();
        ring.tail(3, None, &mut out);
        assert_eq!(
            texts(&out),
            [
                (13, b"last without newline".to_vec()),
                (14, b"x".to_vec()),
                (15, b"y".to_vec())
            ]
        );
        // A read that stops inside a record resumes there.
        out.clear();
        let o = ring.read_from(0, 1, None, &mut out);
        assert_eq!((o.next_seq, texts(&out)), (11, vec![(10, b"a".to_vec())]));
        assert_eq!(ring.stats().lines, 6);
    }

    #[test]
    fn appends_to_existing_out() {
        let (ring, mut w) = LogRing::new(4096, 0);
        let s = stamp(Stream::Stdout, 1, 1, 1, 1);
        w.push_lines(&s, b"a");
        w.push_lines(&s, b"b");
        let marker = Line {
            meta: LineMeta {
                seq: 999,
                wall_us: 0,
                mono_ns: 0,
                stream: Stream::Stdout,
                pid: 0,
                generation: 0,
                partial: false,
            },
            bytes: b"keep".to_vec(),
        };
        let mut out = vec![marker.clone()];
        ring.tail(2, None, &mut out);
        assert_eq!(out[0], marker);
        assert_eq!(out[1].bytes, b"a");
        assert_eq!(out[2].bytes, b"b");
    }

    #[test]
    fn wraps_around_many_times() {
        let (ring, mut w) = LogRing::new(4096, 1000);
        let mut m = Model::new(&ring);
        for i in 0..20_000usize {
            let len = (i * 7919) % 300;
            if i % 5 == 0 {
                let lens: Vec<usize> = (0..(i % 13)).map(|k| (len + k * 37) % 120).collect();
                m.push_lines(&mut w, stream_of(i % 3 == 0), &lens);
            } else {
                m.push_one(&mut w, stream_of(i % 3 == 0), false, len);
            }
            if i % 997 == 0 {
                check_all(&ring, &m);
            }
        }
        check_all(&ring, &m);
        let st = ring.stats();
        assert_eq!(st.lines, m.next_seq - 1000);
        assert_eq!(st.evicted, st.lines - m.lines().count() as u64);
        assert!(st.bytes > 20 * 4096, "should have wrapped many times");
        // A cursor from long ago reports exactly what was lost.
        let mut out = Vec::new();
        let o = ring.read_from(1000, usize::MAX, None, &mut out);
        assert_eq!(o.missed, m.oldest() - 1000);
        assert_eq!(o.next_seq, m.next_seq);
        assert_eq!(out.len(), m.lines().count());
    }

    #[test]
    fn oversized_piece_truncates_to_max_payload() {
        let (ring, mut w) = LogRing::new(4096, 0);
        let big = vec![b'x'; 10_000];
        w.push_piece(&stamp(Stream::Stdout, 1, 1, 1, 1), &big);
        let mut out = Vec::new();
        ring.tail(1, None, &mut out);
        assert_eq!(out[0].bytes.len(), ring.max_payload());
        assert!(out[0].meta.partial);
    }

    /// Rings taken from an arena are rings like any other, each in its own slice: filling
    /// one (past wrapping) leaves its neighbours' lines whole, a ring outlives the arena and
    /// its neighbours, and an arena refuses rings of another size and ends when empty.
    #[test]
    fn rings_from_an_arena_are_independent_and_outlive_it() {
        let bytes = 1 << 16;
        let mut arena = RingArena::new(bytes, 3).expect("an arena of three rings");
        assert!(
            arena.take(bytes * 2, 0).is_none(),
            "another size is refused"
        );
        let mut rings: Vec<_> = (0..3)
            .map(|i| arena.take(bytes, 100 * i).expect("a ring"))
            .collect();
        assert!(arena.take(bytes, 0).is_none(), "three rings only");
        let s = stamp(Stream::Stdout, 1, 1, 1, 1);
        rings[0].1.push_lines(&s, b"first\n");
        rings[2].1.push_lines(&s, b"third\n");
        // The middle ring wraps several times: it writes only inside its own slice.
        let long = vec![b'x'; 1000];
        for _ in 0..400 {
            rings[1].1.push_lines(&s, &long);
        }
        drop(arena);
        let middle = rings.remove(1);
        drop(middle);
        let mut out = Vec::new();
        assert_eq!(rings[0].0.read_from(0, 10, None, &mut out).next_seq, 1);
        assert_eq!(out[0].bytes, b"first");
        out.clear();
        rings[1].0.read_from(200, 10, None, &mut out);
        assert_eq!(out[0].bytes, b"third");
        assert_eq!(rings[1].0.capacity_bytes(), bytes);
    }

    #[test]
    fn push_lines_splits_200k() {
        let (ring, mut w) = LogRing::new(1 << 20, 5);
        let s = stamp(Stream::Stderr, 9, 2, 3, 4);
        let line: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8 | 0x80).collect();
        let last = w.push_lines(&s, &line);
        assert_eq!(last, 8, "65536 * 3 + 8192: four records");
        let mut out = Vec::new();
        let o = ring.read_from(0, 100, None, &mut out);
        assert_eq!(o.next_seq, 9);
        assert_eq!(out.len(), 4);
        assert_eq!(
            out.iter().map(|l| l.meta.partial).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        assert!(out[..3].iter().all(|l| l.bytes.len() == LogRing::MAX_LINE));
        let joined: Vec<u8> = out.iter().flat_map(|l| l.bytes.iter().copied()).collect();
        assert_eq!(joined, line);
        // An empty line is one empty, complete record.
        assert_eq!(w.push_lines(&s, b""), 9);
        // Newline-terminated, between short lines: the same pieces, the short lines whole.
        let mut chunk = b"before\n".to_vec();
        chunk.extend_from_slice(&line);
        chunk.extend_from_slice(b"\nafter\n");
        assert_eq!(w.push_lines(&s, &chunk), 15);
        out.clear();
        ring.read_from(10, 100, None, &mut out);
        let lens: Vec<(usize, bool)> = out
            .iter()
            .map(|l| (l.bytes.len(), l.meta.partial))
            .collect();
        assert_eq!(
            lens,
            [
                (6, false),
                (65536, true),
                (65536, true),
                (65536, true),
                (8192, false),
                (5, false)
            ]
        );
        // A line of exactly the limit, with its newline, is one record and one line.
        let exact = vec![b'e'; LogRing::MAX_LINE];
        let mut chunk = exact.clone();
        chunk.push(b'\n');
        assert_eq!(w.push_lines(&s, &chunk), 16);
        out.clear();
        ring.tail(1, None, &mut out);
        assert_eq!(
            (out[0].bytes.len(), out[0].meta.partial),
            (LogRing::MAX_LINE, false)
        );
        // A small ring splits at its own limit and keeps only the newest pieces.
        let (small, mut sw) = LogRing::new(4096, 0);
        let last = sw.push_lines(&s, &line);
        let pieces = line.len().div_ceil(small.max_payload()) as u64;
        assert_eq!(last, pieces - 1);
        let mut out = Vec::new();
        small.tail(usize::MAX, None, &mut out);
        let tail_bytes: Vec<u8> = out.iter().flat_map(|l| l.bytes.iter().copied()).collect();
        assert!(line.ends_with(&tail_bytes));
        assert!(!out.last().unwrap().meta.partial);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push {
            len: usize,
            stderr: bool,
            partial: bool,
        },
        PushLines {
            lens: Vec<usize>,
            stderr: bool,
        },
        Tail {
            n: usize,
            filter: Option<bool>,
        },
        Read {
            from: u64,
            max: usize,
            filter: Option<bool>,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let len = prop_oneof![
            8 => 0usize..64,
            3 => 64usize..2048,
            1 => 0usize..=LogRing::MAX_LINE + 10,
        ];
        let lens =
            proptest::collection::vec(prop_oneof![8 => 0usize..120, 1 => 120usize..3000], 0..40);
        prop_oneof![
            4 => (len, any::<bool>(), any::<bool>())
                .prop_map(|(len, stderr, partial)| Op::Push { len, stderr, partial }),
            3 => (lens, any::<bool>()).prop_map(|(lens, stderr)| Op::PushLines { lens, stderr }),
            1 => (0usize..40, proptest::option::of(any::<bool>()))
                .prop_map(|(n, filter)| Op::Tail { n, filter }),
            2 => (any::<u64>(), 0usize..40, proptest::option::of(any::<bool>()))
                .prop_map(|(from, max, filter)| Op::Read { from, max, filter }),
        ]
    }

    /// Found by the `ring` fuzz target (docs/reliability.md): a `read_from` walking back
    /// from the head while the writer overwrote the records under it reached the tail at
    /// offset 0 and read the word before it (an overflow panic in debug builds).
    #[test]
    fn no_trailer_ends_at_the_tail() {
        let (ring, mut w) = LogRing::new(4096, 0);
        w.push_lines(&stamp(Stream::Stdout, 1, 1, 1, 1), b"x\n");
        assert_eq!(ring.trailer(0, 0), None);
        let (t, h) = ring.bounds();
        assert_eq!(ring.trailer(t, t), None);
        assert!(ring.trailer(h, t).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn ring_matches_model(
            cap_shift in 12u32..19,
            first_seq in prop_oneof![Just(0u64), 1u64..1_000_000],
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let (ring, mut w) = LogRing::new(1 << cap_shift, first_seq);
            let mut m = Model::new(&ring);
            for op in ops {
                match op {
                    Op::Push { len, stderr, partial } => {
                        m.push_one(&mut w, stream_of(stderr), partial, len);
                    }
                    Op::PushLines { lens, stderr } => {
                        m.push_lines(&mut w, stream_of(stderr), &lens);
                    }
                    Op::Tail { n, filter } => {
                        let filter = filter.map(stream_of);
                        let mut out = Vec::new();
                        ring.tail(n, filter, &mut out);
                        prop_assert_eq!(out, m.tail(n, filter));
                    }
                    Op::Read { from, max, filter } => {
                        // Aim near the interesting range: before, inside and past the data.
                        let lo = first_seq.saturating_sub(3);
                        let span = m.next_seq + 3 - lo;
                        let from = lo + from % span;
                        let filter = filter.map(stream_of);
                        let mut out = Vec::new();
                        let o = ring.read_from(from, max, filter, &mut out);
                        let (want, wo) = m.read_from(from, max, filter);
                        prop_assert_eq!(o, wo, "from {} max {}", from, max);
                        prop_assert_eq!(out, want);
                    }
                }
                prop_assert_eq!(ring.next_seq(), m.next_seq);
                prop_assert_eq!(ring.oldest_seq(), m.oldest());
            }
            check_all(&ring, &m);
        }
    }
}
