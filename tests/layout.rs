//! The shape of the source tree: no import cycle between modules, and no
//! source file much over 600 lines (ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most lines a file of `src/` may hold.
const MAX_LINES: usize = 650;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a::b::c` for `src/a/b/c.rs` or `src/a/b/c/mod.rs`; `None` for the crate
/// roots and the binaries.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.first().map(String::as_str) {
        None | Some("lib") | Some("main") | Some("bin") => None,
        _ => Some(parts.join("::")),
    }
}

/// The paths named after `crate::` in `text` (`use crate::a::b::{...}` gives `a::b`).
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].trim_end_matches(':').to_string());
    }
    out
}

/// The longest known module that `path` starts with.
fn resolve(modules: &BTreeSet<String>, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// The edge that `from` using `to` puts between siblings: the two modules
/// under their closest common parent (`accounts::login` using
/// `server::x` is `accounts` using `server`). A module using its own parent
/// or child puts none: that is the tree itself.
fn sibling_edge(from: &str, to: &str) -> Option<(String, String)> {
    let a: Vec<&str> = from.split("::").collect();
    let b: Vec<&str> = to.split("::").collect();
    let i = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if i == a.len() || i == b.len() {
        return None;
    }
    Some((a[..=i].join("::"), b[..=i].join("::")))
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

fn src_files() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    (src, files)
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let (src, files) = src_files();
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read");
        // Test modules may reach anywhere; comments name what they like.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or("")
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.as_str();
        let parent = module.rsplit_once("::").map(|(p, _)| p.to_string());
        let mut targets: Vec<String> = crate_paths(code)
            .iter()
            .filter_map(|p| resolve(&modules, p))
            .collect();
        // `super::x` from a child names its parent (or a sibling).
        if let Some(parent) = &parent {
            for p in code.split("super::").skip(1) {
                let name: String = p
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let path = format!("{parent}::{}", name.trim_end_matches(':'));
                targets.push(resolve(&modules, &path).unwrap_or_else(|| parent.clone()));
            }
        }
        for target in targets {
            if let Some((from, to)) = sibling_edge(&module, &target) {
                graph.entry(from).or_default().insert(to);
            }
        }
    }
    assert!(graph.len() > 20, "the walk found the modules: {graph:?}");
    assert!(
        graph.values().map(BTreeSet::len).sum::<usize>() > 40,
        "the walk found the imports"
    );
    assert_eq!(cycles(&graph), Vec::<Vec<String>>::new(), "import cycles");
}

#[test]
fn edges_join_siblings_under_their_closest_parent() {
    let edge = |a, b| sibling_edge(a, b).map(|(x, y)| format!("{x} -> {y}"));
    assert_eq!(
        edge("accounts::login", "server::listeners").as_deref(),
        Some("accounts -> server")
    );
    assert_eq!(
        edge("proxy::plan", "proxy::request").as_deref(),
        Some("proxy::plan -> proxy::request")
    );
    assert_eq!(edge("accounts::login", "accounts"), None);
    assert_eq!(edge("store", "store::redb::sessions"), None);
}

#[test]
fn the_walk_sees_a_cycle_when_there_is_one() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    graph.entry("d".into()).or_default().insert("a".into());
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
}

#[test]
fn no_source_file_is_much_over_600_lines() {
    let (_, files) = src_files();
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).expect("read").lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}
