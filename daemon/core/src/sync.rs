//! Owns the single seam between brummer-core and its synchronisation primitives.
//!
//! Every module takes its atomics, `Arc` and `Mutex` from here so that building with
//! `--cfg brummer_loom` swaps them for loom's model-checked versions without touching the
//! structures themselves. Nothing else may live here: it must never add behaviour, only names.

#[cfg(not(brummer_loom))]
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

/// Busy-wait hint; under loom it must yield or the model checker sees an endless spin.
#[cfg(not(brummer_loom))]
#[inline]
pub(crate) fn spin_hint() {
    std::hint::spin_loop();
}

#[cfg(brummer_loom)]
pub(crate) fn spin_hint() {
    loom::thread::yield_now();
}
