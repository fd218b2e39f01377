//! `brummerctl deps [NAME...] [--reverse]`: the dependency graph as a tree, from the
//! `requires`, `wants` and `after` of every program's status (so it shows the definitions
//! in force), or as JSON.

use super::Ctx;
use crate::client::decode;
use crate::exit::{CtlError, OK};
use crate::output::{paint, state_color};
use brummer_proto::methods::{ProcessStatus, Request, Selector, StatusResult};
use serde::Serialize;
use std::collections::BTreeMap;

/// One program in `deps --json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct Node {
    pub name: String,
    pub state: brummer_proto::ProcessState,
    pub requires: Vec<String>,
    pub wants: Vec<String>,
    pub after: Vec<String>,
    /// The programs ordered after this one (those that require, want or are after it).
    pub dependents: Vec<String>,
}

#[derive(Debug, Serialize)]
struct DepsJson {
    programs: Vec<Node>,
}

pub fn run(ctx: &mut Ctx, names: Vec<String>, reverse: bool) -> Result<i32, CtlError> {
    let result = ctx.call(Request::Status(Selector::all()))?;
    let status: StatusResult = decode(result)?;
    if names
        .iter()
        .any(|n| !status.processes.iter().any(|p| &p.name == n))
    {
        // The daemon's own answer to an unknown name: its error, with a did-you-mean.
        ctx.call(Request::Status(Selector::names(names)))?;
        return Err(CtlError::BadReply(
            "a process is missing from the status of all".into(),
        ));
    }
    let nodes = nodes(&status.processes);
    if ctx.json {
        let programs = nodes
            .into_iter()
            .filter(|n| names.is_empty() || names.contains(&n.name))
            .collect();
        ctx.out.json_pretty(&DepsJson { programs })?;
    } else {
        ctx.out.text(&render(&nodes, &names, reverse, ctx.color))?;
    }
    Ok(OK)
}

/// Every program with its dependents filled in, in name order.
pub fn nodes(processes: &[ProcessStatus]) -> Vec<Node> {
    let mut nodes: BTreeMap<&str, Node> = processes
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                Node {
                    name: p.name.clone(),
                    state: p.state,
                    requires: p.requires.clone(),
                    wants: p.wants.clone(),
                    after: p.after.clone(),
                    dependents: Vec::new(),
                },
            )
        })
        .collect();
    for p in processes {
        for target in p.requires.iter().chain(&p.wants).chain(&p.after) {
            if let Some(n) = nodes.get_mut(target.as_str())
                && !n.dependents.contains(&p.name)
            {
                n.dependents.push(p.name.clone());
            }
        }
    }
    nodes.into_values().collect()
}

/// The tree: from `names` (else from every program nothing depends on, or with `reverse`
/// every program that depends on nothing), each edge labelled with its kind.
pub fn render(nodes: &[Node], names: &[String], reverse: bool, color: bool) -> String {
    let by: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let roots: Vec<&str> = if names.is_empty() {
        nodes
            .iter()
            .filter(|n| {
                if reverse {
                    n.requires.is_empty() && n.wants.is_empty() && n.after.is_empty()
                } else {
                    n.dependents.is_empty()
                }
            })
            .map(|n| n.name.as_str())
            .collect()
    } else {
        names.iter().map(String::as_str).collect()
    };
    if roots.is_empty() {
        return "no processes configured\n".to_owned();
    }
    let mut out = String::new();
    for root in roots {
        let mut path = Vec::new();
        line(&mut out, &by, root, "", "", "", color);
        children(&mut out, &by, root, "", reverse, color, &mut path);
    }
    out
}

fn line(
    out: &mut String,
    by: &BTreeMap<&str, &Node>,
    name: &str,
    prefix: &str,
    branch: &str,
    kind: &str,
    color: bool,
) {
    let state = by.get(name).map(|n| n.state);
    let state = match state {
        Some(s) => paint(s.as_str(), Some(state_color(s)), color),
        None => "unknown".to_owned(),
    };
    out.push_str(&format!("{prefix}{branch}{kind}{name} ({state})\n"));
}

fn children<'a>(
    out: &mut String,
    by: &BTreeMap<&'a str, &'a Node>,
    name: &'a str,
    prefix: &str,
    reverse: bool,
    color: bool,
    path: &mut Vec<&'a str>,
) {
    let Some(node) = by.get(name) else {
        return;
    };
    // A loaded configuration has no cycle; the path guard keeps a bad answer finite.
    if path.contains(&name) {
        return;
    }
    path.push(name);
    let edges: Vec<(&str, &str)> = if reverse {
        node.dependents
            .iter()
            .map(|d| {
                let kind = by.get(d.as_str()).map_or("", |dn| {
                    if dn.requires.iter().any(|x| x == name) {
                        "required by "
                    } else if dn.wants.iter().any(|x| x == name) {
                        "wanted by "
                    } else {
                        "before "
                    }
                });
                (kind, d.as_str())
            })
            .collect()
    } else {
        let of = |kind: &'static str, v: &'a [String]| v.iter().map(move |d| (kind, d.as_str()));
        of("requires ", &node.requires)
            .chain(of("wants ", &node.wants))
            .chain(of("after ", &node.after))
            .collect()
    };
    let last = edges.len().saturating_sub(1);
    for (i, (kind, d)) in edges.into_iter().enumerate() {
        let (branch, more) = if i == last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        line(out, by, d, prefix, branch, kind, color);
        children(out, by, d, &format!("{prefix}{more}"), reverse, color, path);
    }
    path.pop();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::status::tests::proc;
    use brummer_proto::ProcessState;

    fn stack() -> Vec<Node> {
        let mut db = proc("db", ProcessState::Running);
        db.state = ProcessState::Running;
        let cache = proc("cache", ProcessState::Stopped);
        let mut worker = proc("worker", ProcessState::Running);
        worker.requires = vec!["db".into()];
        let mut web = proc("web", ProcessState::Starting);
        web.requires = vec!["worker".into()];
        web.wants = vec!["cache".into()];
        nodes(&[cache, db, web, worker])
    }

    #[test]
    fn tree_from_the_top() {
        assert_eq!(
            render(&stack(), &[], false, false),
            "web (starting)\n├─ requires worker (running)\n│  └─ requires db (running)\n└─ wants cache (stopped)\n"
        );
    }

    #[test]
    fn reverse_tree_from_the_bottom() {
        assert_eq!(
            render(&stack(), &["db".into()], true, false),
            "db (running)\n└─ required by worker (running)\n   └─ required by web (starting)\n"
        );
    }

    #[test]
    fn dependents_are_filled_in() {
        let n = stack();
        let db = n.iter().find(|n| n.name == "db").unwrap();
        assert_eq!(db.dependents, ["worker"]);
    }
}
