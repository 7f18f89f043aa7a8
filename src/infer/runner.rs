//! The one run loop for documents going through the model in chunks, whatever the verb:
//! take the next chunk (skipping other shards' documents, those the state has done, and
//! those an interrupted run already wrote), run it, and record what was done. `classify`
//! runs it from input files into an output file, with a checkpoint after every chunk so
//! that a killed run resumes where it stopped (see `unattended::checkpoint`); `eval` runs it
//! over gold documents in memory. Memory stays bounded by the chunk size.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::pipeline::{Pipeline, PipelineOptions, StageTimes};
use crate::ingest::{DocumentReader, Item, Next};
use crate::output::record::Record;
use crate::output::RecordWriter;
use crate::unattended::checkpoint::{Checkpoint, Counts, Journal, RunFiles};
use crate::unattended::shard::Shard;
use crate::unattended::state::{failure_sha256, text_sha256, Entry, State};

/// Where documents come from.
pub enum Documents {
    Files(DocumentReader),
    Memory(std::vec::IntoIter<Item>),
}

impl Documents {
    /// The next document; `wanted` may spare the reader opening a file it would skip.
    fn next_wanted(&mut self, wanted: &dyn Fn(&str) -> bool) -> Option<Next> {
        match self {
            Documents::Files(reader) => reader.next_wanted(wanted),
            Documents::Memory(items) => items.next().map(Next::Item),
        }
    }
}

/// Where records go.
pub enum Records {
    Writer(Box<dyn RecordWriter>),
    Memory(Vec<Record>),
}

/// The files that make a run resumable: the checkpoint beside the output, and what
/// identifies the run, so that only the same command resumes it.
pub struct Resumable {
    pub files: RunFiles,
    pub run_key: String,
}

/// An incremental run's state: documents done before are skipped, and those done now
/// are journalled (durably, beside a resumable output) or kept until the run ends.
pub struct Tracking {
    pub state: State,
    pub journal: Option<Journal>,
    pub done: Vec<Entry>,
}

/// How large a chunk grows before it runs.
#[derive(Clone, Copy, Debug)]
pub struct ChunkLimits {
    pub documents: usize,
    pub bytes: u64,
}

pub struct Runner {
    documents: Documents,
    records: Records,
    resumable: Option<Resumable>,
    tracking: Option<Tracking>,
    shard: Option<Shard>,
    /// The model's identity, as the state records it.
    model_id: String,
    limits: ChunkLimits,
    /// Input documents an interrupted run has covered.
    skip_until: u64,
    /// Input documents read so far, in input order.
    next_index: u64,
    counts: Counts,
    time: RunTimes,
}

/// Where a run's time went, stage by stage (wall time; the stages take turns).
#[derive(Clone, Copy, Debug, Default)]
pub struct RunTimes {
    /// Reading the inputs: files, extraction, decoding.
    pub read: Duration,
    pub pipeline: StageTimes,
    /// Writing records, the state's journal and checkpoints.
    pub write: Duration,
}

/// A chunk taken from the inputs: documents, with each one's input position and (where
/// a state is kept) its text's SHA-256, and the bytes of text they hold.
struct Chunk {
    items: Vec<Item>,
    positions: Vec<(u64, Option<String>)>,
    bytes: u64,
    /// The inputs have no more documents.
    last: bool,
}

impl Runner {
    pub fn new(documents: Documents, records: Records, model_id: &str, limits: ChunkLimits) -> Self {
        Self {
            documents,
            records,
            resumable: None,
            tracking: None,
            shard: None,
            model_id: model_id.to_string(),
            limits: ChunkLimits { documents: limits.documents.max(1), bytes: limits.bytes.max(1) },
            skip_until: 0,
            next_index: 0,
            counts: Counts::default(),
            time: RunTimes::default(),
        }
    }

    /// Checkpoints after every chunk; `resumed` is the checkpoint of the interrupted run
    /// this one takes up, whose records and journal the writers already hold.
    pub fn resumable(mut self, resumable: Resumable, resumed: Option<&Checkpoint>) -> Self {
        if let Some(c) = resumed {
            self.skip_until = c.next_index;
            self.counts = c.counts.clone();
        }
        self.resumable = Some(resumable);
        self
    }

    pub fn tracking(mut self, tracking: Option<Tracking>) -> Self {
        self.tracking = tracking;
        self
    }

    pub fn shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// Runs every chunk through `pipeline`; `progress` hears the text bytes of each chunk
    /// done and the counts so far.
    pub fn run(
        &mut self,
        pipeline: &Pipeline,
        options: &PipelineOptions,
        mut progress: impl FnMut(u64, &Counts),
    ) -> Result<()> {
        loop {
            let started = Instant::now();
            let chunk = self.next_chunk();
            self.time.read += started.elapsed();
            let mut records = Vec::new();
            if !chunk.items.is_empty() {
                let stats;
                (records, stats) = pipeline.process(chunk.items, options)?;
                self.counts.tokens += stats.tokens as u64;
                self.time.pipeline += stats.time;
            }
            let started = Instant::now();
            for (record, (position, sha256)) in records.into_iter().zip(chunk.positions) {
                self.record(record, position, sha256)?;
            }
            self.checkpoint(chunk.last)?;
            self.time.write += started.elapsed();
            progress(chunk.bytes, &self.counts);
            if chunk.last {
                return Ok(());
            }
        }
    }

    /// What the run did, the output and the state not yet finished.
    pub fn finish(self) -> (Records, Option<Tracking>, Counts) {
        (self.records, self.tracking, self.counts)
    }

    /// Where the time went so far.
    pub fn time(&self) -> RunTimes {
        self.time
    }

    fn next_chunk(&mut self) -> Chunk {
        let mut chunk = Chunk { items: Vec::new(), positions: Vec::new(), bytes: 0, last: false };
        let shard = self.shard;
        let in_shard = |id: &str| shard.is_none_or(|shard| shard.contains(id));
        while chunk.items.len() < self.limits.documents && chunk.bytes < self.limits.bytes {
            let position = self.next_index;
            let skip_until = self.skip_until;
            let Some(next) = self.documents.next_wanted(&|id| position >= skip_until && in_shard(id)) else {
                chunk.last = true;
                break;
            };
            self.next_index += 1;
            if position < self.skip_until {
                continue;
            }
            self.counts.read += 1;
            // Another shard's document; a one-document file of another shard was not opened.
            let Next::Item(item) = next else {
                self.counts.skipped_other_shards += 1;
                continue;
            };
            let id = match &item {
                Ok(d) => &d.id,
                Err(f) => &f.id,
            };
            if !in_shard(id) {
                self.counts.skipped_other_shards += 1;
                continue;
            }
            // Hashing is only needed where a state records it.
            let sha256 = self.tracking.as_ref().map(|_| match &item {
                Ok(d) => text_sha256(&d.text),
                Err(f) => failure_sha256(&f.error, Path::new(&f.source.path)),
            });
            if let (Some(tracking), Some(sha256)) = (&self.tracking, &sha256) {
                if let Some(done) = tracking.state.done(id, sha256, &self.model_id) {
                    match done.failed {
                        None => self.counts.skipped_unchanged += 1,
                        Some(_) => self.counts.skipped_failed_before += 1,
                    }
                    continue;
                }
            }
            chunk.bytes += item.as_ref().map_or(0, |d| d.text.len() as u64);
            chunk.items.push(item);
            chunk.positions.push((position, sha256));
        }
        chunk
    }

    fn record(&mut self, record: Record, position: u64, sha256: Option<String>) -> Result<()> {
        let mut record = record.checked();
        // An output file's records carry their input position, by which `merge` puts
        // shard outputs back in order; records kept in memory are in input order already.
        if let Records::Writer(writer) = &mut self.records {
            record.index = Some(position);
            record.source.path = writer.recorded_path(&record.source.path);
            writer.write(&record)?;
        }
        match &record.error {
            Some(error) => {
                self.counts.failed += 1;
                *self.counts.failed_by_reason.entry(failure_reason(error)).or_default() += 1;
            }
            None => self.counts.classified += 1,
        }
        if let (Some(tracking), Some(sha256)) = (&mut self.tracking, sha256) {
            let entry =
                Entry { id: record.id.clone(), sha256, model: self.model_id.clone(), failed: record.error.clone() };
            match &mut tracking.journal {
                Some(journal) => journal.add(&entry)?,
                None => tracking.done.push(entry),
            }
        }
        if let Records::Memory(records) = &mut self.records {
            records.push(record);
        }
        Ok(())
    }

    /// Durable in this order: records and journal, then the checkpoint that covers them.
    fn checkpoint(&mut self, finished: bool) -> Result<()> {
        let (Some(resumable), Records::Writer(writer)) = (&self.resumable, &mut self.records) else {
            return Ok(());
        };
        let output_bytes = writer.sync()?;
        let journal = self.tracking.as_mut().and_then(|t| t.journal.as_mut());
        let journal_bytes = journal.map(Journal::sync).transpose()?.unwrap_or(0);
        resumable.files.save(&Checkpoint {
            run: resumable.run_key.clone(),
            next_index: self.next_index,
            output_bytes,
            journal_bytes,
            counts: self.counts.clone(),
            finished,
        })
    }
}

/// A failure's reason without its details, for the summary: the message up to its
/// first `:` or ` (`, numbers replaced by N.
pub fn failure_reason(error: &str) -> String {
    let end = [error.find(": "), error.find(" (")].into_iter().flatten().min().unwrap_or(error.len());
    let mut reason = String::new();
    for c in error[..end].chars() {
        if c.is_ascii_digit() {
            if !reason.ends_with('N') {
                reason.push('N');
            }
        } else {
            reason.push(c);
        }
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::failure_reason;

    #[test]
    fn reasons_drop_details() {
        assert_eq!(failure_reason("cannot open: Permission denied (os error 13)"), "cannot open");
        assert_eq!(
            failure_reason("document larger than 16777216 bytes (raise --max-document-bytes)"),
            "document larger than N bytes"
        );
        assert_eq!(failure_reason("empty document (no text)"), "empty document");
        assert_eq!(failure_reason("row has 3 fields, the header has 2"), "row has N fields, the header has N");
    }
}
