//! The module layering of docs/ARCHITECTURE.md, checked on the source: every module
//! imports only modules of lower layers, the library below `commands/` never sees the
//! command line, and the files of one folder import each other in no circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the bottom up; a module may import those of lower layers.
const LAYERS: &[&[&str]] = &[
    &["hashing", "rng", "fsutil", "logging"],
    &["decode", "text"],
    &["ingest", "intake"],
    &["output"],
    &["model"],
    &["infer"],
    &["eval", "review"],
    &["overview"],
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

#[test]
fn modules_import_only_lower_layers_and_files_of_a_folder_form_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut violations = Vec::new();
    // folder → file stem → sibling stems it imports
    let mut siblings: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
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
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        if stem != "mod" && relative.components().count() > 1 {
            let folder = file.parent().unwrap().to_path_buf();
            let imports: BTreeSet<String> = names_after(&text, "super::")
                .into_iter()
                .filter(|n| folder.join(format!("{n}.rs")).exists())
                .map(String::from)
                .collect();
            siblings.entry(folder).or_default().insert(stem, imports);
        }
    }
    for (folder, graph) in &siblings {
        for start in graph.keys() {
            if let Some(circle) = circle_through(graph, start) {
                violations.push(format!("{}: import circle {}", folder.display(), circle.join(" → ")));
            }
        }
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
