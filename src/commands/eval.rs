//! `docclass eval`: run a pipeline on labelled data and write `metrics.json`,
//! `report.md` and the predictions into a report directory.
//!
//! Classification data (TSV/CSV/JSONL, as `train` reads it) is scored on the first
//! classification head, or the one named by --head; CoNLL data on the trained tagger,
//! at the gold words.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{configure_threads, model_dir, Outcome};
use crate::cli::{EvalArgs, TrainTask};
use crate::eval::classification::{classification_metrics, ClassificationMetrics};
use crate::eval::entities::{entity_metrics, EntityMetrics, SpanMode};
use crate::infer::{Pipeline, PipelineOptions};
use crate::ingest::{Document, Source};
use crate::model::bundle::fingerprint;
use crate::model::ModelBundle;
use crate::output::record::Record;
use crate::train::data::{read_conll, read_documents, TaggedSentence};

pub const METRICS_SCHEMA: &str = "docclass-eval/1";
const CHUNK: usize = 256;

pub fn run(args: EvalArgs) -> Result<Outcome> {
    let threads = configure_threads(&args.run)?;
    if args.report.is_dir() && std::fs::read_dir(&args.report)?.next().is_some() && !args.force {
        bail!("{} exists and is not empty; give --force to replace the report in it", args.report.display());
    }
    let dir = model_dir(args.model.model.clone());
    let bundle = ModelBundle::load(&dir).with_context(|| format!("loading model {}", dir.display()))?;
    let encoder_dir = bundle.dir.clone();
    let pipeline = Pipeline::new(bundle, args.run.max_len)?;
    let options = PipelineOptions::whole_texts(&pipeline, args.run.batch_tokens)?;
    let started = Instant::now();
    let task = args.format.task_of(&args.data);
    let (results, documents, tokens) = match task {
        TrainTask::Classify => {
            let (metrics, records, tokens) = evaluate_classification(&args, &pipeline, &options)?;
            write_predictions(&args.report, &records)?;
            (json!({ "classification": metrics }), records.len(), tokens)
        }
        TrainTask::Tag => {
            let (default, strict, sentences, tokens) = evaluate_tagging(&args, &pipeline, &options)?;
            (json!({ "entities": { "default": default, "strict_iob2": strict } }), sentences, tokens)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut metrics = json!({
        "schema": METRICS_SCHEMA,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "docclass_version": env!("CARGO_PKG_VERSION"),
        "model": { "path": dir.display().to_string(), "name": pipeline.model_name, "encoder_fingerprint": fingerprint(&encoder_dir)? },
        "data": { "path": args.data.display().to_string(), "sha256": file_sha256(&args.data)?, "documents": documents },
        "seconds": round(seconds, 1),
        "throughput": { "documents_per_s": round(documents as f64 / seconds, 2), "tokens_per_s": round(tokens as f64 / seconds, 0) },
        "machine": { "threads": threads, "cores": std::thread::available_parallelism().map_or(1, |n| n.get()) },
    });
    metrics.as_object_mut().expect("an object").extend(results.as_object().expect("an object").clone());
    std::fs::create_dir_all(&args.report).with_context(|| format!("creating {}", args.report.display()))?;
    write_atomically(&args.report.join("metrics.json"), &(serde_json::to_string_pretty(&metrics)? + "\n"))?;
    write_atomically(&args.report.join("report.md"), &markdown_report(&metrics))?;
    eprintln!("docclass: {} documents in {seconds:.1} s; report in {}", documents, args.report.display());
    print_summary(&metrics);
    Ok(Outcome::Complete)
}

fn evaluate_classification(
    args: &EvalArgs,
    pipeline: &Pipeline,
    options: &PipelineOptions,
) -> Result<(ClassificationMetrics, Vec<Record>, usize)> {
    let columns = args.format.columns(None);
    let docs = read_documents(&args.data, &columns)?;
    let path = args.data.display().to_string();
    let mut records = Vec::with_capacity(docs.len());
    let mut tokens = 0;
    for chunk in docs.chunks(CHUNK) {
        let items = chunk
            .iter()
            .map(|d| {
                let source = Source { path: path.clone(), line: Some(d.line as u64) };
                Ok(Document { id: source.to_string(), source, text: d.text.clone(), encoding: "UTF-8" })
            })
            .collect();
        let (chunk_records, stats) = pipeline.process(items, options)?;
        tokens += stats.tokens;
        records.extend(chunk_records);
    }
    let head_names = pipeline.classification_head_names();
    match &args.head {
        Some(name) if !head_names.contains(name) => {
            bail!("the model has no classification head {name:?}; it has {head_names:?}")
        }
        None if head_names.is_empty() => bail!("the model has no classification head"),
        _ => {}
    }
    // Classes in the model's order, then gold labels the model does not know.
    let mut labels: Vec<String> = pipeline.classification_labels(args.head.as_deref());
    let known = labels.len();
    let index_of = |label: &str, labels: &mut Vec<String>| -> usize {
        labels.iter().position(|l| l == label).unwrap_or_else(|| {
            labels.push(label.to_string());
            labels.len() - 1
        })
    };
    let (mut gold, mut predicted) = (Vec::new(), Vec::new());
    for (doc, record) in docs.iter().zip(&records) {
        if let Some(error) = &record.error {
            bail!("{}: the model could not process the document: {error}", record.source);
        }
        // The first classification head fills the record's `label`, the others `heads`.
        let classification = match &args.head {
            Some(name) if Some(name) != head_names.first() => record.heads.get(name),
            _ => record.classification.as_ref(),
        }
        .context("no classification in the model's output")?;
        if doc.labels.len() != 1 {
            bail!("{}:{}: eval scores single-label data; the row has {} labels", path, doc.line, doc.labels.len());
        }
        gold.push(index_of(&doc.labels[0], &mut labels));
        predicted.push(index_of(&classification.label, &mut labels));
    }
    if labels.len() > known {
        eprintln!(
            "docclass: warning: gold labels the model cannot predict: {:?} ({} documents)",
            &labels[known..],
            gold.iter().filter(|&&g| g >= known).count()
        );
    }
    Ok((classification_metrics(&labels, &gold, &predicted), records, tokens))
}

fn evaluate_tagging(
    args: &EvalArgs,
    pipeline: &Pipeline,
    options: &PipelineOptions,
) -> Result<(EntityMetrics, EntityMetrics, usize, usize)> {
    let tag_map = args.format.tag_map()?;
    let sentences = read_conll(&args.data, tag_map.as_ref())?;
    let (texts, spans): (Vec<String>, Vec<Vec<(usize, usize)>>) =
        sentences.iter().map(TaggedSentence::text_and_spans).unzip();
    let mut predicted = Vec::with_capacity(sentences.len());
    let mut tokens = 0;
    for (text_chunk, span_chunk) in texts.chunks(CHUNK).zip(spans.chunks(CHUNK)) {
        let (tags, chunk_tokens) = pipeline.tag_pretokenized(text_chunk, span_chunk, options)?;
        predicted.extend(tags);
        tokens += chunk_tokens;
    }
    let gold: Vec<Vec<String>> = sentences.iter().map(|s| s.tags.clone()).collect();
    let tagger_types = pipeline.tagger_types();
    let unknown: std::collections::BTreeSet<&str> = gold
        .iter()
        .flatten()
        .filter_map(|t| t.split_once('-').map(|(_, kind)| kind))
        .filter(|kind| !tagger_types.iter().any(|k| k == kind))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "{}: entity types {unknown:?} are not among the tagger's {tagger_types:?} (give --tag-map to map fine tags to the tagger's)",
            args.data.display()
        );
    }
    Ok((
        entity_metrics(&gold, &predicted, SpanMode::Default),
        entity_metrics(&gold, &predicted, SpanMode::StrictIob2),
        sentences.len(),
        tokens,
    ))
}

fn write_predictions(report: &Path, records: &[Record]) -> Result<()> {
    std::fs::create_dir_all(report)?;
    let mut text = String::new();
    for record in records {
        text.push_str(&serde_json::to_string(record)?);
        text.push('\n');
    }
    write_atomically(&report.join("predictions.jsonl"), &text)
}

fn write_atomically(path: &Path, content: &str) -> Result<()> {
    let partial = path.with_file_name(format!(".{}.partial", path.file_name().unwrap_or_default().to_string_lossy()));
    std::fs::write(&partial, content).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn file_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash)?;
    Ok(format!("{:x}", hash.finalize()))
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn print_summary(metrics: &serde_json::Value) {
    if let Some(c) = metrics.get("classification") {
        println!(
            "accuracy {:.4}  macro-F1 {:.4}",
            c["accuracy"].as_f64().unwrap_or(0.0),
            c["macro_f1"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(e) = metrics.get("entities") {
        for mode in ["default", "strict_iob2"] {
            let m = &e[mode];
            println!(
                "entities ({mode}): precision {:.4}  recall {:.4}  F1 {:.4}",
                m["precision"].as_f64().unwrap_or(0.0),
                m["recall"].as_f64().unwrap_or(0.0),
                m["f1"].as_f64().unwrap_or(0.0)
            );
        }
    }
}

/// A Markdown version of `metrics.json` for people.
fn markdown_report(m: &serde_json::Value) -> String {
    let mut out = format!(
        "# Evaluation of {} on {}\n\n- command: `{}`\n- {} documents in {} s ({} documents/s, {} tokens/s), {} threads\n- docclass {}, encoder fingerprint `{}`, data sha256 `{}`\n\n",
        m["model"]["name"].as_str().unwrap_or(""),
        m["data"]["path"].as_str().unwrap_or(""),
        m["command"].as_str().unwrap_or(""),
        m["data"]["documents"],
        m["seconds"],
        m["throughput"]["documents_per_s"],
        m["throughput"]["tokens_per_s"],
        m["machine"]["threads"],
        m["docclass_version"].as_str().unwrap_or(""),
        m["model"]["encoder_fingerprint"].as_str().unwrap_or(""),
        m["data"]["sha256"].as_str().unwrap_or(""),
    );
    let f = |v: &serde_json::Value| format!("{:.4}", v.as_f64().unwrap_or(0.0));
    if let Some(c) = m.get("classification") {
        out += &format!("accuracy **{}**, macro-F1 **{}**\n\n| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n", f(&c["accuracy"]), f(&c["macro_f1"]));
        for row in c["per_class"].as_array().into_iter().flatten() {
            out += &format!(
                "| {} | {} | {} | {} | {} |\n",
                row["label"].as_str().unwrap_or(""),
                f(&row["precision"]),
                f(&row["recall"]),
                f(&row["f1"]),
                row["support"]
            );
        }
    }
    if let Some(e) = m.get("entities") {
        for (mode, title) in [("strict_iob2", "strict IOB2"), ("default", "seqeval default (conlleval-like)")] {
            let x = &e[mode];
            out += &format!(
                "\n## Entities, {title}\n\nmicro precision {}, recall {}, F1 **{}** ({} gold, {} predicted)\n\n| type | precision | recall | F1 | support |\n|---|---|---|---|---|\n",
                f(&x["precision"]), f(&x["recall"]), f(&x["f1"]), x["support"], x["predicted"]
            );
            for (kind, row) in x["per_type"].as_object().into_iter().flatten() {
                out += &format!(
                    "| {kind} | {} | {} | {} | {} |\n",
                    f(&row["precision"]),
                    f(&row["recall"]),
                    f(&row["f1"]),
                    row["support"]
                );
            }
        }
    }
    out
}
