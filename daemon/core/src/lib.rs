//! brummer-core: the concurrency core of brummerd, free of any async runtime so that it can
//! be model-checked (loom under `--cfg brummer_loom`, shuttle under `--cfg brummer_shuttle`)
//! and benchmarked on its own.
//!
//! Owns the four shared structures every daemon task touches: status cells, the process
//! registry, the event bus and per-process log rings; and the owner-token protocol of a
//! client connection's outbox. Called by the daemon's supervisor, control and log tasks.
//! It must never depend on tokio or block a caller on another party's progress (readers
//! never wait for writers, publishers never wait for subscribers).

pub mod bus;
pub mod outbox;
pub mod registry;
pub mod ring;
pub mod status;
mod sync;

pub use bus::{Envelope, EventBus, Recv, Subscription};
pub use outbox::OutboxState;
pub use registry::{Reader, Registry, Snapshot};
pub use ring::{Line, LineMeta, LogRing, ReadOutcome, RingArena, RingStats, RingWriter, Stamp};
pub use status::{Hot, StatusCell, StatusWord};
