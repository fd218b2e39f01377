//! Which programs an operation acts on: names resolved against the registry (each once,
//! with a did-you-mean for an unknown one), every program, or entries a plane already holds.

use super::OpError;
use crate::process::ProcessEntry;
use crate::state::State;
use brummer_proto::methods::Selector;
use brummer_proto::name::suggest;
use std::sync::Arc;

pub enum Selection {
    All,
    Names(Vec<String>),
    /// Entries the caller holds already (a D-Bus object acts on its own program).
    Entries(Vec<Arc<ProcessEntry>>),
}

impl Selection {
    /// A socket selector; one that names nothing and does not ask for all is an error.
    pub fn of(sel: &Selector) -> Result<Selection, OpError> {
        if sel.all {
            Ok(Selection::All)
        } else if sel.names.is_empty() {
            Err(OpError::NothingSelected)
        } else {
            Ok(Selection::Names(sel.names.clone()))
        }
    }
}

pub fn select(state: &State, sel: Selection) -> Result<Vec<Arc<ProcessEntry>>, OpError> {
    match sel {
        Selection::All => Ok(state.entries()),
        Selection::Names(names) => names_or_all(state, &names),
        Selection::Entries(e) => Ok(e),
    }
}

/// The entries for the names asked for (duplicates once), every entry when `names` is
/// empty, or a did-you-mean error for the first unknown name.
pub fn names_or_all(state: &State, names: &[String]) -> Result<Vec<Arc<ProcessEntry>>, OpError> {
    let snap = state.registry().load();
    if names.is_empty() {
        return Ok(snap.iter().map(|(_, e)| e.clone()).collect());
    }
    let mut out: Vec<Arc<ProcessEntry>> = Vec::with_capacity(names.len());
    for n in names {
        match snap.get(n) {
            Some(e) => {
                if !out.iter().any(|o| o.name == e.name) {
                    out.push(e.clone());
                }
            }
            None => {
                return Err(OpError::NoSuchProcess {
                    name: n.clone(),
                    suggestion: suggest(n, snap.names()).map(str::to_owned),
                });
            }
        }
    }
    Ok(out)
}
