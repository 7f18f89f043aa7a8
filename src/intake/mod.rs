//! What unattended runs need beside the model: a lock so that two runs never write the
//! same output, a checkpoint so that a killed run resumes where it stopped, the state of
//! an incremental intake (which documents are done), and shards for scale-out.

pub mod checkpoint;
pub mod shard;
pub mod state;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// An exclusive lock on a file beside the output (or state): held while the run lives,
/// released by the operating system when the process ends, even by `kill -9`.
pub struct RunLock {
    _file: File,
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
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(Self { _file: file })
    }
}
