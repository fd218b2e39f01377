//! The dependency graph of `requires`, `wants` and `after`: pure functions over program
//! names, used by `load` (unknown names, cycles) and by the operations (what a start pulls
//! in, what a stop takes down first, the order of `start --all` and of shutdown).
//!
//! An edge `web -> db` means web is ordered after db (web requires, wants or is after db).
//! Names a definition lists that the graph does not hold are ignored: the graph of a loaded
//! configuration has none, and a reload in progress may briefly show one.

use std::collections::{BTreeMap, BTreeSet};

use super::error::ConfigError;
use super::model::{DepKind, Deps, DepsAt, ProcessDef};

/// The programs and what each is ordered after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    nodes: BTreeMap<String, Deps>,
}

impl Graph {
    pub fn new<'a>(defs: impl IntoIterator<Item = (&'a str, &'a Deps)>) -> Graph {
        Graph {
            nodes: defs
                .into_iter()
                .map(|(n, d)| (n.to_owned(), d.clone()))
                .collect(),
        }
    }

    /// The graph of these definitions.
    pub fn of<'a>(defs: impl IntoIterator<Item = &'a ProcessDef>) -> Graph {
        Graph::new(defs.into_iter().map(|d| (d.name.as_str(), &d.deps)))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    /// What `name` is ordered after (every kind), among the graph's programs.
    pub fn dependencies<'s>(&'s self, name: &str) -> impl Iterator<Item = (DepKind, &'s str)> {
        self.nodes
            .get(name)
            .into_iter()
            .flat_map(|d| d.all())
            .filter(|(_, n)| self.nodes.contains_key(*n))
    }

    /// `names` and, transitively, what they require or want: what a start pulls in.
    pub fn pulled_in<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> BTreeSet<String> {
        self.closure(names, |g, n| {
            g.dependencies(n)
                .filter(|(k, _)| *k != DepKind::After)
                .map(|(_, d)| d.to_owned())
                .collect()
        })
    }

    /// The programs that require `names`, transitively, without `names` themselves: what a
    /// stop or restart of them takes along.
    pub fn requirers<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> BTreeSet<String> {
        let names: Vec<&str> = names.into_iter().collect();
        let mut out = self.closure(names.iter().copied(), |g, n| {
            g.nodes
                .iter()
                .filter(|(_, d)| d.requires.iter().any(|r| r == n))
                .map(|(m, _)| m.clone())
                .collect()
        });
        for n in names {
            out.remove(n);
        }
        out
    }

    /// The direct requirer of `name` among `among` that puts it in `requirers` (for saying
    /// why a program was stopped: "it requires db").
    pub fn required_of(&self, name: &str, among: &BTreeSet<String>) -> Option<String> {
        self.nodes
            .get(name)
            .and_then(|d| d.requires.iter().find(|r| among.contains(*r)).cloned())
    }

    fn closure<'n>(
        &self,
        names: impl IntoIterator<Item = &'n str>,
        next: impl Fn(&Graph, &str) -> Vec<String>,
    ) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<String> = names.into_iter().map(str::to_owned).collect();
        while let Some(n) = todo.pop() {
            if !self.nodes.contains_key(&n) || !out.insert(n.clone()) {
                continue;
            }
            todo.extend(next(self, &n));
        }
        out
    }

    /// Each program's level: 0 for one ordered after nothing, else one more than the highest
    /// level of what it is ordered after. Programs of one level can start (or stop) in
    /// parallel. A program on a cycle gets no level.
    pub fn levels(&self) -> BTreeMap<&str, usize> {
        let mut level: BTreeMap<&str, usize> = BTreeMap::new();
        // Kahn's algorithm: at most one pass per level, so at most n passes.
        let mut left: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
        while !left.is_empty() {
            let mut placed = Vec::new();
            left.retain(|n| {
                let deps: Option<Vec<usize>> = self
                    .dependencies(n)
                    .map(|(_, d)| level.get(d).copied())
                    .collect();
                match deps {
                    Some(ls) => {
                        placed.push((*n, ls.into_iter().max().map_or(0, |l| l + 1)));
                        false
                    }
                    None => true,
                }
            });
            if placed.is_empty() {
                break;
            }
            level.extend(placed);
        }
        level
    }

    /// One cycle, as the names along it with the first repeated at the end (`web -> worker
    /// -> db -> web` is `[web, worker, db, web]`), or `None` when the graph is acyclic.
    /// Deterministic: the search starts from names in order.
    pub fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut mark: BTreeMap<&str, Mark> =
            self.nodes.keys().map(|n| (n.as_str(), Mark::New)).collect();
        for start in self.nodes.keys() {
            if mark[start.as_str()] != Mark::New {
                continue;
            }
            // Iterative DFS: the path and, per node on it, its remaining dependencies.
            let mut path: Vec<(&str, Vec<&str>)> = Vec::new();
            mark.insert(start, Mark::OnPath);
            path.push((start, self.next_of(start)));
            while let Some((node, rest)) = path.last_mut() {
                let node = *node;
                match rest.pop() {
                    Some(d) => match mark[d] {
                        Mark::New => {
                            mark.insert(d, Mark::OnPath);
                            path.push((d, self.next_of(d)));
                        }
                        Mark::OnPath => {
                            let from = path.iter().position(|(n, _)| *n == d).unwrap_or(0);
                            let mut cycle: Vec<String> =
                                path[from..].iter().map(|(n, _)| n.to_string()).collect();
                            cycle.push(d.to_owned());
                            return Some(cycle);
                        }
                        Mark::Done => {}
                    },
                    None => {
                        mark.insert(node, Mark::Done);
                        path.pop();
                    }
                }
            }
        }
        None
    }

    /// A node's dependencies, reversed so that popping visits them in name order.
    fn next_of(&self, name: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self.dependencies(name).map(|(_, d)| d).collect();
        v.sort_unstable();
        v.dedup();
        v.reverse();
        v
    }

    /// The kind of the edge `from -> to` (the first kind listing `to`).
    pub fn kind(&self, from: &str, to: &str) -> Option<DepKind> {
        self.dependencies(from)
            .find(|(_, d)| *d == to)
            .map(|(k, _)| k)
    }
}

/// Checks the dependencies of a loaded configuration: every name, in valid and `broken`
/// definitions alike, is a program (`known` holds every name defined, valid or not, so
/// that a broken definition is reported once, by itself), and the graph of the valid ones
/// is acyclic.
pub(crate) fn check(
    processes: &BTreeMap<String, std::sync::Arc<ProcessDef>>,
    broken: &[ProcessDef],
    known: &BTreeSet<&str>,
    errors: &mut Vec<ConfigError>,
) {
    for def in processes.values().map(|d| &**d).chain(broken) {
        for (kind, target) in def.deps.all() {
            if known.contains(target) {
                continue;
            }
            let (line, key) = DepsAt::locate(def, kind, target);
            let hint = match brummer_proto::name::suggest(target, known.iter().copied()) {
                Some(s) => format!(": did you mean {s:?}?"),
                None => ": define it, or remove it from the list".to_owned(),
            };
            errors.push(ConfigError::new(
                &def.source.file,
                Some(line),
                Some(key),
                format!("unknown program {target:?}{hint}"),
            ));
        }
    }
    let graph = Graph::of(processes.values().map(|d| &**d));
    if let Some(cycle) = graph.find_cycle()
        && let Some(def) = processes.get(&cycle[0])
    {
        let kind = graph.kind(&cycle[0], &cycle[1]).unwrap_or(DepKind::After);
        let (line, key) = DepsAt::locate(def, kind, &cycle[1]);
        errors.push(ConfigError::new(
            &def.source.file,
            Some(line),
            Some(key),
            format!(
                "cycle: {}: programs cannot wait for each other; remove one of these dependencies",
                cycle.join(" -> ")
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program's name, requires, wants and after.
    type Edges<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str]);

    fn graph(edges: &[Edges<'_>]) -> Graph {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Graph {
            nodes: edges
                .iter()
                .map(|(n, r, w, a)| {
                    (
                        n.to_string(),
                        Deps {
                            requires: v(r),
                            wants: v(w),
                            after: v(a),
                        },
                    )
                })
                .collect(),
        }
    }

    fn stack() -> Graph {
        graph(&[
            ("db", &[], &[], &[]),
            ("cache", &[], &[], &[]),
            ("worker", &["db"], &[], &[]),
            ("web", &["worker"], &["cache"], &[]),
            ("metrics", &[], &[], &["web"]),
        ])
    }

    #[test]
    fn levels_follow_every_kind() {
        let g = stack();
        let l = g.levels();
        assert_eq!(l["db"], 0);
        assert_eq!(l["cache"], 0);
        assert_eq!(l["worker"], 1);
        assert_eq!(l["web"], 2);
        assert_eq!(l["metrics"], 3);
    }

    #[test]
    fn start_pulls_in_requires_and_wants_not_after() {
        let g = stack();
        let got: Vec<String> = g.pulled_in(["web"]).into_iter().collect();
        assert_eq!(got, ["cache", "db", "web", "worker"]);
        let got: Vec<String> = g.pulled_in(["metrics"]).into_iter().collect();
        assert_eq!(got, ["metrics"]);
    }

    #[test]
    fn stop_takes_requirers_only() {
        let g = stack();
        let got: Vec<String> = g.requirers(["db"]).into_iter().collect();
        assert_eq!(got, ["web", "worker"]);
        // web only wants cache.
        assert!(g.requirers(["cache"]).is_empty());
        let among = g.requirers(["db"]);
        assert_eq!(g.required_of("web", &among).as_deref(), Some("worker"));
    }

    #[test]
    fn cycles_are_spelled_out() {
        assert_eq!(stack().find_cycle(), None);
        let g = graph(&[
            ("db", &[], &[], &["web"]),
            ("worker", &["db"], &[], &[]),
            ("web", &["worker"], &[], &[]),
            ("alone", &[], &[], &[]),
        ]);
        assert_eq!(
            g.find_cycle().map(|c| c.join(" -> ")).as_deref(),
            Some("db -> web -> worker -> db")
        );
        // No level for the programs on the cycle.
        let l = g.levels();
        assert_eq!(l.get("alone"), Some(&0));
        assert!(!l.contains_key("web"));
    }

    #[test]
    fn unknown_targets_are_ignored_by_the_graph() {
        let g = graph(&[("web", &["gone"], &[], &[])]);
        assert_eq!(g.levels()["web"], 0);
        assert_eq!(g.pulled_in(["web"]).len(), 1);
    }
}
