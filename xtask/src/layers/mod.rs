//! `cargo xtask layers`: checks brummerd's modules against the layer rule of
//! `docs/architecture.md` ("## Layers"): a top-level module of `daemon/src` may use its own
//! submodules and modules of lower layers only, every module is placed in a layer, and no
//! folder has a cycle between its sibling files.

mod scan;

use anyhow::{Context, bail};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

const DOC: &str = "docs/architecture.md";
const SRC: &str = "daemon/src";
const RULE: &str = "a module may use its own submodules and the modules of lower layers only";

/// The layers block: layer names, highest first, and the layer index of each module.
#[derive(Debug)]
pub struct Layers {
    names: Vec<String>,
    of: BTreeMap<String, usize>,
}

impl Layers {
    /// Reads the ```layers block under "## Layers" in `doc`: one `layer: module ...` line per
    /// layer, highest first.
    pub fn parse(doc: &str) -> anyhow::Result<Layers> {
        let section = doc
            .split("\n## ")
            .find(|s| s.starts_with("Layers"))
            .context("no \"## Layers\" section")?;
        let block = section
            .split_once("```layers\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(b, _)| b)
            .context("no ```layers block in the \"## Layers\" section")?;
        let mut layers = Layers {
            names: Vec::new(),
            of: BTreeMap::new(),
        };
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            let (name, modules) = line
                .split_once(':')
                .with_context(|| format!("layers block: {line:?} is not `layer: module ...`"))?;
            let idx = layers.names.len();
            layers.names.push(name.trim().to_owned());
            for m in modules.split_whitespace() {
                if let Some(prev) = layers.of.insert(m.to_owned(), idx) {
                    bail!(
                        "layers block: module {m} is in layer {} and in layer {}",
                        layers.names[prev],
                        name.trim()
                    );
                }
            }
        }
        if layers.names.is_empty() {
            bail!("layers block is empty");
        }
        Ok(layers)
    }

    /// Higher is a higher layer.
    fn rank(&self, module: &str) -> Option<usize> {
        self.of.get(module).map(|&i| self.names.len() - i)
    }

    fn name(&self, module: &str) -> &str {
        &self.names[self.of[module]]
    }
}

/// One broken rule, at a place in `daemon/src`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// Relative to `daemon/src`.
    pub file: String,
    pub line: usize,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SRC}/{}:{}: {}", self.file, self.line, self.what)
    }
}

/// The module path a file under `daemon/src` defines (`control/conn.rs` is
/// `["control", "conn"]`, `control/mod.rs` is `["control"]`); `None` for `main.rs`.
fn module_of(file: &str) -> Option<Vec<String>> {
    let stem = file.strip_suffix(".rs")?;
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    match parts.as_slice() {
        [only] if only == "main" => return None,
        [only] if only == "lib" => return Some(Vec::new()),
        _ => {}
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
}

/// One edge between sibling modules of a folder, at its first place.
#[derive(Clone, Debug)]
struct Edge {
    file: String,
    line: usize,
}

/// Checks `files` (path relative to `daemon/src` -> source text) against `layers`.
pub fn check(layers: &Layers, files: &BTreeMap<String, String>) -> Vec<Violation> {
    let modules: BTreeSet<Vec<String>> = files.keys().filter_map(|f| module_of(f)).collect();
    let mut out = Vec::new();

    // Every top-level module is placed.
    let top: BTreeSet<&str> = modules
        .iter()
        .filter_map(|m| m.first().map(String::as_str))
        .collect();
    for &m in &top {
        if layers.rank(m).is_none() {
            let file = if files.contains_key(&format!("{m}.rs")) {
                format!("{m}.rs")
            } else {
                format!("{m}/mod.rs")
            };
            out.push(Violation {
                file,
                line: 1,
                what: format!(
                    "module {m} is in no layer: every module of {SRC} must be placed in the \
                     layers block of {DOC}"
                ),
            });
        }
    }

    // folder -> from sibling -> to sibling -> first place.
    let mut graph: BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, Edge>>> =
        BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (file, src) in files {
        let Some(me) = module_of(file) else { continue };
        let Some(home) = me.first() else { continue };
        for r in scan::references(src, &me) {
            let t = &r.path;
            // Layer rule between top-level modules.
            if let Some(target) = t.first().filter(|x| *x != home && top.contains(x.as_str()))
                && let (Some(lm), Some(lt)) = (layers.rank(home), layers.rank(target))
                && lt >= lm
                && seen.insert((file.clone(), r.line, target.clone()))
            {
                let why = if lt == lm {
                    "both are in one layer, so neither may use the other"
                } else {
                    "that layer is above this one"
                };
                out.push(Violation {
                    file: file.clone(),
                    line: r.line,
                    what: format!(
                        "module {home} (layer {}) uses crate::{} (layer {}): {why}; {RULE}",
                        layers.name(home),
                        t.join("::"),
                        layers.name(target),
                    ),
                });
            }
            // An edge between siblings: the first segment where the paths part, if the
            // target there is a module of that folder (not an item of its mod.rs).
            let k = me.iter().zip(t).take_while(|(a, b)| a == b).count();
            if k < me.len() && k < t.len() && modules.contains(&t[..=k]) {
                graph
                    .entry(me[..k].to_vec())
                    .or_default()
                    .entry(me[k].clone())
                    .or_default()
                    .entry(t[k].clone())
                    .or_insert(Edge {
                        file: file.clone(),
                        line: r.line,
                    });
            }
        }
    }

    for (folder, edges) in &graph {
        // Between top-level modules the layer rule already forbids every cycle whose
        // modules are all placed; report those where an unplaced module hides it.
        let judged = |scc: &BTreeSet<&String>| {
            folder.is_empty() && scc.iter().all(|m| layers.rank(m).is_some())
        };
        out.extend(cycles(folder, edges, judged));
    }
    out.sort();
    out
}

/// The cycles among one folder's siblings: for each strongly connected set (but those
/// `reported_elsewhere`), shortest cycles until every member is on one, each spelled out
/// with where every step is.
fn cycles(
    folder: &[String],
    edges: &BTreeMap<String, BTreeMap<String, Edge>>,
    reported_elsewhere: impl Fn(&BTreeSet<&String>) -> bool,
) -> Vec<Violation> {
    let nodes: BTreeSet<&String> = edges
        .iter()
        .flat_map(|(a, to)| std::iter::once(a).chain(to.keys()))
        .collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in edges.get(&n).into_iter().flat_map(|m| m.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|&n| (n, reach(n))).collect();
    let dir = if folder.is_empty() {
        format!("{SRC}/")
    } else {
        format!("{SRC}/{}/", folder.join("/"))
    };
    let mut out = Vec::new();
    let mut covered = BTreeSet::new();
    for &n in &nodes {
        if covered.contains(n) || !reachable[n].contains(n) {
            continue;
        }
        let scc: BTreeSet<&String> = nodes
            .iter()
            .copied()
            .filter(|m| reachable[n].contains(*m) && reachable[*m].contains(n))
            .collect();
        if reported_elsewhere(&scc) {
            covered.extend(scc.iter().map(|s| (*s).clone()));
            continue;
        }
        for &m in &scc {
            if covered.contains(m) {
                continue;
            }
            let cycle = shortest_cycle(m, edges, &scc);
            let mut text = cycle[0].clone();
            for pair in cycle.windows(2) {
                let e = &edges[&pair[0]][&pair[1]];
                text.push_str(&format!(" -> {} ({}:{})", pair[1], e.file, e.line));
            }
            covered.extend(cycle.iter().cloned());
            let first = &edges[&cycle[0]][&cycle[1]];
            let members: Vec<&str> = scc.iter().map(|s| s.as_str()).collect();
            out.push(Violation {
                file: first.file.clone(),
                line: first.line,
                what: format!(
                    "cycle between sibling modules of {dir}: {text}; sibling files must not use \
                     each other in a circle (all of {{{}}} are on one)",
                    members.join(", ")
                ),
            });
        }
    }
    out
}

/// The shortest path from `start` back to itself inside `within` (which holds a cycle through
/// `start`), as the list of nodes, `start` at both ends.
fn shortest_cycle(
    start: &String,
    edges: &BTreeMap<String, BTreeMap<String, Edge>>,
    within: &BTreeSet<&String>,
) -> Vec<String> {
    let mut parent: BTreeMap<&String, &String> = BTreeMap::new();
    let mut todo = VecDeque::from([start]);
    while let Some(n) = todo.pop_front() {
        for next in edges.get(n).into_iter().flat_map(|m| m.keys()) {
            if !within.contains(next) {
                continue;
            }
            if next == start {
                let mut path = vec![start.clone()];
                let mut at = n;
                while at != start {
                    path.push(at.clone());
                    at = parent[at];
                }
                path.push(start.clone());
                path.reverse();
                return path;
            }
            if !parent.contains_key(next) {
                parent.insert(next, n);
                todo.push_back(next);
            }
        }
    }
    vec![start.clone(), start.clone()]
}

/// Every `.rs` file under `dir`, keyed by its path relative to `dir`.
fn read_tree(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(dir)?
                    .to_str()
                    .with_context(|| format!("{} is not UTF-8", path.display()))?
                    .to_owned();
                let text = fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                files.insert(rel, text);
            }
        }
    }
    Ok(files)
}

/// Runs the check on the repository at `root`; prints every violation, exits 1 on any.
pub fn run(root: &Path) -> anyhow::Result<ExitCode> {
    let doc = fs::read_to_string(root.join(DOC)).with_context(|| format!("cannot read {DOC}"))?;
    let layers = Layers::parse(&doc).context(DOC)?;
    let files = read_tree(&root.join(SRC))?;
    let violations = check(&layers, &files);
    for v in &violations {
        println!("{v}");
    }
    if violations.is_empty() {
        let top: BTreeSet<&str> = files
            .keys()
            .filter_map(|f| f.split(['/', '.']).next())
            .filter(|m| *m != "lib" && *m != "main")
            .collect();
        println!(
            "layers: {} files, {} modules in {} layers, no violation",
            files.len(),
            top.len(),
            layers.names.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "layers: {} violations (rule: {DOC}, \"## Layers\")",
            violations.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_TEXT: &str = "# x\n\n## Layers (brummerd's modules)\n\ntext\n\n```layers\n\
                            top:    server\nplanes: control dbus\nstate:  state\n```\n\n## Next\n";

    fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    }

    fn run_check(files: &[(&str, &str)]) -> Vec<String> {
        let layers = Layers::parse(DOC_TEXT).unwrap();
        check(&layers, &tree(files))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// A tree that keeps the rule: down-layer uses, mod.rs items, main.rs and lib.rs.
    fn clean() -> Vec<(&'static str, &'static str)> {
        vec![
            (
                "lib.rs",
                "pub mod server;\npub mod control;\npub mod dbus;\npub mod state;\n",
            ),
            (
                "main.rs",
                "use brummerd::server;\nfn main() { crate::x::y(); }\n",
            ),
            (
                "server.rs",
                "use crate::{control, dbus::serve, state::State};\n",
            ),
            ("state.rs", "pub struct State;\n"),
            (
                "control/mod.rs",
                "mod conn;\nmod outbox;\npub struct Peer;\n",
            ),
            (
                "control/conn.rs",
                "use super::outbox::Outbox;\nuse super::Peer;\n",
            ),
            (
                "control/outbox.rs",
                "use crate::state::State;\nuse crate::control::Peer;\n",
            ),
            ("dbus/mod.rs", "fn f() { let s = crate::state::State; }\n"),
        ]
    }

    #[test]
    fn a_clean_tree_passes() {
        assert_eq!(run_check(&clean()), Vec::<String>::new());
    }

    #[test]
    fn an_upward_use_fails() {
        let mut t = clean();
        t.push(("state.rs", "use crate::control::Peer;\n"));
        assert_eq!(
            run_check(&t),
            [format!(
                "daemon/src/state.rs:1: module state (layer state) uses crate::control::Peer \
                 (layer planes): that layer is above this one; {RULE}"
            )]
        );
    }

    #[test]
    fn a_same_layer_use_fails() {
        let mut t = clean();
        t.push(("dbus/mod.rs", "\nuse crate::control::Peer;\n"));
        let v = run_check(&t);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].starts_with(
                "daemon/src/dbus/mod.rs:2: module dbus (layer planes) uses crate::control::Peer \
                 (layer planes): both are in one layer"
            ),
            "{v:?}"
        );
    }

    #[test]
    fn a_grouped_use_fails_on_its_line() {
        let mut t = clean();
        t.push((
            "state.rs",
            "use crate::{\n    dbus,\n    server::run,\n};\n",
        ));
        let v = run_check(&t);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].starts_with(
            "daemon/src/state.rs:2: module state (layer state) uses crate::dbus (layer planes)"
        ));
        assert!(v[1].starts_with(
            "daemon/src/state.rs:3: module state (layer state) uses crate::server::run (layer top)"
        ));
    }

    #[test]
    fn a_path_in_a_function_body_fails() {
        let mut t = clean();
        t.push((
            "control/outbox.rs",
            "fn f() {\n    if true {\n        crate::server::run();\n    }\n}\n",
        ));
        let v = run_check(&t);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("daemon/src/control/outbox.rs:3: module control (layer planes) uses crate::server::run (layer top)"));
    }

    #[test]
    fn super_climbing_out_of_the_module_counts() {
        let mut t = clean();
        t.push((
            "control/outbox.rs",
            "#[cfg(test)]\nmod tests {\n    use super::super::super::dbus::X;\n}\n",
        ));
        let v = run_check(&t);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with(
            "daemon/src/control/outbox.rs:3: module control (layer planes) uses crate::dbus::X"
        ));
    }

    #[test]
    fn comments_and_strings_are_ignored() {
        let mut t = clean();
        t.push((
            "state.rs",
            "// use crate::server;\n/* crate::control::x() */\nconst S: &str = \"crate::dbus::y\";\n\
             /// see crate::server::run\npub struct State;\n",
        ));
        assert_eq!(run_check(&t), Vec::<String>::new());
    }

    #[test]
    fn an_unplaced_module_fails() {
        let mut t = clean();
        t.push(("daemon.rs", "use crate::state::State;\n"));
        assert_eq!(
            run_check(&t),
            [format!(
                "daemon/src/daemon.rs:1: module daemon is in no layer: every module of daemon/src \
                 must be placed in the layers block of {DOC}"
            )]
        );
    }

    #[test]
    fn a_sibling_cycle_fails_and_is_spelled_out() {
        let mut t = clean();
        t.push(("control/outbox.rs", "use super::sock::Write;\n"));
        t.push((
            "control/sock.rs",
            "\n\nfn f() { crate::control::conn::x(); }\n",
        ));
        t.push((
            "control/conn.rs",
            "use self::inner::Y;\nuse super::Peer;\n\nuse super::{outbox};\n",
        ));
        let v = run_check(&t);
        assert_eq!(
            v,
            [
                "daemon/src/control/conn.rs:4: cycle between sibling modules of daemon/src/control/: \
                 conn -> outbox (control/conn.rs:4) -> sock (control/outbox.rs:1) -> conn \
                 (control/sock.rs:3); sibling files must not use each other in a circle \
                 (all of {conn, outbox, sock} are on one)"
            ]
        );
    }

    #[test]
    fn top_level_cycles_are_found_with_unplaced_modules() {
        let mut t = clean();
        t.push(("daemon.rs", "use crate::entry::E;\n"));
        t.push(("entry.rs", "use crate::daemon::D;\n"));
        let v = run_check(&t);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].contains("cycle between sibling modules of daemon/src/: daemon -> entry (daemon.rs:1) -> daemon (entry.rs:1)"), "{v:?}");
        assert!(v[1].contains("module daemon is in no layer"));
        assert!(v[2].contains("module entry is in no layer"));
    }

    #[test]
    fn the_block_is_parsed_in_order() {
        let l = Layers::parse(DOC_TEXT).unwrap();
        assert_eq!(l.names, ["top", "planes", "state"]);
        assert!(l.rank("server") > l.rank("dbus"));
        assert_eq!(l.rank("control"), l.rank("dbus"));
        assert!(l.rank("nothing").is_none());
        assert!(Layers::parse("## Layers\nno block\n").is_err());
        assert!(Layers::parse("## Layers\n```layers\na: x\nb: x\n```\n").is_err());
    }

    #[test]
    fn the_repository_block_parses() {
        let doc =
            fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(DOC)).unwrap();
        let l = Layers::parse(&doc).unwrap();
        assert!(l.rank("server") > l.rank("control"));
    }
}
