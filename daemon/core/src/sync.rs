//! Owns the single seam between brummer-core and its synchronisation primitives.
//!
//! Every module takes its atomics, `Arc` and `Mutex` from here so that building with
//! `--cfg brummer_loom` swaps them for loom's model-checked versions, and `--cfg
//! brummer_shuttle` for shuttle's (randomised schedules, every atomic treated as SeqCst),
//! without touching the structures themselves. Nothing else may live here: it must never add
//! behaviour, only names.

#[cfg(not(any(brummer_loom, brummer_shuttle)))]
#[allow(unused_imports)]
pub(crate) use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence},
};

#[cfg(brummer_loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence},
};

// Shuttle has no Arc of its own (it re-exports std's).
#[cfg(all(brummer_shuttle, not(brummer_loom)))]
#[allow(unused_imports)]
pub(crate) use shuttle::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence},
};

/// Busy-wait hint; under a model checker it must yield or the checker sees an endless spin.
#[cfg(not(any(brummer_loom, brummer_shuttle)))]
#[inline]
pub(crate) fn spin_hint() {
    std::hint::spin_loop();
}

#[cfg(brummer_loom)]
pub(crate) fn spin_hint() {
    loom::thread::yield_now();
}

#[cfg(all(brummer_shuttle, not(brummer_loom)))]
pub(crate) fn spin_hint() {
    shuttle::thread::yield_now();
}
