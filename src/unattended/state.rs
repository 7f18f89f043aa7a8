//! `--state FILE`: the documents an incremental intake has done, by id, content hash
//! and model. A nightly run skips a document whose id, text and model are unchanged.
//! One JSON line per document; rewritten whole and renamed into place when a run ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// SHA-256 of the document's text; for a document that failed, of the failure and
    /// its file's size and modification time ([`failure_sha256`]).
    pub sha256: String,
    /// The model's fingerprint: another model classifies everything again.
    pub model: String,
    /// Why the document failed, when it did: it is not tried again while its file is
    /// unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

pub struct State {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
}

pub fn text_sha256(text: &str) -> String {
    crate::hashing::sha256_hex(text.as_bytes())
}

/// What identifies a failure: the error and the size and modification time of the file
/// it happened in (a document that failed has no text to hash). Touching or replacing
/// the file makes the next run try it again.
pub fn failure_sha256(error: &str, file: &Path) -> String {
    let meta = std::fs::metadata(file).ok();
    let modified =
        meta.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let key = format!("failed\0{error}\0{:?}\0{modified:?}", meta.map(|m| m.len()));
    crate::hashing::sha256_hex(key.as_bytes())
}

impl State {
    /// The state in `path`; empty when the file does not exist yet.
    pub fn load(path: &Path) -> Result<Self> {
        let mut entries = BTreeMap::new();
        if path.exists() {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the state", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let entry: Entry = serde_json::from_str(line).with_context(|| {
                    format!("{}:{}: not a state line (a file docclass did not write?)", path.display(), i + 1)
                })?;
                entries.insert(entry.id.clone(), entry);
            }
        } else if path.parent().is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
            bail!("{}: the state's folder does not exist", path.display());
        }
        Ok(Self { path: path.to_path_buf(), entries })
    }

    /// The entry of a document done before, unchanged since, with the same model.
    pub fn done(&self, id: &str, sha256: &str, model: &str) -> Option<&Entry> {
        self.entries.get(id).filter(|e| e.sha256 == sha256 && e.model == model)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A digest of the whole state: part of a run's identity, so that a resumed run
    /// skips exactly what the interrupted one skipped.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        for e in self.entries.values() {
            hash.update(serde_json::to_string(e).expect("entries serialise").as_bytes());
        }
        format!("{:x}", hash.finalize())
    }

    /// Adds `done` (later entries replace earlier ones of the same id) and writes the
    /// state durably.
    pub fn record(&mut self, done: impl IntoIterator<Item = Entry>) -> Result<()> {
        for e in done {
            self.entries.insert(e.id.clone(), e);
        }
        let mut text = String::new();
        for e in self.entries.values() {
            text += &serde_json::to_string(e)?;
            text.push('\n');
        }
        crate::fsutil::write_durably(&self.path, text.as_bytes())
    }
}
