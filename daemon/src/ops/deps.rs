//! What the dependency graph adds to the lifecycle operations: a start takes along what the
//! programs asked for require or want (transitively), a stop or restart takes along the
//! programs that require them (systemd's Requires=), and stops run dependents first,
//! each program as soon as everything ordered after it is down, in parallel otherwise.
//! Starts need no order here: each waits at its own gate (`process::supervisor::gate`).

use crate::config::{DepKind, Graph, ProcessDef};
use crate::process::command::{Command, Reply};
use crate::process::{Failure, Outcome, ProcessEntry};
use crate::state::State;
use brummer_proto::ProcessState;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::watch;

/// A program an operation acts on, and why when it was not asked for by name.
pub struct Planned {
    pub entry: Arc<ProcessEntry>,
    /// `None` for a program asked for; else the note its outcome carries, e.g. "stopped
    /// because it requires db".
    pub why: Option<String>,
}

/// The graph of the programs' definitions in force.
pub fn graph(state: &State) -> Graph {
    let defs: Vec<Arc<ProcessDef>> = state.entries().iter().map(|e| e.def()).collect();
    Graph::of(defs.iter().map(|d| &**d))
}

/// `asked`, then what they require or want, transitively (each with why).
pub fn pulled_in(state: &State, graph: &Graph, asked: Vec<Arc<ProcessEntry>>) -> Vec<Planned> {
    let names: BTreeSet<String> = asked.iter().map(|e| e.name.to_string()).collect();
    let all = graph.pulled_in(names.iter().map(String::as_str));
    let mut plan: Vec<Planned> = asked
        .into_iter()
        .map(|entry| Planned { entry, why: None })
        .collect();
    let snap = state.registry().load();
    for name in all.difference(&names) {
        let Some(entry) = snap.get(name) else {
            continue;
        };
        // Who pulls it in: the first program of the set that requires or wants it.
        let by = all.iter().find_map(|m| {
            graph
                .dependencies(m)
                .find(|(k, d)| *d == name && *k != DepKind::After)
                .map(|(k, _)| (m.clone(), k))
        });
        let why = match by {
            Some((m, kind)) => format!("started because {m} {} it", kind.as_str()),
            None => "started as a dependency".to_owned(),
        };
        plan.push(Planned {
            entry: entry.clone(),
            why: Some(why),
        });
    }
    plan
}

/// `asked`, then the programs that require them, transitively, that are up or on their
/// way up (each with why: "{verb} because it requires db").
pub fn requirers(
    state: &State,
    graph: &Graph,
    asked: Vec<Arc<ProcessEntry>>,
    verb: &str,
) -> Vec<Planned> {
    let names: BTreeSet<String> = asked.iter().map(|e| e.name.to_string()).collect();
    let more = graph.requirers(names.iter().map(String::as_str));
    let mut plan: Vec<Planned> = asked
        .into_iter()
        .map(|entry| Planned { entry, why: None })
        .collect();
    let snap = state.registry().load();
    let mut taken = names.clone();
    taken.extend(more.iter().cloned());
    for name in &more {
        let Some(entry) = snap.get(name) else {
            continue;
        };
        if !is_up(entry) {
            continue;
        }
        let why = match graph.required_of(name, &taken) {
            Some(r) => format!("{verb} because it requires {r}"),
            None => format!("{verb} as a dependent"),
        };
        plan.push(Planned {
            entry: entry.clone(),
            why: Some(why),
        });
    }
    plan
}

/// Running, or on its way up or down (a start waiting at its gate included).
fn is_up(e: &ProcessEntry) -> bool {
    !matches!(
        e.cell.load().state(),
        ProcessState::Stopped | ProcessState::Exited | ProcessState::Failed
    )
}

/// Sends `make` to every entry, each once every entry ordered after it (its dependents
/// among `entries`) has answered: the order of a stop. Outcomes in `entries` order. With a
/// cycle (definitions of two generations during a reload) the order is dropped rather than
/// waited on for ever.
pub async fn stop_in_order(
    entries: &[Arc<ProcessEntry>],
    graph: &Graph,
    make: fn(Reply) -> Command,
) -> Vec<Outcome> {
    let ordered = graph.find_cycle().is_none();
    let index: BTreeMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (&*e.name, i))
        .collect();
    let (txs, rxs): (Vec<_>, Vec<_>) = entries.iter().map(|_| watch::channel(false)).unzip();
    let mut set = tokio::task::JoinSet::new();
    for (i, (e, tx)) in entries.iter().zip(txs).enumerate() {
        // The entries that depend on this one go first.
        let before: Vec<watch::Receiver<bool>> = if ordered {
            entries
                .iter()
                .filter(|d| graph.dependencies(&d.name).any(|(_, t)| t == &*e.name))
                .filter_map(|d| index.get(&*d.name).map(|&j| rxs[j].clone()))
                .collect()
        } else {
            Vec::new()
        };
        let e = e.clone();
        set.spawn(async move {
            for mut rx in before {
                // An error is a sender gone: that step ended without a word.
                let _ = rx.wait_for(|done| *done).await;
            }
            let outcome = e.send(make).await;
            let _ = tx.send(true);
            (i, outcome)
        });
    }
    drop(rxs);
    let mut outcomes: Vec<Outcome> = vec![Err(Failure::NoAnswer); entries.len()];
    while let Some(r) = set.join_next().await {
        if let Ok((i, outcome)) = r {
            outcomes[i] = outcome;
        }
    }
    outcomes
}
