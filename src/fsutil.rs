//! File-system idioms shared by every writer: a file is written beside its target as
//! `.NAME.partial` (or `.NAME.tmp`) and renamed into place when complete, so a killed
//! run never leaves a half file that looks valid. Per-document report files are gzip
//! compressed; readers take either form.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `.NAME.partial` beside `path`.
pub fn partial_path(path: &Path) -> PathBuf {
    sidecar(path, "partial")
}

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

/// An existing output file is only replaced with `--force` (`-` is stdout).
pub fn refuse_existing(target: &Path, force: bool) -> Result<()> {
    if target != Path::new("-") && target.exists() && !force {
        anyhow::bail!("{}: output file exists (use --force to overwrite it)", target.display());
    }
    Ok(())
}

/// An output folder that holds files (a head, a report: `what`) is only replaced with
/// `--force`.
pub fn refuse_existing_dir(dir: &Path, force: bool, what: &str) -> Result<()> {
    let occupied = dir.is_dir()
        && std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?.next().is_some();
    if occupied && !force {
        anyhow::bail!("{} exists and is not empty; give --force to replace the {what} in it", dir.display());
    }
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("{} exists and is not a directory", dir.display());
    }
    Ok(())
}

/// `bytes` gzip-compressed, with no timestamp or file name in the header, so that the
/// same content always gives the same file.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// A file to read line by line, plain or gzip-compressed (told by its first bytes, not
/// its name).
pub fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut reader = BufReader::new(file);
    let gzip =
        reader.fill_buf().with_context(|| format!("{}: cannot read", path.display()))?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip { Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(reader))) } else { Box::new(reader) })
}

/// A UTF-8 text file, plain or gzip-compressed.
pub fn read_text(path: &Path) -> Result<String> {
    let mut text = String::new();
    open_text(path)?
        .read_to_string(&mut text)
        .with_context(|| format!("{}: not readable UTF-8 text (or a damaged gzip file)", path.display()))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn partial_files_are_hidden_siblings() {
        assert_eq!(super::partial_path(std::path::Path::new("a/b.feat")), std::path::Path::new("a/.b.feat.partial"));
    }

    #[test]
    fn gzip_is_deterministic_and_read_back_like_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"id\": \"ä\"}\n".repeat(100);
        let compressed = super::gzip(text.as_bytes());
        assert_eq!(compressed, super::gzip(text.as_bytes()));
        assert!(compressed.len() < text.len() / 5);
        let (gz, plain) = (dir.path().join("a.jsonl.gz"), dir.path().join("a.jsonl"));
        std::fs::write(&gz, &compressed).unwrap();
        std::fs::write(&plain, &text).unwrap();
        assert_eq!(super::read_text(&gz).unwrap(), text);
        assert_eq!(super::read_text(&plain).unwrap(), text);
    }
}
