//! The disk side of a capture: appends each chunk of finished lines to the program's disk
//! log with its index record, rotates the segment by the program's `[logs]` limits, and
//! keeps `disk_seq` (every line below it is on disk or lost to a disk error) and the error
//! counter current. A failing disk keeps the lines in memory only, logs once, and logs again
//! when writes succeed.

use super::ProcessLog;
use super::disk::{ChunkMeta, DiskLog};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// One chunk's disk write: the bytes of `buf` it covers, and its index data.
pub type Write = (Range<usize>, ChunkMeta);

pub struct Persist {
    log: Arc<ProcessLog>,
    disk: Option<DiskLog>,
    /// The last write failed; cleared (and logged) when writes succeed again.
    failing: bool,
}

impl Persist {
    /// `disk` is `None` when the disk log could not be opened: lines then stay in memory.
    pub fn new(log: Arc<ProcessLog>, disk: Option<DiskLog>) -> Persist {
        Persist {
            log,
            disk,
            failing: false,
        }
    }

    /// Appends the finished lines of one read to the disk log, in order, rotating when
    /// the active segment is full.
    pub fn write(&mut self, buf: &[u8], writes: &[Write]) {
        let Some(d) = &mut self.disk else {
            // Lines that will never reach the disk: readers must not wait for them there.
            if let Some((_, last)) = writes.last() {
                self.log
                    .counters
                    .disk_seq
                    .store(last.first_seq + last.lines, Ordering::Release);
            }
            return;
        };
        let counters = &self.log.counters;
        for (range, meta) in writes {
            match d.append(&[&buf[range.clone()]], meta) {
                Ok(()) => {
                    if self.failing {
                        self.failing = false;
                        tracing::info!(process = %self.log.name, "disk log writable again");
                    }
                }
                Err(e) => {
                    counters
                        .disk_errors
                        .fetch_add(range.len() as u64, Ordering::Relaxed);
                    if !self.failing {
                        self.failing = true;
                        tracing::error!(process = %self.log.name, cause = %e, "cannot write disk log; lines stay in memory only");
                    }
                }
            }
            // Every line before this one is now on disk or lost to it: readers may look there.
            let next = meta.first_seq + meta.lines;
            counters.disk_seq.store(next, Ordering::Release);
            let (max_bytes, max_files) = {
                let settings = self.log.settings.load();
                (settings.max_bytes, settings.max_files)
            };
            if d.size() >= max_bytes {
                match d.rotate(next, max_files) {
                    Ok(()) => {
                        counters.rotations.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counters.disk_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(process = %self.log.name, cause = %e, "cannot rotate disk log");
                    }
                }
            }
        }
    }
}
