//! `docclass classify`: documents in, one record per document out, in input order.
//! Documents stream through in chunks, so memory does not grow with the archive.
//!
//! For unattended runs: a lock beside the output (and the state) refuses a second run;
//! after every chunk the output is synced and a checkpoint written, so that a killed run
//! started again with the same command resumes and ends with the output an
//! uninterrupted run gives; `--state` skips documents done before; `--shard K/N` keeps
//! one shard of the documents.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{configure_run, model_dir, Outcome};
use crate::cli::ClassifyArgs;
use crate::infer::runner::{ChunkLimits, Documents, Records, Resumable, RunTimes, Runner, Tracking};
use crate::infer::{Pipeline, PipelineOptions};
use crate::ingest::walk::{walk_selected, InputSelection};
use crate::ingest::{DocumentReader, ReadLimits};
use crate::logging;
use crate::model::ModelBundle;
use crate::output::{open_writer, OutputFormat};
use crate::unattended::checkpoint::Counts;
use crate::unattended::resume::{Interrupted, ResumableRun};
use crate::unattended::state::State;

pub fn run(args: ClassifyArgs) -> Result<Outcome> {
    let threads = configure_run(&args.run)?;
    let started = Instant::now();
    let format = args.format.unwrap_or_else(|| OutputFormat::from_path(&args.out));
    if args.explain.is_some() && format == OutputFormat::Csv {
        bail!("--explain writes `evidence` into JSONL records, and CSV output has no column for it: write JSONL (--format jsonl, or an --out name not ending in .csv), or leave out --explain");
    }
    // Refuse a locked or existing output and missing inputs before the slow model load.
    let run = ResumableRun::start(&args.out, args.state.as_deref(), args.force)?;
    // A first walk identifies the inputs (for the checkpoint) and sizes the progress bar.
    let selection = InputSelection {
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        allow_missing: args.allow_missing_inputs,
    };
    let (inputs_key, input_files, total_bytes) = survey_inputs(&args.inputs, &selection)?;
    let (pipeline, options, model_id) = load_pipeline(&args)?;
    let state = args.state.as_deref().map(State::load).transpose()?;

    let run_key = ResumableRun::key(&model_id, &inputs_key);
    let resumed = match run.take_up(&run_key, args.restart, args.force)? {
        Interrupted::Finished(checkpoint) => {
            logging::info(
                "recovered",
                "the interrupted run had written all its output; completing its last steps",
                json!({}),
            );
            run.complete(state, Vec::new())?;
            return Ok(summarize(&checkpoint.counts, None, started, threads, args.quiet));
        }
        Interrupted::Resume(c) => {
            logging::info(
                "resumed",
                &format!(
                    "resuming an interrupted run after {} input documents ({} already classified)",
                    c.next_index, c.counts.classified
                ),
                json!({"next_index": c.next_index, "classified": c.counts.classified}),
            );
            Some(c)
        }
        Interrupted::None => None,
    };

    if input_files == 0 {
        logging::warning("no_inputs", "no files found in the given inputs", json!({}));
    }
    let mut fields = args.fields.names();
    fields.keep.extend(args.date.date_field.clone());
    let limits = ReadLimits {
        document_bytes: args.max_document_bytes,
        extract_time: Duration::from_secs_f64(args.max_extract_seconds),
    };
    let reader = DocumentReader::new(walk_selected(&args.inputs, &selection)?.0, fields, limits);
    let resume_at = resumed.as_ref().map_or(0, |c| c.output_bytes);
    let writer = open_writer(&args.out, format, args.force || resumed.is_some(), resume_at)?;
    let tracking = match state {
        Some(state) => {
            let journal = run.journal(resumed.as_ref().map_or(0, |c| c.journal_bytes))?;
            Some(Tracking { state, journal, done: Vec::new() })
        }
        None => None,
    };
    let chunks = ChunkLimits { documents: args.chunk_documents, bytes: args.chunk_bytes };
    let mut runner = Runner::new(Documents::Files(reader), Records::Writer(writer), &model_id, chunks)
        .tracking(tracking)
        .shard(args.shard);
    if let Some(files) = run.files() {
        runner = runner.resumable(Resumable { files, run_key }, resumed.as_ref());
    }

    let progress = progress_bar(total_bytes, args.quiet);
    runner.run(&pipeline, &options, |bytes, counts| {
        progress.inc(bytes);
        let rate = counts.classified as f64 / started.elapsed().as_secs_f64().max(1e-9);
        progress.set_message(format!("{} documents, {rate:.1} documents/s", counts.classified));
    })?;
    let time = runner.time();
    let (records, tracking, counts) = runner.finish();
    if let Records::Writer(writer) = records {
        writer.finish()?;
    }
    progress.finish_and_clear();
    match tracking {
        Some(tracking) => run.complete(Some(tracking.state), tracking.done)?,
        None => run.complete(None, Vec::new())?,
    }
    Ok(summarize(&counts, Some(&time), started, threads, args.quiet))
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
    let bundle = ModelBundle::load_at(&dir, args.run.inference_precision())
        .with_context(|| format!("loading model {}", dir.display()))?;
    let mut model_id = bundle.identity.results_key();
    if let Some(labels) = &args.zero_shot {
        let bytes = std::fs::read(labels).with_context(|| format!("{}: cannot read", labels.display()))?;
        model_id = format!(
            "{:x}",
            Sha256::digest(format!("{model_id} zero-shot {:x} {}", Sha256::digest(&bytes), args.temperature))
        );
    }
    let mut pipeline = Pipeline::new(bundle, args.run.max_len)?;
    let options = super::pipeline_options(&pipeline, &args.run, &args.windows, args.top_k, args.explain)?;
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

/// One walk over the inputs: a SHA-256 of every file's path, size and modification
/// time (so that a run resumes only on unchanged inputs), the number of files and their
/// total size.
fn survey_inputs(inputs: &[std::path::PathBuf], selection: &InputSelection) -> Result<(String, u64, u64)> {
    let (mut hash, mut files, mut bytes) = (Sha256::new(), 0u64, 0u64);
    let (walk, missing) = walk_selected(inputs, selection)?;
    for path in &missing {
        logging::warning(
            "input_missing",
            &format!("{}: no such input, passed over (--allow-missing-inputs)", path.display()),
            json!({"input": path.display().to_string()}),
        );
        hash.update(format!("missing\0{}\0", path.display()).as_bytes());
    }
    for input in walk {
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

/// Logs the end-of-run summary (with where this run's time went, when it ran any) and
/// turns the counts into the exit status.
fn summarize(counts: &Counts, time: Option<&RunTimes>, started: Instant, threads: usize, quiet: bool) -> Outcome {
    let seconds = started.elapsed().as_secs_f64();
    if !quiet || logging::is_json() {
        let reasons: Vec<String> = counts.failed_by_reason.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        let mut parts = vec![format!("{} classified", counts.classified), format!("{} failed", counts.failed)];
        if !reasons.is_empty() {
            parts[1] += &format!(" ({})", reasons.join(", "));
        }
        // Only what the run could have skipped is mentioned.
        if counts.skipped_unchanged > 0 {
            parts.push(format!("{} unchanged since the state (skipped)", counts.skipped_unchanged));
        }
        if counts.skipped_failed_before > 0 {
            parts.push(format!("{} failed before and unchanged since (skipped)", counts.skipped_failed_before));
        }
        if counts.skipped_other_shards > 0 {
            parts.push(format!("{} in other shards", counts.skipped_other_shards));
        }
        let message = format!(
            "{} read: {}; {} tokens in {seconds:.1} s: {:.1} documents/s, {:.0} tokens/s, {threads} threads",
            plural(counts.read, "document", "documents"),
            parts.join(", "),
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
        if let Some(time) = time {
            let stages = stage_seconds(time);
            let parts: Vec<String> = stages.iter().map(|(_, name, s)| format!("{name} {s:.1} s")).collect();
            let fields: serde_json::Map<String, serde_json::Value> =
                stages.iter().map(|(key, _, s)| (key.to_string(), json!((s * 100.0).round() / 100.0))).collect();
            logging::info("stages", &format!("time spent: {}", parts.join(", ")), json!({"seconds": fields}));
        }
    }
    if counts.failed > 0 {
        Outcome::SomeFailed
    } else {
        Outcome::Complete
    }
}

/// Each stage's key (for JSON logs), name and seconds, in the order a document passes them.
fn stage_seconds(time: &RunTimes) -> [(&'static str, &'static str, f64); 6] {
    let p = &time.pipeline;
    [
        ("reading", "reading", time.read.as_secs_f64()),
        ("tokenizing", "tokenizing", p.tokenize.as_secs_f64()),
        ("encoder", "encoder", p.encoder.as_secs_f64()),
        ("heads_batches", "heads on batches", p.heads_forward.as_secs_f64()),
        ("heads_documents", "heads per document", p.heads_assemble.as_secs_f64()),
        ("writing", "writing", time.write.as_secs_f64()),
    ]
}

/// Progress by input bytes (so that the ETA holds for files of any size), with the
/// document count and rate as message.
fn progress_bar(total_bytes: u64, quiet: bool) -> ProgressBar {
    logging::progress_bar(total_bytes, "{bar:30} {percent:>3}% {msg} · {elapsed} elapsed, ETA {eta}", quiet)
}

/// `1 document`, `2 documents`.
fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}
