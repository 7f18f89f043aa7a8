//! What unattended runs need beside the model: a lock so that two runs never write the
//! same output, a checkpoint so that a killed run resumes where it stopped, the state of
//! an incremental intake (which documents are done), and shards for scale-out.

pub mod checkpoint;
pub mod resume;
pub mod shard;
pub mod state;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// An exclusive lock on a file beside the output (or state): held while the run lives,
/// released by the operating system when the process ends, even by `kill -9`. The file
/// is removed when the run ends, however it ends, so that nightly runs with dated names
/// leave none behind.
pub struct RunLock {
    file: File,
    path: PathBuf,
}

/// Another run holds the lock: the command should end with its own exit status.
#[derive(Debug, thiserror::Error)]
#[error("{path} is locked by another docclass run{holder}: wait for it to end (it is not started twice)")]
pub struct Locked {
    pub path: String,
    pub holder: String,
}

impl RunLock {
    pub fn acquire(path: &Path) -> Result<Self> {
        loop {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)
                .with_context(|| format!("{}: cannot create the lock file", path.display()))?;
            if file.try_lock().is_err() {
                let mut holder = String::new();
                file.read_to_string(&mut holder).ok();
                let holder = holder.trim();
                let holder = if holder.is_empty() { String::new() } else { format!(" (process {holder})") };
                return Err(Locked { path: path.display().to_string(), holder }.into());
            }
            // The run that held the lock may have removed the file after we opened it:
            // then this lock is on a file no one else sees, and the path is opened anew.
            if !same_file(&file, path) {
                continue;
            }
            file.set_len(0)?;
            file.rewind()?;
            write!(file, "{}", std::process::id())?;
            file.flush()?;
            return Ok(Self { file, path: path.to_path_buf() });
        }
    }
}

impl Drop for RunLock {
    /// Removed while still locked, so no other run can hold a lock on it meanwhile.
    fn drop(&mut self) {
        if same_file(&self.file, &self.path) {
            std::fs::remove_file(&self.path).ok();
        }
    }
}

/// Whether `path` still names the open `file`.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_refuses_a_second_holder_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".out.jsonl.lock");
        let first = RunLock::acquire(&path).unwrap();
        let second = RunLock::acquire(&path).err().expect("locked");
        assert!(second.downcast_ref::<Locked>().is_some());
        drop(first);
        assert!(!path.exists(), "the lock file is removed when the run ends");
        let again = RunLock::acquire(&path).unwrap();
        assert!(path.exists());
        drop(again);
        assert!(!path.exists());
    }
}
