//! No circular imports in furcate-core: the modules form a layered graph
//! (image -> extractor -> feature cache -> trunk -> heads -> metrics ->
//! results -> report, with `run` and `experiment` on top), so a change to a
//! lower module never has to untie a knot with a higher one.
//!
//! Every `crate::...` and `super::...` path of `core/src` (in `use` lines and
//! in code, comments left out) is resolved to the file of the deepest module
//! it names; a path through a parent's re-export counts as the parent. Two
//! graphs must be free of cycles: the files', and the top-level modules'
//! (a file of `run/` naming `report` is an edge `run -> report`). A parent
//! declaring or re-exporting its own children is structure, not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path below the crate root (`["run", "choose"]`; `[]` is `lib.rs`).
type ModPath = Vec<String>;

/// Every module file of the crate whose `lib.rs` is in `src`, by module path.
fn module_files(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("below src").with_extension("");
            let mut parts: ModPath = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// `text` without `//` and `/* */` comments (doc comments included), so
/// that a path a comment mentions is no import.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        let (next, after) = {
            let mut ahead = chars.clone();
            (ahead.next(), ahead.next())
        };
        match (c, next) {
            // A char literal (`'"'`, `'\''`) is copied whole; a lifetime is one `'`.
            ('\'', Some(n)) if n == '\\' || after == Some('\'') => {
                out.push(c);
                let mut escaped = false;
                for n in chars.by_ref() {
                    out.push(n);
                    if n == '\'' && !escaped {
                        break;
                    }
                    escaped = n == '\\' && !escaped;
                }
            }
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for n in chars.by_ref() {
                    if last == '*' && n == '/' {
                        break;
                    }
                    last = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every path that starts with `crate::` or `super::` in `code`, as its
/// segments after that root (brace groups expanded: `crate::a::{b, c::d}`
/// gives `a::b` and `a::c::d`), each with the root: `None` for `crate`,
/// `Some(n)` for `n` leading `super`s.
fn rooted_paths(code: &str) -> Vec<(Option<usize>, Vec<String>)> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = |word: &str| bytes[i..].starts_with(word.as_bytes()) && (i == 0 || !ident(bytes[i - 1]));
        let (mut supers, mut j) = if starts("crate::") {
            (None, i + "crate::".len())
        } else if starts("super::") {
            (Some(1), i + "super::".len())
        } else {
            i += 1;
            continue;
        };
        while bytes[j..].starts_with(b"super::") {
            supers = supers.map(|n| n + 1);
            j += "super::".len();
        }
        let (paths, end) = path_tree(code, j);
        out.extend(paths.into_iter().map(|p| (supers, p)));
        i = end.max(i + 1);
    }
    out
}

/// The paths of the use tree starting at byte `at` (`a::b`, `a::{b, c}`,
/// `a::*`), and the byte after it.
fn path_tree(code: &str, at: usize) -> (Vec<Vec<String>>, usize) {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut prefix = Vec::new();
    let mut i = at;
    loop {
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        if i > start {
            prefix.push(code[start..i].to_string());
        }
        if bytes[i..].starts_with(b"::{") {
            i += 2;
        }
        if bytes.get(i) == Some(&b'{') {
            // A group: each comma-separated item is a tree of its own.
            let mut paths = Vec::new();
            i += 1;
            loop {
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return (paths, i + 1);
                }
                let (items, end) = path_tree(code, i);
                for item in items {
                    let mut p = prefix.clone();
                    p.extend(item.into_iter().filter(|s| s != "self"));
                    paths.push(p);
                }
                i = end;
                // Skip ` as name` and the comma.
                while i < bytes.len() && bytes[i] != b',' && bytes[i] != b'}' {
                    i += 1;
                }
                if i < bytes.len() && bytes[i] == b',' {
                    i += 1;
                }
            }
        }
        if bytes[i..].starts_with(b"::") && i + 2 < bytes.len() && ident(bytes[i + 2]) {
            i += 2;
            continue;
        }
        return (vec![prefix], i);
    }
}

/// The file edges of the crate: module -> the modules its paths name (the
/// deepest module file each path reaches), self-edges left out.
fn file_edges(files: &BTreeMap<ModPath, PathBuf>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut edges = BTreeMap::new();
    for (module, path) in files {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut to = BTreeSet::new();
        for (supers, segments) in rooted_paths(&strip_comments(&text)) {
            let mut full: ModPath = match supers {
                None => Vec::new(),
                Some(n) => module[..module.len().saturating_sub(n)].to_vec(),
            };
            full.extend(segments);
            let target = (0..=full.len()).rev().map(|k| full[..k].to_vec()).find(|p| files.contains_key(p));
            if let Some(t) = target.filter(|t| t != module) {
                to.insert(t);
            }
        }
        edges.insert(module.clone(), to);
    }
    edges
}

/// The top-level module graph of `edges`: `a -> b` when a file of `a`
/// names a file of `b` (`lib.rs` is no module of its own).
fn top_level(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut out: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (from, tos) in edges {
        let Some(a) = from.first() else { continue };
        for to in tos {
            match to.first() {
                Some(b) if b != a => {
                    out.entry(vec![a.clone()]).or_default().insert(vec![b.clone()]);
                }
                _ => {}
            }
        }
    }
    out
}

/// One cycle through every strongly connected part of `graph` that has one,
/// each as its modules in order, the first repeated at the end.
fn cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: BTreeMap<&ModPath, Mark> = graph.keys().map(|k| (k, Mark::New)).collect();
    let mut found = Vec::new();
    for start in graph.keys() {
        if mark[start] != Mark::New {
            continue;
        }
        // Depth first with an explicit stack of (node, its next edges).
        let mut path: Vec<&ModPath> = vec![start];
        let mut next: Vec<Vec<&ModPath>> = vec![graph[start].iter().collect()];
        mark.insert(start, Mark::Open);
        while let Some(todo) = next.last_mut() {
            match todo.pop() {
                Some(to) => match mark.get(to).copied().unwrap_or(Mark::Done) {
                    Mark::New => {
                        mark.insert(to, Mark::Open);
                        path.push(to);
                        next.push(graph[to].iter().collect());
                    }
                    Mark::Open => {
                        let from = path.iter().position(|p| *p == to).expect("an open node is on the path");
                        let mut cycle: Vec<ModPath> = path[from..].iter().map(|p| (*p).clone()).collect();
                        cycle.push(to.clone());
                        found.push(cycle);
                    }
                    Mark::Done => {}
                },
                None => {
                    let done = path.pop().expect("a node per edge list");
                    mark.insert(done, Mark::Done);
                    next.pop();
                }
            }
        }
    }
    found
}

fn show(cycle: &[ModPath]) -> String {
    cycle
        .iter()
        .map(|m| if m.is_empty() { "lib".to_string() } else { m.join("/") })
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// The cycles of the crate in `src`, files' first, then top-level modules', as text.
fn crate_cycles(src: &Path) -> Vec<String> {
    let files = module_files(src);
    let edges = file_edges(&files);
    let mut out: Vec<String> = cycles(&edges).iter().map(|c| format!("files: {}", show(c))).collect();
    out.extend(cycles(&top_level(&edges)).iter().map(|c| format!("modules: {}", show(c))));
    out
}

#[test]
fn core_has_no_module_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = module_files(&src);
    assert!(files.len() > 40 && files.contains_key(&vec!["run".to_string(), "choose".to_string()]));
    let found = crate_cycles(&src);
    assert!(
        found.is_empty(),
        "circular imports in core/src (move the shared item to the lower module):\n  {}",
        found.join("\n  ")
    );
}

/// The checker itself: a made-up crate with a file cycle inside a module, a
/// top-level cycle through a brace group, a parent's re-export of its child
/// (no cycle) and paths in comments (no edges).
#[test]
fn module_cycle_check_finds_cycles() {
    let dir = std::env::temp_dir().join(format!("furcate-cycles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files: &[(&str, &str)] = &[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        // A string names a path (serde attributes do): an edge a -> c.
        ("a/mod.rs", "mod x;\nmod y;\npub use x::X;\nconst S: &str = \"crate::c::f\";\n"),
        ("a/x.rs", "use super::y::Y;\npub struct X;\n"),
        ("a/y.rs", "pub struct Y(super::x::X);\n"),
        ("b.rs", "use crate::{c::{self, f}};\n"),
        // Neither the comment nor the doc comment is an edge c -> a (the
        // char literal `'"'` opens no string that would hide the comment).
        ("c.rs", "/// See [`crate::a::X`].\npub fn f() -> crate::b::B { todo!() }\nconst Q: char = '\"'; // crate::a::X\n"),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("a temporary folder");
        std::fs::write(&path, text).expect("a temporary file");
    }
    let mut found = crate_cycles(&dir);
    found.sort();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found.iter().any(|c| c.starts_with("files: a/") && c.contains("a/x") && c.contains("a/y")),
        "{found:#?}"
    );
    assert!(found.iter().any(|c| c.starts_with("files: ") && (c.contains("b -> c") || c.contains("c -> b"))));
    assert!(found.iter().any(|c| c.starts_with("modules: ") && c.contains('b') && c.contains('c')));
    assert!(!found.iter().any(|c| c.contains("a -> c")), "{found:#?}");
}
