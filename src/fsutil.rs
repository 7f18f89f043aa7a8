//! File-system idioms shared by every writer: a file is written beside its target as
//! `.NAME.partial` and renamed into place when complete, so a killed run never leaves
//! a half file that looks valid.

use std::path::{Path, PathBuf};

/// `.NAME.partial` beside `path`.
pub fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn partial_files_are_hidden_siblings() {
        assert_eq!(super::partial_path(std::path::Path::new("a/b.feat")), std::path::Path::new("a/.b.feat.partial"));
    }
}
