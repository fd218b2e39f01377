//! Owns `StatusCell`, the per-process hot status word (state, pid, restarts, generation).
//!
//! The process's supervisor task is the only writer; the control server, `list`, metrics and
//! anything else that wants "what is it doing right now" read it with a single load, so a
//! reader can never see a pid from one run paired with the state of another. It must never
//! grow beyond one `AtomicU64`: the moment it needs two words it needs a lock or a seqlock,
//! and the cold details belong in the ArcSwap'd `ProcessInfo` instead.

use crate::sync::{AtomicU64, Ordering};
use brummer_proto::ProcessState;

/// The fields of the packed status word, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hot {
    pub state: ProcessState,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub generation: u32,
}

impl Default for Hot {
    fn default() -> Self {
        Hot {
            state: ProcessState::Stopped,
            pid: None,
            restarts: 0,
            generation: 0,
        }
    }
}

// Layout, high to low: state 4 | pid 22 | restarts 19 | generation 19 = 64 bits.
const GEN_BITS: u32 = 19;
const RESTART_BITS: u32 = 19;
const PID_BITS: u32 = 22;
const RESTART_SHIFT: u32 = GEN_BITS;
const PID_SHIFT: u32 = GEN_BITS + RESTART_BITS;
const STATE_SHIFT: u32 = PID_SHIFT + PID_BITS;

/// Largest pid the word can hold. Linux's PID_MAX_LIMIT is 2^22, so real pids stay below.
pub const PID_MAX: u32 = (1 << PID_BITS) - 1;
/// Restart counts stop here rather than wrap, so a crash-looping program never looks fresh.
pub const RESTARTS_MAX: u32 = (1 << RESTART_BITS) - 1;
/// Generations keep only these low bits; the full counter lives in `ProcessInfo`.
pub const GENERATION_MASK: u32 = (1 << GEN_BITS) - 1;

/// A status as one load returned it: the packed word, decoded field by field on demand.
///
/// `Copy` and 8 bytes, so a reader pays for the load and then only for the fields it looks
/// at (`list` wants the state, D-Bus `Pid` wants the pid); decoding all four costs more than
/// the load itself. All fields come from the same store, whichever ones are decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct StatusWord(u64);

impl StatusWord {
    /// A state nibble no `pack` can produce decodes as `Failed`: an unknown state must not
    /// look like a harmless `Stopped` to whoever acts on it.
    #[inline]
    pub fn state(self) -> ProcessState {
        ProcessState::from_u8((self.0 >> STATE_SHIFT) as u8 & 0xf).unwrap_or(ProcessState::Failed)
    }

    /// Pid 0 encodes `None`: the kernel never hands pid 0 to a child.
    #[inline]
    pub fn pid(self) -> Option<u32> {
        let pid = ((self.0 >> PID_SHIFT) as u32) & PID_MAX;
        (pid != 0).then_some(pid)
    }

    #[inline]
    pub fn restarts(self) -> u32 {
        ((self.0 >> RESTART_SHIFT) as u32) & RESTARTS_MAX
    }

    /// Low `GENERATION_MASK` bits of the generation.
    #[inline]
    pub fn generation(self) -> u32 {
        (self.0 as u32) & GENERATION_MASK
    }

    /// Every field decoded.
    #[inline]
    pub fn hot(self) -> Hot {
        Hot {
            state: self.state(),
            pid: self.pid(),
            restarts: self.restarts(),
            generation: self.generation(),
        }
    }

    /// The raw word, as stored.
    #[inline]
    pub fn bits(self) -> u64 {
        self.0
    }
}

impl From<Hot> for StatusWord {
    fn from(h: Hot) -> Self {
        StatusWord(StatusCell::pack(h))
    }
}

impl std::fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.hot().fmt(f)
    }
}

/// One process's hot status, readable by anyone with one Acquire load.
#[derive(Debug)]
pub struct StatusCell {
    word: AtomicU64,
}

impl StatusCell {
    pub fn new(h: Hot) -> Self {
        StatusCell {
            word: AtomicU64::new(Self::pack(h)),
        }
    }

    /// Acquire pairs with `store`'s Release so that whatever the supervisor published before
    /// the status change (e.g. the new `ProcessInfo`) is visible to whoever sees the change.
    /// Nothing is decoded here: the caller decodes the fields it needs from the snapshot.
    #[inline]
    pub fn load(&self) -> StatusWord {
        StatusWord(self.word.load(Ordering::Acquire))
    }

    /// Only the process's supervisor task may call this; with one writer a plain store is
    /// enough and there is no read-modify-write to lose updates in.
    pub fn store(&self, h: Hot) {
        self.word.store(Self::pack(h), Ordering::Release);
    }

    /// Pid 0 encodes `None`: the kernel never hands pid 0 to a child.
    pub fn pack(h: Hot) -> u64 {
        let state = u64::from(h.state as u8) & 0xf;
        let pid = u64::from(h.pid.unwrap_or(0).min(PID_MAX));
        let restarts = u64::from(h.restarts.min(RESTARTS_MAX));
        let generation = u64::from(h.generation & GENERATION_MASK);
        (state << STATE_SHIFT) | (pid << PID_SHIFT) | (restarts << RESTART_SHIFT) | generation
    }

    /// Decodes every field of a raw word (see `StatusWord` for one field at a time).
    pub fn unpack(w: u64) -> Hot {
        StatusWord(w).hot()
    }

    /// Convenience for the supervisor: read, change, store. Not atomic against other
    /// writers, which is fine because there are none.
    pub fn modify(&self, f: impl FnOnce(&mut Hot)) -> Hot {
        let mut h = self.load().hot();
        f(&mut h);
        self.store(h);
        self.load().hot()
    }
}

impl Default for StatusCell {
    fn default() -> Self {
        StatusCell::new(Hot::default())
    }
}

#[cfg(all(test, not(any(brummer_loom, brummer_shuttle))))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = ProcessState> {
        proptest::sample::select(ProcessState::ALL.to_vec())
    }

    fn normalise(h: Hot) -> Hot {
        let pid = h.pid.map(|p| p.min(PID_MAX)).filter(|&p| p != 0);
        Hot {
            state: h.state,
            pid,
            restarts: h.restarts.min(RESTARTS_MAX),
            generation: h.generation & GENERATION_MASK,
        }
    }

    #[test]
    fn default_is_stopped_and_empty() {
        let c = StatusCell::default();
        assert_eq!(c.load().hot(), Hot::default());
        assert_eq!(StatusCell::pack(Hot::default()), 0);
    }

    #[test]
    fn boundaries_saturate_clamp_and_wrap() {
        let h = Hot {
            state: ProcessState::Failed,
            pid: Some(u32::MAX),
            restarts: u32::MAX,
            generation: GENERATION_MASK + 5,
        };
        let u = StatusCell::unpack(StatusCell::pack(h));
        assert_eq!(u.pid, Some(PID_MAX));
        assert_eq!(u.restarts, RESTARTS_MAX);
        assert_eq!(u.generation, 4);
        assert_eq!(u.state, ProcessState::Failed);
        // Largest real pid (PID_MAX_LIMIT - 1) survives untouched.
        let h = Hot {
            pid: Some((1 << 22) - 1),
            ..Hot::default()
        };
        assert_eq!(StatusCell::unpack(StatusCell::pack(h)), h);
    }

    #[test]
    fn garbage_state_nibble_is_failed() {
        let w = 0xfu64 << STATE_SHIFT;
        assert_eq!(StatusCell::unpack(w).state, ProcessState::Failed);
    }

    #[test]
    fn store_then_load_and_modify() {
        let c = StatusCell::default();
        let h = Hot {
            state: ProcessState::Running,
            pid: Some(4242),
            restarts: 3,
            generation: 7,
        };
        c.store(h);
        assert_eq!(c.load().hot(), h);
        assert_eq!(c.load(), StatusWord::from(h));
        let after = c.modify(|h| h.restarts += 1);
        assert_eq!(after.restarts, 4);
        assert_eq!(c.load().pid(), Some(4242));
    }

    proptest! {
        #[test]
        fn pack_unpack_roundtrip(
            state in any_state(),
            pid in proptest::option::of(prop_oneof![0u32..=PID_MAX, any::<u32>()]),
            restarts in prop_oneof![0u32..=RESTARTS_MAX, any::<u32>()],
            generation in any::<u32>(),
        ) {
            let h = Hot { state, pid, restarts, generation };
            let w = StatusCell::pack(h);
            prop_assert_eq!(StatusCell::unpack(w), normalise(h));
            // Repacking the decoded value is the identity: no field bleeds into another.
            prop_assert_eq!(StatusCell::pack(StatusCell::unpack(w)), w);
        }

        #[test]
        fn unpack_never_panics(w in any::<u64>()) {
            let h = StatusCell::unpack(w);
            prop_assert!(h.pid.is_none_or(|p| p <= PID_MAX && p != 0));
            prop_assert!(h.restarts <= RESTARTS_MAX);
            prop_assert!(h.generation <= GENERATION_MASK);
        }
    }
}
