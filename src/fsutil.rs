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

/// `path` as an absolute path with `.` and `..` taken out lexically (symbolic links are
/// not followed, so a path that does not exist yet works too).
pub fn absolute(path: &Path) -> PathBuf {
    let joined = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// How a file written beside `anchor` (a results file, a queue) names `path`: relative
/// to the anchor's folder, so that both can be moved together and read from anywhere.
/// Paths on another root (another drive) stay absolute.
pub fn relative_to_file_of(anchor: &Path, path: &Path) -> String {
    let base = absolute(anchor);
    let base = base.parent().unwrap_or(Path::new("/"));
    let target = absolute(path);
    let (base_parts, target_parts): (Vec<_>, Vec<_>) = (base.components().collect(), target.components().collect());
    if base_parts.first() != target_parts.first() {
        return target.display().to_string();
    }
    let common = base_parts.iter().zip(&target_parts).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base_parts.len() {
        out.push("..");
    }
    for part in &target_parts[common..] {
        out.push(part);
    }
    out.display().to_string()
}

/// A path that a file (`anchor`) recorded, as it can be opened from here: absolute paths
/// as they are, relative ones from the anchor's folder. Files written before paths were
/// recorded that way named them from the working directory of their run: where the
/// path is not found beside the anchor but is found here, it is taken as it is.
pub fn resolve_from_file_of(anchor: &Path, recorded: &str) -> String {
    let path = Path::new(recorded);
    if path.is_absolute() {
        return recorded.to_string();
    }
    let beside = absolute(&anchor.parent().unwrap_or(Path::new("")).join(path));
    if !beside.exists() && path.exists() {
        return recorded.to_string();
    }
    beside.display().to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn recorded_paths_are_relative_to_the_file_that_records_them() {
        let results = Path::new("/data/out/results.jsonl");
        assert_eq!(super::relative_to_file_of(results, Path::new("/data/in/a.txt")), "../in/a.txt");
        assert_eq!(super::relative_to_file_of(results, Path::new("/data/out/sub/./b.txt")), "sub/b.txt");
        assert_eq!(super::relative_to_file_of(results, Path::new("/data/out/../c.txt")), "../c.txt");
        assert_eq!(super::resolve_from_file_of(results, "/abs/d.txt"), "/abs/d.txt");
        assert_eq!(super::resolve_from_file_of(results, "../in/a.txt"), "/data/in/a.txt");
        // Relative to the working directory, the whole way round.
        let here = std::env::current_dir().unwrap();
        let anchor = here.join("x/y/results.jsonl");
        let recorded = super::relative_to_file_of(&anchor, Path::new("src/lib.rs"));
        assert_eq!(recorded, "../../src/lib.rs");
        assert!(Path::new(&super::resolve_from_file_of(&anchor, &recorded)).exists());
    }

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
