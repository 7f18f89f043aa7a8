//! `docclass classify`: documents in, one record per document out, in input order.
//! Documents stream through in chunks, so memory does not grow with the archive.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::{configure_threads, model_dir, Outcome};
use crate::cli::ClassifyArgs;
use crate::infer::{Pipeline, PipelineOptions};
use crate::ingest::{collect_inputs, DocumentReader, FieldNames};
use crate::model::ModelBundle;
use crate::output::{open_writer, refuse_existing, OutputFormat};
use crate::text::WindowOptions;

pub fn run(args: ClassifyArgs) -> Result<Outcome> {
    let threads = configure_threads(&args.run)?;
    let started = Instant::now();
    let format = args.format.unwrap_or_else(|| OutputFormat::from_path(&args.out));
    // Refuse an existing output and missing inputs before the slow model load.
    refuse_existing(&args.out, args.force)?;
    let files = collect_inputs(&args.inputs)?;
    // Zero-shot labels without --model go on the bare encoder, as the only head.
    let dir = match (&args.zero_shot, args.model.model) {
        (Some(_), None) if std::env::var_os("DOCCLASS_MODEL").is_none() => {
            super::resolve_default(super::DEFAULT_ENCODER)
        }
        (_, model) => model_dir(model),
    };
    let bundle = ModelBundle::load(&dir).with_context(|| format!("loading model {}", dir.display()))?;
    let mut pipeline = Pipeline::new(bundle, args.run.max_len)?;
    let options = PipelineOptions {
        windows: WindowOptions {
            stride: pipeline.text.stride(args.stride)?,
            max_windows: args.max_windows.max(1),
            truncate: args.truncate,
        },
        batch_tokens: args.run.batch_tokens.max(1),
        aggregation: args.aggregation,
        top_k: args.top_k,
    };
    if let Some(labels) = &args.zero_shot {
        pipeline.add_zero_shot(labels, args.temperature, &options)?;
    }
    if pipeline.heads.is_empty() {
        bail!(
            "model {} has no task heads: give --zero-shot LABELS.tsv, or a fine-tuned checkpoint (*ForSequenceClassification / *ForTokenClassification)",
            dir.display()
        );
    }

    if files.is_empty() && !args.quiet {
        eprintln!("docclass: warning: no files found in the given inputs");
    }
    let total_bytes: u64 =
        files.iter().filter_map(|f| f.as_ref().ok()).filter_map(|p| p.metadata().ok()).map(|m| m.len()).sum();
    let progress = progress_bar(total_bytes, args.quiet);
    let fields = FieldNames { text: args.text_field.clone(), id: args.id_field.clone() };
    let mut reader = DocumentReader::new(files, fields, args.max_document_bytes).peekable();
    let mut writer = open_writer(&args.out, format, args.force)?;

    let (mut documents, mut failed, mut tokens) = (0usize, 0usize, 0usize);
    while reader.peek().is_some() {
        let chunk: Vec<_> = reader.by_ref().take(args.chunk_documents.max(1)).collect();
        let chunk_bytes: u64 = chunk.iter().map(|item| item.as_ref().map_or(0, |d| d.text.len() as u64)).sum();
        let (records, stats) = pipeline.process(chunk, &options)?;
        for record in &records {
            writer.write(record)?;
        }
        documents += stats.documents;
        failed += stats.failed;
        tokens += stats.tokens;
        progress.inc(chunk_bytes);
        let rate = documents as f64 / started.elapsed().as_secs_f64().max(1e-9);
        progress.set_message(format!("{documents} documents, {rate:.1} documents/s"));
    }
    writer.finish()?;
    progress.finish_and_clear();

    let seconds = started.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!(
            "docclass: {documents} documents ({failed} failed), {tokens} tokens in {seconds:.1} s: {:.1} documents/s, {:.0} tokens/s, {threads} threads",
            documents as f64 / seconds,
            tokens as f64 / seconds,
        );
    }
    Ok(if failed > 0 { Outcome::SomeFailed } else { Outcome::Complete })
}

/// Progress by input bytes (so that the ETA holds for files of any size), with the
/// document count and rate as message; hidden when stderr is not a terminal.
fn progress_bar(total_bytes: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} · {elapsed} elapsed, ETA {eta}")
            .expect("valid template"),
    );
    bar
}
