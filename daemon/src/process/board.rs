//! The board: every program's entry as the supervisor tasks see each other, so that a start
//! can wait for the programs it depends on (the registry belongs to the state layer above,
//! which replaces the board as a whole whenever it publishes the registry).

use super::entry::ProcessEntry;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// The programs by name.
pub type Programs = BTreeMap<Arc<str>, Arc<ProcessEntry>>;

pub struct Board {
    tx: watch::Sender<Arc<Programs>>,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            tx: watch::Sender::new(Arc::new(Programs::new())),
        }
    }
}

impl Board {
    /// Replaces the programs; every waiting start looks again.
    pub fn publish(&self, entries: impl IntoIterator<Item = Arc<ProcessEntry>>) {
        let programs: Programs = entries.into_iter().map(|e| (e.name.clone(), e)).collect();
        self.tx.send_replace(Arc::new(programs));
    }

    /// The programs now, and a receiver told of every later `publish`.
    pub fn watch(&self) -> watch::Receiver<Arc<Programs>> {
        self.tx.subscribe()
    }
}
