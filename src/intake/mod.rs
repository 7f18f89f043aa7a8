//! What unattended runs need beside the model: a lock so that two runs never write the
//! same output, a checkpoint so that a killed run resumes where it stopped, the state of
//! an incremental intake (which documents are done), and shards for scale-out.

pub mod checkpoint;
pub mod shard;
pub mod state;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A sibling of `path` named `.NAME.SUFFIX`: where a run keeps its files beside the output.
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// Writes `content` to `path` so that a reader sees the old or the new file, never a
/// part: a temporary sibling, synced, renamed over it.
pub fn write_durably(path: &Path, content: &[u8]) -> Result<()> {
    let partial = sidecar(path, "tmp");
    let mut file = File::create(&partial).with_context(|| format!("{}: cannot create", partial.display()))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("{}: cannot write", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("{}: cannot replace", path.display()))?;
    sync_parent(path);
    Ok(())
}

/// Opens `path` for appending after its first `keep` bytes (created when missing): an
/// interrupted run's file cut back to what its checkpoint covers.
pub fn open_cut_back(path: &Path, keep: u64) -> Result<File> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    file.set_len(keep).with_context(|| format!("{}: cannot cut back", path.display()))?;
    file.seek(std::io::SeekFrom::End(0))?;
    Ok(file)
}

/// Makes a rename in the folder durable (power loss); best effort where unsupported.
pub fn sync_parent(path: &Path) {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(dir) = File::open(parent) {
        dir.sync_all().ok();
    }
}

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
