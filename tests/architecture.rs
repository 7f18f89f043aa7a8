//! The module layering of docs/ARCHITECTURE.md, checked on the source: every module
//! imports only modules of lower layers, the library below `commands/` never sees the
//! command line, and no modules import each other in a circle, at any depth and across
//! folders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the bottom up; a module may import those of lower layers.
const LAYERS: &[&[&str]] = &[
    &["hashing", "rng", "fsutil", "logging"],
    &["decode", "text"],
    &["ingest", "unattended"],
    &["output"],
    &["model"],
    &["infer"],
    &["eval", "review", "serve"],
    &["overview", "drift"],
    &["train"],
    &["cli"],
    &["commands"],
];

fn layer_of(module: &str) -> usize {
    LAYERS.iter().position(|layer| layer.contains(&module)).unwrap_or_else(|| panic!("module {module} has no layer"))
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names following `prefix` in `text` (`crate::` → `model`, `super::` → `heads`).
fn names_after<'a>(text: &'a str, prefix: &str) -> BTreeSet<&'a str> {
    text.match_indices(prefix)
        .filter_map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            (end > 0).then(|| &rest[..end])
        })
        .collect()
}

/// A path of imports from `start` back to itself, if there is one.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().expect("paths are not empty");
        for next in graph.get(last).into_iter().flatten() {
            if next == start {
                return Some(path.iter().cloned().chain([start.to_string()]).collect());
            }
            if seen.insert(next.clone()) {
                stack.push(path.iter().cloned().chain([next.clone()]).collect());
            }
        }
    }
    None
}

/// The module paths named after `prefix` in `text`: `crate::model::heads::Tagger` →
/// `[model, heads, Tagger]`.
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    text.match_indices(prefix)
        .filter(|(i, _)| !text[..*i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(i, _)| {
            let mut rest = &text[i + prefix.len()..];
            let mut path = Vec::new();
            loop {
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                if end == 0 {
                    break;
                }
                path.push(&rest[..end]);
                match rest[end..].strip_prefix("::") {
                    Some(next) => rest = next,
                    None => break,
                }
            }
            path
        })
        .filter(|path| !path.is_empty())
        .collect()
}

/// The module a source file is: `model/heads/tagger.rs` → `model::heads::tagger`,
/// `model/heads/mod.rs` → `model::heads`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> =
        relative.components().map(|c| c.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

#[test]
fn modules_import_only_lower_layers_and_form_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut violations = Vec::new();
    let modules: BTreeSet<Vec<String>> =
        files.iter().map(|f| module_of(f.strip_prefix(&src).unwrap())).filter(|m| !m.is_empty()).collect();
    // The longest prefix of `path` that is a module of the crate.
    let resolve = |path: Vec<String>| -> Option<Vec<String>> {
        (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|prefix| modules.contains(prefix))
    };
    // module → the modules it imports (at any depth, across folders).
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top =
            relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if ["main", "lib"].contains(&top.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for imported in names_after(&text, "crate::") {
            if imported != top && layer_of(imported) >= layer_of(&top) {
                violations.push(format!(
                    "{}: imports crate::{imported} (layer {} ≥ {})",
                    relative.display(),
                    layer_of(imported),
                    layer_of(&top)
                ));
            }
        }
        let module = module_of(relative);
        let parent = module[..module.len() - 1].to_vec();
        let imported = paths_after(&text, "crate::")
            .into_iter()
            .map(|p| p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .chain(
                paths_after(&text, "super::")
                    .into_iter()
                    .map(|p| parent.iter().cloned().chain(p.iter().map(|s| s.to_string())).collect()),
            );
        let edges = graph.entry(module.join("::")).or_default();
        for target in imported.filter_map(resolve) {
            // A module declares and re-exports its children: that is no import.
            if target != module && !target.starts_with(&module) {
                edges.insert(target.join("::"));
            }
        }
    }
    let mut circles = BTreeSet::new();
    for start in graph.keys() {
        if let Some(mut circle) = circle_through(&graph, start) {
            // The same circle from each of its modules is reported once.
            circle.pop();
            let first = (0..circle.len()).min_by_key(|&i| &circle[i]).unwrap();
            circle.rotate_left(first);
            circles.insert(circle);
        }
    }
    for circle in circles {
        violations.push(format!("import circle {} → {}", circle.join(" → "), circle[0]));
    }
    assert!(violations.is_empty(), "layering broken:\n{}", violations.join("\n"));
}

#[test]
fn only_the_commands_see_the_command_line() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let seen: Vec<String> = files
        .iter()
        .filter(|f| {
            let relative = f.strip_prefix(&src).unwrap();
            !(relative.starts_with("commands") || relative == Path::new("main.rs") || relative == Path::new("cli.rs"))
        })
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("crate::cli"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(seen.is_empty(), "the library imports the command line: {seen:?}");
}
