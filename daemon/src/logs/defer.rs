//! Holding back one small chunk's disk write until the followers on the same log thread
//! have sent it: the write (segment and index) sits between the capture's wake-up and a
//! follower's send otherwise (docs/architecture.md, "W6, follow latency, second pass").
//!
//! The rule that keeps every line findable: a chunk is held only while the ring still
//! holds all of it, and everything before it is on disk, so at every moment each line is
//! in the ring or on disk. Only one chunk is held; the capture ends its turn on it, so
//! nothing else reaches the ring or the disk before its write.

use super::persist::{Persist, Write};

/// Largest chunk whose disk write waits until the followers on this log thread have sent it.
const DEFER_MAX: usize = 64 * 1024;

#[derive(Default)]
pub struct Deferred {
    bytes: Vec<u8>,
    writes: Vec<Write>,
}

impl Deferred {
    /// Whether a chunk of `len` bytes whose first line is `first_seq` may wait, with
    /// followers on the thread (`followers`) and the ring's oldest line `ring_oldest`.
    pub fn may_hold(&self, followers: bool, len: usize, ring_oldest: u64, first_seq: u64) -> bool {
        followers && self.is_empty() && len <= DEFER_MAX && ring_oldest <= first_seq
    }

    /// Holds the chunk `buf[..len]` and its writes (taken out of `writes`).
    pub fn hold(&mut self, buf: &[u8], len: usize, writes: &mut Vec<Write>) {
        self.bytes.extend_from_slice(&buf[..len]);
        self.writes.append(writes);
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Writes the held chunk, if any, keeping the buffers for the next one.
    pub fn flush(&mut self, persist: &mut Persist) {
        if self.writes.is_empty() {
            return;
        }
        persist.write(&self.bytes, &self.writes);
        self.bytes.clear();
        self.writes.clear();
    }
}
