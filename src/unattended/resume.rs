//! One run that a kill does not spoil, from its start to its last step: the locks on its
//! output and state, what identifies it (so that only the same command takes it up
//! again), the interrupted run it resumes, and the steps that complete it. `classify`
//! runs through it; the run loop (`infer::runner`) writes the checkpoints it reads.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::checkpoint::{read_journal, Checkpoint, Journal, RunFiles};
use super::state::{Entry, State};
use super::RunLock;
use crate::fsutil::{refuse_existing, sidecar};

/// A run into one output (a file, or stdout, which cannot be resumed) and, with
/// `--state`, one state file.
pub struct ResumableRun {
    /// Held until the run ends; the operating system releases them when the process dies.
    _locks: Vec<RunLock>,
    /// The files beside an output file; none for stdout.
    files: Option<RunFiles>,
}

/// The run an interrupted one left behind, as [`ResumableRun::take_up`] finds it.
pub enum Interrupted {
    /// Nothing to take up: a fresh run.
    None,
    /// Part of the output is written: go on after the checkpoint.
    Resume(Checkpoint),
    /// All of the output is written; only the last steps are left.
    Finished(Checkpoint),
}

impl ResumableRun {
    /// Locks the output (unless it is stdout, `-`) and the state, creating the output's
    /// folder; refuses an existing output unless `force`, or an interrupted run left its
    /// work beside it (then [`Self::take_up`] decides).
    pub fn start(out: &Path, state: Option<&Path>, force: bool) -> Result<Self> {
        let mut locks = Vec::new();
        let files = (out != Path::new("-")).then(|| RunFiles::new(out));
        if files.is_some() {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("{}: cannot create folder", parent.display()))?;
            }
            locks.push(RunLock::acquire(&sidecar(out, "lock"))?);
        }
        if let Some(state) = state {
            locks.push(RunLock::acquire(&sidecar(state, "lock"))?);
        }
        let run = Self { _locks: locks, files };
        if !run.files.as_ref().is_some_and(|f| f.checkpoint.exists()) {
            refuse_existing(out, force)?;
        }
        Ok(run)
    }

    /// What identifies a run, so that only the same command resumes it: the command line
    /// (without `--restart`), the results key of the model, and the inputs' key.
    pub fn key(model_key: &str, inputs_key: &str) -> String {
        let mut hash = Sha256::new();
        for arg in std::env::args().skip(1).filter(|a| a != "--restart") {
            hash.update(arg.as_bytes());
            hash.update([0]);
        }
        hash.update(model_key.as_bytes());
        hash.update(inputs_key.as_bytes());
        format!("{:x}", hash.finalize())
    }

    /// The interrupted run of this command beside the output, if any. An interrupted
    /// run of another command is refused, unless `restart` discards it; for a fresh run
    /// an existing output is refused unless `force`.
    pub fn take_up(&self, key: &str, restart: bool, force: bool) -> Result<Interrupted> {
        let Some(files) = &self.files else { return Ok(Interrupted::None) };
        Ok(match files.interrupted(key, restart)? {
            Some(checkpoint) if checkpoint.finished => Interrupted::Finished(checkpoint),
            Some(checkpoint) => Interrupted::Resume(checkpoint),
            None => {
                refuse_existing(&files.target, force)?;
                Interrupted::None
            }
        })
    }

    /// The files the run loop checkpoints into; none for stdout.
    pub fn files(&self) -> Option<RunFiles> {
        self.files.clone()
    }

    /// Where the state entries of this run go until it completes: a journal beside an
    /// output file (covered by its checkpoints, taken up after `journal_bytes` bytes);
    /// none for stdout, whose entries wait in memory.
    pub fn journal(&self, journal_bytes: u64) -> Result<Option<Journal>> {
        self.files.as_ref().map(|f| Journal::open(&f.journal, journal_bytes)).transpose()
    }

    /// The last steps of a run whose output is complete, each safe to repeat: the output
    /// renamed into place, the journal (or, for stdout, the entries kept in memory)
    /// merged into the state, the run's files removed.
    pub fn complete(self, state: Option<State>, kept: Vec<Entry>) -> Result<()> {
        let Some(files) = &self.files else {
            if let Some(mut state) = state {
                state.record(kept)?;
            }
            return Ok(());
        };
        if files.partial.exists() {
            std::fs::rename(&files.partial, &files.target)
                .with_context(|| format!("renaming {} to {}", files.partial.display(), files.target.display()))?;
            crate::fsutil::sync_parent(&files.target);
        }
        if let Some(mut state) = state {
            state.record(read_journal(&files.journal)?)?;
        }
        files.discard();
        Ok(())
    }
}
