//! The disk log of one process: segments of raw bytes with an index beside each, rotated by
//! brummerd itself. Format (see `docs/logs.md`):
//!
//! - `NAME.log`: the active segment, the bytes exactly as the program wrote them.
//! - `NAME.log.idx`: its index: a 48-byte header, then one 48-byte little-endian record per
//!   disk write (= per captured chunk of complete lines, or per piece of an over-long line).
//! - `NAME.log.<first_seq:020>` and `NAME.log.<first_seq:020>.idx`: rotated segments, named
//!   by the sequence number of their first line so that a listing sorts them.
//!
//! The capture task is the only writer (`DiskLog`); readers (`logs`, `follow`) open the files
//! read-only and use `pread`, so they never take a lock the writer holds.
//!
//! `format` holds the layout both sides share, `writer` the capture task's side, `reader`
//! the readers', `epoch` how readers tell a rotation from lines really missing.

mod epoch;
mod format;
mod reader;
mod writer;

pub use epoch::*;
pub use format::*;
pub use reader::*;
pub use writer::*;

#[cfg(test)]
mod tests;
