//! The files behind the INPUT arguments: a file as given, a folder walked recursively
//! in sorted order (hidden entries skipped), so that the same inputs always give the
//! same documents in the same order.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{Failed, Source};

pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<Result<PathBuf, Failed>>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = match std::fs::metadata(input) {
            Ok(meta) => meta,
            Err(e) => bail!("{}: cannot read input: {e}", input.display()),
        };
        if meta.is_file() {
            files.push(Ok(input.clone()));
            continue;
        }
        let walker = walkdir::WalkDir::new(input)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.path()));
        for entry in walker {
            match entry {
                Ok(entry) if entry.file_type().is_file() => files.push(Ok(entry.into_path())),
                Ok(_) => {}
                Err(e) => {
                    let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| input.clone());
                    let reason = if e.loop_ancestor().is_some() {
                        "symbolic link loop".to_string()
                    } else {
                        e.io_error().map(|io| io.to_string()).unwrap_or_else(|| e.to_string())
                    };
                    let path = path.display().to_string();
                    files.push(Err(Failed {
                        id: path.clone(),
                        source: Source { path, line: None },
                        error: format!("cannot read: {reason}"),
                    }));
                }
            }
        }
    }
    Ok(files)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}
