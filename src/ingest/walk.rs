//! The files behind the INPUT arguments: a file as given, a folder walked recursively
//! in sorted order (hidden entries skipped, `--include`/`--exclude` patterns applied), so
//! that the same inputs always give the same documents in the same order. The walk is
//! lazy: an archive of millions of files is never held as a list.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{Failed, Source};

pub type InputFiles = Box<dyn Iterator<Item = Result<PathBuf, Failed>> + Send>;

/// Which files of a folder are inputs, and what a missing input path means.
#[derive(Clone, Debug, Default)]
pub struct InputSelection {
    /// Glob patterns (`*.pdf`, `2026-*/**`) matched against a file's path inside the
    /// folder given; a file is taken when it matches one of them (all when none).
    pub include: Vec<String>,
    /// Files matching one of these are left out, even when included.
    pub exclude: Vec<String>,
    /// A missing input path is passed over with a warning instead of ending the run.
    pub allow_missing: bool,
}

/// The compiled patterns of an [`InputSelection`].
struct Patterns {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl Patterns {
    fn new(selection: &InputSelection) -> Result<Self> {
        let set = |patterns: &[String], flag: &str| -> Result<GlobSet> {
            let mut builder = GlobSetBuilder::new();
            for pattern in patterns {
                builder.add(Glob::new(pattern).with_context(|| format!("{flag} {pattern:?}: not a glob pattern"))?);
            }
            Ok(builder.build()?)
        };
        let include = if selection.include.is_empty() { None } else { Some(set(&selection.include, "--include")?) };
        Ok(Self { include, exclude: set(&selection.exclude, "--exclude")? })
    }

    /// `inside`: the file's path inside the folder that was given.
    fn takes(&self, inside: &Path) -> bool {
        self.include.as_ref().is_none_or(|set| set.is_match(inside)) && !self.exclude.is_match(inside)
    }
}

/// Checks that every input exists (or, with `allow_missing`, names those that do not),
/// then walks them in order. Returns the files and the missing input paths.
pub fn walk_selected(inputs: &[PathBuf], selection: &InputSelection) -> Result<(InputFiles, Vec<PathBuf>)> {
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        match std::fs::metadata(input) {
            Ok(_) => present.push(input.clone()),
            Err(_) if selection.allow_missing => missing.push(input.clone()),
            Err(e) => bail!("{}: cannot read input: {e}", input.display()),
        }
    }
    let patterns = Arc::new(Patterns::new(selection)?);
    let files = present.into_iter().flat_map(move |input| walk_one(input, Arc::clone(&patterns)));
    Ok((Box::new(files), missing))
}

/// Every file of the inputs, which must all exist.
pub fn walk_inputs(inputs: &[PathBuf]) -> Result<InputFiles> {
    Ok(walk_selected(inputs, &InputSelection::default())?.0)
}

fn walk_one(input: PathBuf, patterns: Arc<Patterns>) -> Box<dyn Iterator<Item = Result<PathBuf, Failed>> + Send> {
    // A file given by name is always an input.
    if input.is_file() {
        return Box::new(std::iter::once(Ok(input)));
    }
    let walker = walkdir::WalkDir::new(&input)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !is_hidden(e.path()));
    let root = input.clone();
    Box::new(walker.filter_map(move |entry| match entry {
        Ok(entry) if entry.file_type().is_file() => {
            let inside = entry.path().strip_prefix(&root).unwrap_or(entry.path());
            patterns.takes(inside).then(|| Ok(entry.into_path()))
        }
        Ok(_) => None,
        Err(e) => {
            let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| input.clone());
            let reason = if e.loop_ancestor().is_some() {
                "symbolic link loop".to_string()
            } else {
                e.io_error().map(|io| io.to_string()).unwrap_or_else(|| e.to_string())
            };
            let path = path.display().to_string();
            Some(Err(Failed {
                id: path.clone(),
                source: Source { path, line: None },
                error: format!("cannot read: {reason}"),
            }))
        }
    }))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_filtered_by_patterns_inside_them_and_missing_inputs_may_be_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.txt", "b.pdf", "c.tmp", "sub/d.txt", "sub/e.tmp", "archiv/f.txt"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        let selection = InputSelection {
            include: vec!["*.txt".into(), "*.pdf".into()],
            exclude: vec!["archiv/**".into()],
            allow_missing: true,
        };
        let missing = dir.path().join("gone");
        let inputs = [dir.path().to_path_buf(), missing.clone(), dir.path().join("c.tmp")];
        let (files, not_there) = walk_selected(&inputs, &selection).unwrap();
        let names: Vec<String> =
            files.map(|f| f.unwrap().strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(names, ["a.txt", "b.pdf", "sub/d.txt", "c.tmp"], "a file given by name is always taken");
        assert_eq!(not_there, std::slice::from_ref(&missing));
        let strict = InputSelection::default();
        assert!(walk_selected(&[missing], &strict).is_err(), "without the flag a missing input ends the run");
        let bad = InputSelection { include: vec!["[".into()], ..InputSelection::default() };
        let error = walk_selected(&[dir.path().to_path_buf()], &bad).err().unwrap().to_string();
        assert!(error.contains("--include \"[\""), "{error}");
    }
}
