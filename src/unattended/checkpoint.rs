//! Resuming a killed run. Records go to `.OUT.partial` and the state entries of the
//! classified documents to `.OUT.journal`; after each chunk both are synced and
//! `.OUT.checkpoint` records how many input documents they cover and their lengths.
//! A run started again with the same command cuts both files back to the checkpoint and
//! goes on from the next document, so its output is byte for byte that of a run that
//! was never interrupted. Once the output is complete the checkpoint says so, and the
//! remaining steps (rename the output into place, merge the journal into the state) are
//! repeated until done.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::state::Entry;
use crate::fsutil::{sidecar, write_durably};

/// What a run has done so far; also the end-of-run summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Documents read from the inputs (all shards).
    pub read: u64,
    pub classified: u64,
    pub failed: u64,
    /// Failed documents by reason.
    pub failed_by_reason: BTreeMap<String, u64>,
    /// Unchanged since the state recorded them.
    pub skipped_unchanged: u64,
    /// Failed in an earlier run, and their files unchanged since (`--state`).
    #[serde(default)]
    pub skipped_failed_before: u64,
    /// Other shards' documents.
    pub skipped_other_shards: u64,
    pub tokens: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// SHA-256 of what identifies the run (command line, model, inputs, state).
    pub run: String,
    /// Input documents covered, in input order.
    pub next_index: u64,
    pub output_bytes: u64,
    pub journal_bytes: u64,
    pub counts: Counts,
    /// The output is complete; only renaming it and merging the journal remain.
    pub finished: bool,
}

/// The files of a run beside its output.
#[derive(Clone)]
pub struct RunFiles {
    pub target: PathBuf,
    pub partial: PathBuf,
    pub checkpoint: PathBuf,
    pub journal: PathBuf,
}

impl RunFiles {
    pub fn new(target: &Path) -> Self {
        Self {
            target: target.to_path_buf(),
            partial: sidecar(target, "partial"),
            checkpoint: sidecar(target, "checkpoint"),
            journal: sidecar(target, "journal"),
        }
    }

    /// The checkpoint of an interrupted run of the same command; an interrupted run of
    /// another command is refused unless `restart` discards it.
    pub fn interrupted(&self, run: &str, restart: bool) -> Result<Option<Checkpoint>> {
        if !self.checkpoint.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&self.checkpoint)
            .with_context(|| format!("{}: cannot read", self.checkpoint.display()))?;
        let checkpoint: Option<Checkpoint> = serde_json::from_str(&text).ok();
        match checkpoint {
            Some(c) if c.run == run && !restart => Ok(Some(c)),
            _ if restart => {
                self.discard();
                Ok(None)
            }
            _ => bail!(
                "{}: an interrupted run with another command line, model, inputs or state left its work here; \
                 run that command again to finish it, or give --restart to discard it",
                self.checkpoint.display()
            ),
        }
    }

    pub fn discard(&self) {
        for path in [&self.checkpoint, &self.partial, &self.journal] {
            std::fs::remove_file(path).ok();
        }
    }

    pub fn save(&self, checkpoint: &Checkpoint) -> Result<()> {
        write_durably(&self.checkpoint, serde_json::to_string(checkpoint)?.as_bytes())
    }
}

/// The state entries of the documents classified by this run, appended as they are done.
pub struct Journal {
    out: BufWriter<File>,
}

impl Journal {
    /// Opens the journal, cut back to `bytes` (0: a new one).
    pub fn open(path: &Path, bytes: u64) -> Result<Self> {
        Ok(Self { out: BufWriter::new(crate::fsutil::open_cut_back(path, bytes)?) })
    }

    pub fn add(&mut self, entry: &Entry) -> Result<()> {
        serde_json::to_writer(&mut self.out, entry)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// Flushes and syncs; returns the journal's length.
    pub fn sync(&mut self) -> Result<u64> {
        self.out.flush()?;
        let file = self.out.get_ref();
        file.sync_data()?;
        Ok(file.metadata()?.len())
    }
}

pub fn read_journal(path: &Path) -> Result<Vec<Entry>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file = File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    BufReader::new(file)
        .lines()
        .map(|line| serde_json::from_str(&line?).with_context(|| format!("{}: damaged journal", path.display())))
        .collect()
}
