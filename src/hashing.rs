//! SHA-256 as lowercase hex: of bytes, and of a file's content. Heads, evaluation
//! reports, training records and the intake state name their files and texts by it.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Streams the file, so that large data files are not read into memory.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(format!("{:x}", hash.finalize()))
}
