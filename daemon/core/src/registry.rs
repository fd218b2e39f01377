//! Owns `Registry<E>`, the name -> entry map of supervised programs.
//!
//! Readers (control requests, `list`, log lookups) get a whole immutable `Snapshot` with one
//! lock-free `ArcSwap` load; writers (config reload, add/remove) are serialised by a mutex
//! and publish a fresh snapshot. It must never hand out a half-updated map, and readers must
//! never take the writer mutex.

use crate::sync::Mutex;
use arc_swap::{ArcSwap, Cache, Guard};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// An immutable view of the registry: hash lookup plus name-ordered iteration.
pub struct Snapshot<E> {
    map: FxHashMap<Box<str>, Arc<E>>,
    sorted: Vec<(Box<str>, Arc<E>)>,
}

impl<E> Snapshot<E> {
    pub fn empty() -> Self {
        Snapshot {
            map: FxHashMap::default(),
            sorted: Vec::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<E>> {
        self.map.get(name)
    }

    /// Name order, so listings are stable without the caller sorting.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<E>)> {
        self.sorted.iter().map(|(n, e)| (&**n, e))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sorted.iter().map(|(n, _)| &**n)
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// A later duplicate name replaces an earlier one, like inserting into a map would.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, Arc<E>)>) -> Self {
        let mut map: FxHashMap<Box<str>, Arc<E>> = FxHashMap::default();
        for (name, e) in entries {
            map.insert(name.into_boxed_str(), e);
        }
        let mut sorted: Vec<(Box<str>, Arc<E>)> = map
            .iter()
            .map(|(n, e)| (n.clone(), Arc::clone(e)))
            .collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Snapshot { map, sorted }
    }

    /// Copy of this snapshot with `name` set to `e`; the returned Option is the entry it
    /// replaced. Costs O(n), which is the price of readers never locking.
    pub fn with(&self, name: &str, e: Arc<E>) -> (Self, Option<Arc<E>>) {
        let mut next = self.clone();
        let old = next.map.insert(name.into(), Arc::clone(&e));
        match next.sorted.binary_search_by(|(n, _)| (**n).cmp(name)) {
            Ok(i) => next.sorted[i].1 = e,
            Err(i) => next.sorted.insert(i, (name.into(), e)),
        }
        (next, old)
    }

    /// Copy of this snapshot without `name`, plus the removed entry.
    pub fn without(&self, name: &str) -> (Self, Option<Arc<E>>) {
        let mut next = self.clone();
        let old = next.map.remove(name);
        if let Ok(i) = next.sorted.binary_search_by(|(n, _)| (**n).cmp(name)) {
            next.sorted.remove(i);
        }
        (next, old)
    }
}

// Manual impls: deriving would demand `E: Clone`/`E: Default`, but only the Arcs are cloned.
impl<E> Clone for Snapshot<E> {
    fn clone(&self) -> Self {
        Snapshot {
            map: self.map.clone(),
            sorted: self.sorted.clone(),
        }
    }
}

impl<E> Default for Snapshot<E> {
    fn default() -> Self {
        Snapshot::empty()
    }
}

impl<E> std::fmt::Debug for Snapshot<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// Copy-on-write registry: lock-free reads, mutex-serialised writes.
pub struct Registry<E> {
    current: ArcSwap<Snapshot<E>>,
    // Serialises read-modify-write cycles so two writers cannot both build on the same old
    // snapshot and lose one update; ArcSwap's own rcu would retry `f`, which may have side
    // effects.
    writer: Mutex<()>,
}

impl<E> Registry<E> {
    pub fn new() -> Self {
        Registry {
            current: ArcSwap::from_pointee(Snapshot::empty()),
            writer: Mutex::new(()),
        }
    }

    pub fn load(&self) -> Guard<Arc<Snapshot<E>>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Snapshot<E>> {
        self.current.load_full()
    }

    pub fn get(&self, name: &str) -> Option<Arc<E>> {
        self.current.load().get(name).cloned()
    }

    /// A caching handle for one long-lived reader (a connection, a forwarder task).
    ///
    /// `load` through the registry claims and releases an arc-swap debt slot, two atomic
    /// read-modify-writes, about what an uncontended lock costs. A `Reader` keeps its own
    /// strong reference to the snapshot it last saw and only compares that pointer with the
    /// current one (one plain load), fetching the new snapshot only after a writer swapped.
    /// The price: the reader keeps its last snapshot, and every entry in it, alive until its
    /// next `load` or its drop, so a reader that idles for long should be dropped or use
    /// `Registry::load` instead.
    pub fn reader(&self) -> Reader<'_, E> {
        Reader {
            cache: Cache::new(&self.current),
        }
    }

    /// Serialised writer: `f` sees the current snapshot and returns its replacement, which
    /// is swapped in as a whole. `f` runs under the writer mutex, so it must not call
    /// `update` itself (that would deadlock); reading via `load` inside it is fine.
    pub fn update<R>(&self, f: impl FnOnce(&Snapshot<E>) -> (Snapshot<E>, R)) -> R {
        // A writer that panicked inside `f` never swapped anything in, so the published
        // snapshot is still whole and the poison carries no information worth dying for.
        let _serial = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let cur = self.current.load_full();
        let (next, r) = f(&cur);
        self.current.store(Arc::new(next));
        r
    }

    /// Sets `name` to `e`, returning the entry it replaced.
    pub fn insert(&self, name: &str, e: Arc<E>) -> Option<Arc<E>> {
        self.update(|s| s.with(name, e))
    }

    /// Removes `name`, returning the removed entry.
    pub fn remove(&self, name: &str) -> Option<Arc<E>> {
        self.update(|s| s.without(name))
    }
}

/// A registry reader with its own cached snapshot; see `Registry::reader`. Not `Sync`: one
/// per reader, which is what makes its `load` free of read-modify-writes.
pub struct Reader<'a, E> {
    cache: Cache<&'a ArcSwap<Snapshot<E>>, Arc<Snapshot<E>>>,
}

impl<E> Reader<'_, E> {
    /// The current snapshot: the cached one unless a writer swapped since the last call.
    #[inline]
    pub fn load(&mut self) -> &Arc<Snapshot<E>> {
        self.cache.load()
    }

    #[inline]
    pub fn get(&mut self, name: &str) -> Option<&Arc<E>> {
        self.cache.load().get(name)
    }
}

impl<E> Default for Registry<E> {
    fn default() -> Self {
        Registry::new()
    }
}

#[cfg(all(test, not(any(brummer_loom, brummer_shuttle))))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn empty_insert_get_remove() {
        let r: Registry<u32> = Registry::new();
        assert!(r.load().is_empty());
        assert_eq!(r.insert("web", Arc::new(1)), None);
        assert_eq!(r.insert("api", Arc::new(2)).as_deref(), None);
        assert_eq!(r.insert("web", Arc::new(3)).as_deref(), Some(&1));
        assert_eq!(r.get("web").as_deref(), Some(&3));
        assert_eq!(r.load().names().collect::<Vec<_>>(), ["api", "web"]);
        assert_eq!(r.remove("api").as_deref(), Some(&2));
        assert_eq!(r.remove("api"), None);
        assert_eq!(r.load().len(), 1);
        assert!(r.get("api").is_none());
    }

    #[test]
    fn reader_follows_updates_and_keeps_only_its_last_snapshot() {
        let r: Registry<u32> = Registry::new();
        r.insert("a", Arc::new(1));
        let mut rd = r.reader();
        assert_eq!(rd.get("a").map(|e| **e), Some(1));
        let before = Arc::clone(rd.load());
        r.insert("a", Arc::new(2));
        r.insert("b", Arc::new(3));
        assert_eq!(rd.get("a").map(|e| **e), Some(2));
        assert_eq!(rd.load().len(), 2);
        // The old snapshot is held only by `before` now: the reader let go of it.
        assert_eq!(Arc::strong_count(&before), 1);
        r.remove("a");
        assert!(rd.get("a").is_none());
    }

    #[test]
    fn from_entries_sorts_and_last_duplicate_wins() {
        let s = Snapshot::from_entries([
            ("b".to_string(), Arc::new(1)),
            ("a".to_string(), Arc::new(2)),
            ("b".to_string(), Arc::new(3)),
        ]);
        let v: Vec<(&str, i32)> = s.iter().map(|(n, e)| (n, **e)).collect();
        assert_eq!(v, [("a", 2), ("b", 3)]);
        assert_eq!(s.get("b").map(|e| **e), Some(3));
        assert!(s.contains("a") && !s.contains("c"));
    }

    #[test]
    fn update_returns_value_and_old_snapshots_stay_valid() {
        let r: Registry<String> = Registry::new();
        r.insert("x", Arc::new("one".into()));
        let old = r.load_full();
        let n = r.update(|s| {
            let (s, _) = s.with("y", Arc::new("two".into()));
            let len = s.len();
            (s, len)
        });
        assert_eq!(n, 2);
        assert_eq!(old.len(), 1);
        assert_eq!(r.load().len(), 2);
    }

    #[test]
    fn panicking_writer_leaves_registry_usable() {
        let r: Arc<Registry<u8>> = Arc::new(Registry::new());
        let r2 = Arc::clone(&r);
        let res = std::thread::spawn(move || {
            r2.update(|_| -> (Snapshot<u8>, ()) { panic!("writer bug") });
        })
        .join();
        assert!(res.is_err());
        r.insert("a", Arc::new(1));
        assert_eq!(r.load().len(), 1);
    }

    /// Each update writes generation g into every entry and sets exactly g entries, so a
    /// reader that ever sees a mix of generations or a length != value saw a torn snapshot.
    #[test]
    fn concurrent_readers_see_only_whole_snapshots() {
        let r: Arc<Registry<u64>> = Arc::new(Registry::new());
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..3 {
            let r = Arc::clone(&r);
            let stop = Arc::clone(&stop);
            readers.push(std::thread::spawn(move || {
                let mut seen = 0u64;
                let mut last_generation = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let s = r.load();
                    let generation = s.get("p000").map_or(0, |e| **e);
                    assert!(generation >= last_generation, "snapshots went backwards");
                    last_generation = generation;
                    assert_eq!(s.len() as u64, generation);
                    let mut prev: Option<&str> = None;
                    for (name, e) in s.iter() {
                        assert_eq!(**e, generation, "mixed generations in one snapshot");
                        assert_eq!(s.get(name).map(|e| **e), Some(generation));
                        assert!(prev < Some(name), "not sorted");
                        prev = Some(name);
                    }
                    seen += 1;
                }
                seen
            }));
        }
        for g in 1..=300u64 {
            r.update(|_| {
                let next =
                    Snapshot::from_entries((0..g).map(|i| (format!("p{i:03}"), Arc::new(g))));
                (next, ())
            });
        }
        stop.store(true, Ordering::Relaxed);
        for h in readers {
            assert!(h.join().unwrap() > 0);
        }
        assert_eq!(r.load().len(), 300);
    }
}
