//! `reload`: re-read the configuration and apply the difference. Programs added are created
//! (and started when they should: `State::add_process`), removed ones stopped, changed ones given their new
//! definition (and restarted when they were running), unchanged ones left alone. A
//! configuration that fails to load changes nothing.
//!
//! A plane asks with [`reload`]; the server's top loop runs [`apply`], so reloads are
//! serial and the registry has one writer.

use super::{Caller, OpError, may_change};
use crate::config::{self, Config, LoadOptions};
use crate::process::command::Outcome;
use crate::process::{Command, ProcessEntry};
use crate::shutdown::Later;
use crate::state::State;
use brummer_proto::events::Event;
use brummer_proto::methods::ReloadResult;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Asks the top loop to reload and waits for its answer.
pub async fn reload(state: &State, caller: &Caller) -> Result<ReloadResult, OpError> {
    may_change(state, caller)?;
    let rx = state.request_reload().ok_or(OpError::ReloadBusy)?;
    match rx.await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(msg)) => Err(OpError::ConfigInvalid(msg)),
        Err(_) => Err(OpError::ShuttingDown),
    }
}

/// The programs of the first configuration, published at once; each starts when it should
/// (`Desired::should_run`), and so does what those require or want (as systemd pulls in
/// the units a started unit requires or wants).
pub fn install(state: &State, config: &Config) {
    let graph = config::Graph::of(config.processes.values().map(|d| &**d));
    let starts = graph.pulled_in(
        config
            .processes
            .values()
            .filter(|d| state.desired().should_run(&d.name, d.autostart))
            .map(|d| d.name.as_str()),
    );
    let mut later = Later::default();
    let entries = config
        .processes
        .values()
        .map(|def| {
            let start = starts.contains(&def.name);
            (
                def.name.clone(),
                state.add_process_with(def.clone(), start, &mut later),
            )
        })
        .collect();
    state.publish(entries);
    later.run();
}

/// Loads the configuration again and applies the difference; the error is the
/// configuration's own report (every problem, with file, line and key).
pub async fn apply(state: &State, load: &LoadOptions) -> Result<ReloadResult, String> {
    let config = config::load(load).map_err(|e| e.to_string())?;
    state.set_loaded(config.inputs.clone());
    state.logs().set_ring_bytes(
        config
            .daemon
            .ring_bytes
            .unwrap_or(crate::logs::DEFAULT_RING_BYTES),
    );
    let current = state.registry().load_full();
    let mut result = ReloadResult::default();
    let mut next: BTreeMap<String, Arc<ProcessEntry>> = BTreeMap::new();
    let mut reconfigure = Vec::new();
    let mut added = Later::default();
    for (name, def) in &config.processes {
        match current.get(name) {
            Some(entry) => {
                if *entry.def() == **def {
                    result.unchanged.push(name.clone());
                } else {
                    result.changed.push(name.clone());
                    reconfigure.push((entry.clone(), def.clone()));
                }
                next.insert(name.clone(), entry.clone());
            }
            None => {
                result.added.push(name.clone());
                next.insert(name.clone(), state.add_process(def.clone(), &mut added));
            }
        }
    }
    let removed: Vec<Arc<ProcessEntry>> = current
        .iter()
        .filter(|(n, _)| !config.processes.contains_key(*n))
        .map(|(_, e)| e.clone())
        .collect();
    result.removed = removed.iter().map(|e| e.name.to_string()).collect();
    state.publish(next.into_iter().collect());
    for name in &result.added {
        state.bus().publish(Event::ProcessAdded {
            process: name.clone(),
        });
    }
    // Started once every added program's log is open, and after it was announced.
    added.run();
    for name in &result.removed {
        state.desired().forget(name);
        state.bus().publish(Event::ProcessRemoved {
            process: name.clone(),
        });
    }
    // Stops and restarts run in parallel; the answer waits for all of them.
    let mut set = tokio::task::JoinSet::new();
    for e in removed {
        set.spawn(async move { (e.name.clone(), e.send(Command::Remove).await) });
    }
    for (e, def) in reconfigure {
        set.spawn(async move {
            let r: Outcome = e.send(|tx| Command::Reconfigure(def, tx)).await;
            (e.name.clone(), r)
        });
    }
    while let Some(r) = set.join_next().await {
        if let Ok((name, Err(e))) = r {
            tracing::warn!(process = %name, cause = %e, "reload step failed");
        }
    }
    Ok(result)
}
