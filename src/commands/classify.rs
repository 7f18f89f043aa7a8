//! `docclass classify`: documents in, one record per document out, in input order.
//! Documents stream through in chunks, so memory does not grow with the archive.
//!
//! For unattended runs: a lock beside the output (and the state) refuses a second run;
//! after every chunk the output is synced and a checkpoint written, so that a killed run
//! started again with the same command resumes and ends with the output an
//! uninterrupted run gives; `--state` skips documents done before; `--shard K/N` keeps
//! one shard of the documents.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{configure_run, model_dir, Outcome};
use crate::cli::ClassifyArgs;
use crate::fsutil::sidecar;
use crate::infer::{Pipeline, PipelineOptions};
use crate::ingest::{walk_inputs, DocumentReader, FieldNames, Item, Next, ReadLimits};
use crate::intake::checkpoint::{read_journal, Checkpoint, Counts, Journal, RunFiles};
use crate::intake::state::{text_sha256, Entry, State};
use crate::intake::RunLock;
use crate::logging;
use crate::model::bundle::model_fingerprint;
use crate::model::ModelBundle;
use crate::output::{open_writer, refuse_existing, OutputFormat};

pub fn run(args: ClassifyArgs) -> Result<Outcome> {
    let threads = configure_run(&args.run)?;
    let started = Instant::now();
    let format = args.format.unwrap_or_else(|| OutputFormat::from_path(&args.out));
    let to_stdout = args.out == Path::new("-");
    // Held until the run ends; the OS releases them when the process dies.
    let _locks = lock(&args, to_stdout)?;
    let files = RunFiles::new(&args.out);

    // Refuse an existing output and missing inputs before the slow model load.
    let resumable = !to_stdout && files.checkpoint.exists();
    if !resumable {
        refuse_existing(&args.out, args.force)?;
    }
    // A first walk identifies the inputs (for the checkpoint) and sizes the progress bar.
    let (inputs_key, input_files, total_bytes) = survey_inputs(&args.inputs)?;
    let (pipeline, options, model_id) = load_pipeline(&args)?;
    let mut state = args.state.as_deref().map(State::load).transpose()?;

    let run_key = run_key(&model_id, &inputs_key);
    let resumed = if to_stdout { None } else { files.interrupted(&run_key, args.restart)? };
    if let Some(checkpoint) = resumed.as_ref().filter(|c| c.finished) {
        logging::info(
            "recovered",
            "the interrupted run had written all its output; completing its last steps",
            json!({}),
        );
        complete(&files, state.as_mut())?;
        return Ok(summarize(&checkpoint.counts, started, threads, args.quiet));
    }
    if let Some(c) = &resumed {
        logging::info(
            "resumed",
            &format!(
                "resuming an interrupted run after {} input documents ({} already classified)",
                c.next_index, c.counts.classified
            ),
            json!({"next_index": c.next_index, "classified": c.counts.classified}),
        );
    } else if !to_stdout {
        refuse_existing(&args.out, args.force)?;
    }

    if input_files == 0 {
        logging::warning("no_inputs", "no files found in the given inputs", json!({}));
    }
    let progress = progress_bar(total_bytes, args.quiet);
    let fields = FieldNames { text: args.text_field.clone(), id: args.id_field.clone() };
    let limits = ReadLimits {
        document_bytes: args.max_document_bytes,
        extract_time: Duration::from_secs_f64(args.max_extract_seconds),
    };
    let mut reader = DocumentReader::new(walk_inputs(&args.inputs)?, fields, limits);
    let resume_at = resumed.as_ref().map_or(0, |c| c.output_bytes);
    let mut writer = open_writer(&args.out, format, args.force || resumed.is_some(), resume_at)?;
    let mut journal = match (&state, to_stdout) {
        (Some(_), false) => Some(Journal::open(&files.journal, resumed.as_ref().map_or(0, |c| c.journal_bytes))?),
        _ => None,
    };
    // With stdout there is no checkpoint: the state entries wait for the end in memory.
    let mut done_in_memory: Vec<Entry> = Vec::new();
    let skip_until = resumed.as_ref().map_or(0, |c| c.next_index);
    let mut counts = resumed.map(|c| c.counts).unwrap_or_default();
    let mut index = 0u64;
    let in_shard = |id: &str| args.shard.is_none_or(|shard| shard.contains(id));

    loop {
        // The next chunk: documents of this shard that the state does not have yet.
        let mut chunk: Vec<Item> = Vec::new();
        let mut positions: Vec<(u64, Option<String>)> = Vec::new();
        let mut exhausted = false;
        let mut chunk_bytes = 0u64;
        while chunk.len() < args.chunk_documents.max(1) && chunk_bytes < args.chunk_bytes.max(1) {
            let position = index;
            let Some(next) = reader.next_wanted(|id| position >= skip_until && in_shard(id)) else {
                exhausted = true;
                break;
            };
            index += 1;
            if position < skip_until {
                continue;
            }
            counts.read += 1;
            // Another shard's document; a one-document file of another shard was not opened.
            let Next::Item(item) = next else {
                counts.skipped_other_shards += 1;
                continue;
            };
            let id = match &item {
                Ok(d) => &d.id,
                Err(f) => &f.id,
            };
            if !in_shard(id) {
                counts.skipped_other_shards += 1;
                continue;
            }
            // Hashing the text is only needed where a state records it.
            let sha = item.as_ref().ok().filter(|_| state.is_some()).map(|d| text_sha256(&d.text));
            if let (Some(state), Some(sha)) = (&state, &sha) {
                if state.is_done(id, sha, &model_id) {
                    counts.skipped_unchanged += 1;
                    continue;
                }
            }
            chunk_bytes += item.as_ref().map_or(0, |d| d.text.len() as u64);
            chunk.push(item);
            positions.push((position, sha));
        }
        if !chunk.is_empty() {
            let (mut records, stats) = pipeline.process(chunk, &options)?;
            for (record, (position, sha)) in records.iter_mut().zip(positions) {
                record.index = Some(position);
                writer.write(record)?;
                match (&record.error, sha) {
                    (Some(error), _) => {
                        counts.failed += 1;
                        *counts.failed_by_reason.entry(failure_reason(error)).or_default() += 1;
                    }
                    (None, sha) => {
                        counts.classified += 1;
                        if let (Some(_), Some(sha256)) = (&state, sha) {
                            let entry = Entry { id: record.id.clone(), sha256, model: model_id.clone() };
                            match &mut journal {
                                Some(journal) => journal.add(&entry)?,
                                None => done_in_memory.push(entry),
                            }
                        }
                    }
                }
            }
            counts.tokens += stats.tokens as u64;
        }
        // Durable in this order: records and journal, then the checkpoint that covers them.
        let finished = exhausted;
        if !to_stdout {
            let output_bytes = writer.sync()?;
            let journal_bytes = journal.as_mut().map(Journal::sync).transpose()?.unwrap_or(0);
            let checkpoint = Checkpoint {
                run: run_key.clone(),
                next_index: index,
                output_bytes,
                journal_bytes,
                counts: counts.clone(),
                finished,
            };
            files.save(&checkpoint)?;
        }
        progress.inc(chunk_bytes);
        let rate = counts.classified as f64 / started.elapsed().as_secs_f64().max(1e-9);
        progress.set_message(format!("{} documents, {rate:.1} documents/s", counts.classified));
        if finished {
            break;
        }
    }
    writer.finish()?;
    progress.finish_and_clear();
    if to_stdout {
        if let Some(state) = &mut state {
            state.record(done_in_memory)?;
        }
    } else {
        complete(&files, state.as_mut())?;
    }
    Ok(summarize(&counts, started, threads, args.quiet))
}

/// The model (with zero-shot labels, if any), the options of the run, and the model's
/// identity for checkpoints and state: its fingerprint, with the labels' and temperature.
fn load_pipeline(args: &ClassifyArgs) -> Result<(Pipeline, PipelineOptions, String)> {
    // Zero-shot labels without --model go on the bare encoder, as the only head.
    let dir = match (&args.zero_shot, &args.model.model) {
        (Some(_), None) if std::env::var_os("DOCCLASS_MODEL").is_none() => {
            super::resolve_default(super::DEFAULT_ENCODER)
        }
        (_, model) => model_dir(model.clone()),
    };
    let bundle = ModelBundle::load(&dir).with_context(|| format!("loading model {}", dir.display()))?;
    let mut model_id = model_fingerprint(&dir)?;
    if let Some(labels) = &args.zero_shot {
        let bytes = std::fs::read(labels).with_context(|| format!("{}: cannot read", labels.display()))?;
        model_id = format!(
            "{:x}",
            Sha256::digest(format!("{model_id} zero-shot {:x} {}", Sha256::digest(&bytes), args.temperature))
        );
    }
    let mut pipeline = Pipeline::new(bundle, args.run.max_len)?;
    let options = super::pipeline_options(&pipeline, &args.run, &args.windows, args.top_k)?;
    if let Some(labels) = &args.zero_shot {
        pipeline.add_zero_shot(labels, args.temperature, &options)?;
    }
    if pipeline.heads.is_empty() {
        bail!(
            "model {} has no task heads: give --zero-shot LABELS.tsv, or a fine-tuned checkpoint (*ForSequenceClassification / *ForTokenClassification)",
            dir.display()
        );
    }
    Ok((pipeline, options, model_id))
}

/// The last steps of a run whose output is complete, each safe to repeat: the output
/// renamed into place, the journal merged into the state, the run's files removed.
fn complete(files: &RunFiles, state: Option<&mut State>) -> Result<()> {
    if files.partial.exists() {
        std::fs::rename(&files.partial, &files.target)
            .with_context(|| format!("renaming {} to {}", files.partial.display(), files.target.display()))?;
        crate::fsutil::sync_parent(&files.target);
    }
    if let Some(state) = state {
        state.record(read_journal(&files.journal)?)?;
    }
    files.discard();
    Ok(())
}

/// Locks beside the output file and the state file.
fn lock(args: &ClassifyArgs, to_stdout: bool) -> Result<Vec<RunLock>> {
    let mut locks = Vec::new();
    if !to_stdout {
        if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create folder", parent.display()))?;
        }
        locks.push(RunLock::acquire(&sidecar(&args.out, "lock"))?);
    }
    if let Some(state) = &args.state {
        locks.push(RunLock::acquire(&sidecar(state, "lock"))?);
    }
    Ok(locks)
}

/// One walk over the inputs: a SHA-256 of every file's path, size and modification
/// time (so that a run resumes only on unchanged inputs), the number of files and their
/// total size.
fn survey_inputs(inputs: &[std::path::PathBuf]) -> Result<(String, u64, u64)> {
    let (mut hash, mut files, mut bytes) = (Sha256::new(), 0u64, 0u64);
    for input in walk_inputs(inputs)? {
        files += 1;
        match input {
            Ok(path) => {
                let meta = path.metadata().ok();
                let modified = meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                bytes += meta.as_ref().map_or(0, |m| m.len());
                hash.update(format!("{}\0{:?}\0{:?}\0", path.display(), meta.map(|m| m.len()), modified).as_bytes());
            }
            Err(failed) => hash.update(format!("{}\0{}\0", failed.id, failed.error).as_bytes()),
        }
    }
    Ok((format!("{:x}", hash.finalize()), files, bytes))
}

/// What identifies a run, so that only the same command resumes it: the command line
/// (without --restart), the model's fingerprint, and the inputs (see [`survey_inputs`]).
fn run_key(model_id: &str, inputs_key: &str) -> String {
    let mut hash = Sha256::new();
    for arg in std::env::args().skip(1).filter(|a| a != "--restart") {
        hash.update(arg.as_bytes());
        hash.update([0]);
    }
    hash.update(model_id.as_bytes());
    hash.update(inputs_key.as_bytes());
    format!("{:x}", hash.finalize())
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

/// Logs the end-of-run summary and turns the counts into the exit status.
fn summarize(counts: &Counts, started: Instant, threads: usize, quiet: bool) -> Outcome {
    let seconds = started.elapsed().as_secs_f64();
    if !quiet || logging::is_json() {
        let reasons: Vec<String> = counts.failed_by_reason.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        let message = format!(
            "{} documents read: {} classified, {} failed{}, {} unchanged since the state (skipped), {} in other shards; {} tokens in {seconds:.1} s: {:.1} documents/s, {:.0} tokens/s, {threads} threads",
            counts.read,
            counts.classified,
            counts.failed,
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
            counts.skipped_unchanged,
            counts.skipped_other_shards,
            counts.tokens,
            counts.classified as f64 / seconds.max(1e-9),
            counts.tokens as f64 / seconds.max(1e-9),
        );
        let mut fields = serde_json::to_value(counts).expect("counts serialise");
        if let Some(f) = fields.as_object_mut() {
            f.insert("seconds".into(), json!((seconds * 10.0).round() / 10.0));
            f.insert("threads".into(), json!(threads));
        }
        logging::info("summary", &message, fields);
    }
    if counts.failed > 0 {
        Outcome::SomeFailed
    } else {
        Outcome::Complete
    }
}

/// Progress by input bytes (so that the ETA holds for files of any size), with the
/// document count and rate as message.
fn progress_bar(total_bytes: u64, quiet: bool) -> ProgressBar {
    logging::progress_bar(total_bytes, "{bar:30} {percent:>3}% {msg} · {elapsed} elapsed, ETA {eta}", quiet)
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
