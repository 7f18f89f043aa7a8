//! The files behind the INPUT arguments: a file as given, a folder walked recursively
//! in sorted order (hidden entries skipped), so that the same inputs always give the
//! same documents in the same order. The walk is lazy: an archive of millions of files
//! is never held as a list.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{Failed, Source};

pub type InputFiles = Box<dyn Iterator<Item = Result<PathBuf, Failed>> + Send>;

/// Checks that every input exists, then walks them in order.
pub fn walk_inputs(inputs: &[PathBuf]) -> Result<InputFiles> {
    for input in inputs {
        if let Err(e) = std::fs::metadata(input) {
            bail!("{}: cannot read input: {e}", input.display());
        }
    }
    let inputs = inputs.to_vec();
    Ok(Box::new(inputs.into_iter().flat_map(walk_one)))
}

fn walk_one(input: PathBuf) -> Box<dyn Iterator<Item = Result<PathBuf, Failed>> + Send> {
    if input.is_file() {
        return Box::new(std::iter::once(Ok(input)));
    }
    let walker = walkdir::WalkDir::new(&input)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !is_hidden(e.path()));
    Box::new(walker.filter_map(move |entry| match entry {
        Ok(entry) if entry.file_type().is_file() => Some(Ok(entry.into_path())),
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
