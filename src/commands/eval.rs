//! `docclass eval`: score predictions against gold data and write a report directory.
//!
//! The predictions come from running a model on the gold data (written to
//! `predictions.jsonl.gz` first) or from a results file of any system (--predictions);
//! both are read back and scored the same way. `--compare A B` puts two reports side
//! by side.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{configure_run, model_dir, Outcome};
use crate::cli::{EvalArgs, TrainTask};
use crate::eval::alignment::{align, parse_predictions, Gold};
use crate::eval::metrics::{DataInfo, Machine, MetricsFile, ModelInfo, PredictionsInfo, Throughput, METRICS_SCHEMA};
use crate::eval::render;
use crate::eval::scoring::{score, ScoringOptions};
use crate::fsutil::{gzip, read_text, refuse_existing_dir, write_durably};
use crate::hashing::{file_sha256, sha256_hex};
use crate::infer::runner::{ChunkLimits, Documents, Records, Runner};
use crate::infer::{Pipeline, PipelineOptions};
use crate::ingest::labelled::{read_conll, read_documents, TaggedSentence};
use crate::ingest::{Document, Item, Source};
use crate::model::bundle::ModelIdentity;
use crate::model::heads::{DocumentClassifier, Tagger, Task, TaskHead};
use crate::model::ModelBundle;
use crate::train::cache::{cache_dir, features, FeatureRequest};

const CHUNK: usize = 256;

pub fn run(args: EvalArgs) -> Result<Outcome> {
    let threads = configure_run(&args.run)?;
    refuse_existing_dir(&args.report, args.force, "report")?;
    if let [a, b] = &args.compare[..] {
        let options = crate::eval::compare::CompareOptions {
            bootstrap: args.bootstrap,
            seed: args.seed,
            report: args.report.clone(),
        };
        return crate::eval::compare::run(a, b, &options).map(|()| Outcome::Complete);
    }
    let gold_path =
        args.gold.clone().or_else(|| args.data.clone()).context("give DATA, or --predictions with --gold")?;
    let gold = read_gold(&args, &gold_path)?;
    let started = Instant::now();
    let (predictions_path, predictions_text, run) = match &args.predictions {
        Some(path) => (path.clone(), read_text(path)?, None),
        None => {
            let (text, run) = run_model(&args, &gold)?;
            std::fs::create_dir_all(&args.report).with_context(|| format!("creating {}", args.report.display()))?;
            let path = args.report.join(render::PREDICTIONS_FILE);
            write_durably(&path, &gzip(text.as_bytes()))?;
            (path, text, Some(run))
        }
    };
    let predictions = parse_predictions(&predictions_path, &predictions_text)?;
    let aligned = align(&gold, &predictions, &predictions_path, args.head.as_deref())?;
    for warning in &aligned.warnings {
        crate::logging::warning("alignment", warning, json!({}));
    }
    let scored =
        score(&aligned.cases, &ScoringOptions { target_accuracy: args.target_accuracy, examples: args.examples });
    let seconds = started.elapsed().as_secs_f64();
    let documents = predictions.len().min(gold.ids().len());

    let model = match &run {
        Some(run) => ModelInfo {
            path: Some(run.dir.display().to_string()),
            name: Some(run.identity.record_name.clone()),
            sha256: Some(run.identity.fingerprint.clone()),
            precision: Some(run.identity.precision),
        },
        None => {
            let recorded = || predictions.first()?.record.get("model")?.as_str().map(String::from);
            ModelInfo { path: None, name: args.system.clone().or_else(recorded), sha256: None, precision: None }
        }
    };
    let metrics = MetricsFile {
        schema: METRICS_SCHEMA.to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        docclass_version: env!("CARGO_PKG_VERSION").to_string(),
        model,
        data: DataInfo { path: gold_path.display().to_string(), sha256: file_sha256(&gold_path)?, documents },
        predictions: PredictionsInfo {
            path: predictions_path.display().to_string(),
            sha256: sha256_hex(predictions_text.as_bytes()),
            ran_model: run.is_some(),
        },
        seconds: round(seconds, 1),
        throughput: run.as_ref().filter(|r| !r.from_cache).map(|r| Throughput {
            documents_per_s: round(documents as f64 / seconds, 2),
            tokens_per_s: (r.tokens as f64 / seconds).round() as u64,
            tokens: r.tokens,
        }),
        machine: Machine {
            threads,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpu_model(),
            os: std::env::consts::OS.to_string(),
        },
        warnings: aligned
            .warnings
            .iter()
            .cloned()
            .chain(run.as_ref().filter(|r| r.from_cache).map(|_| {
                "encoder features read from the feature cache (16-bit, windows as train cuts them)".to_string()
            }))
            .collect(),
        task: scored.metrics,
    };
    write_report(&args.report, &metrics, &scored.documents)?;
    crate::logging::info(
        "evaluated",
        &format!("{documents} documents in {seconds:.1} s; report in {}", args.report.display()),
        json!({"documents": documents, "seconds": seconds, "report": args.report.display().to_string()}),
    );
    print!("{}", render::summary(&metrics));
    Ok(Outcome::Complete)
}

fn read_gold(args: &EvalArgs, path: &Path) -> Result<Gold> {
    Ok(match args.data_format.task_of(path) {
        TrainTask::Classify => {
            // Several labels per document come as JSON lists; a separator is for train.
            Gold::Documents {
                path: path.to_path_buf(),
                documents: read_documents(path, &args.data_format.columns(None))?,
            }
        }
        TrainTask::Tag => {
            let tag_map = args.data_format.tag_map()?;
            Gold::Sentences { path: path.to_path_buf(), sentences: read_conll(path, tag_map.as_ref())? }
        }
    })
}

/// What a model run adds to the report.
struct ModelRun {
    dir: PathBuf,
    identity: ModelIdentity,
    tokens: usize,
    /// The encoder features came from the feature cache: no throughput to report.
    from_cache: bool,
}

/// Runs the model on the gold texts; returns its predictions as JSONL.
fn run_model(args: &EvalArgs, gold: &Gold) -> Result<(String, ModelRun)> {
    let dir = model_dir(args.model.model.clone());
    let bundle = ModelBundle::load_at(&dir, args.run.inference_precision())
        .with_context(|| format!("loading model {}", dir.display()))?;
    let pipeline = Pipeline::new(bundle, args.run.max_len)?;
    let options = super::pipeline_options(&pipeline, &args.run, &args.windows, None, None)?;
    if let Some(cache) = &args.cache {
        let out = predict_from_cache(args, &pipeline, gold, &cache_dir(cache.as_deref()))?;
        return Ok((out, ModelRun { identity: pipeline.identity.clone(), dir, tokens: 0, from_cache: true }));
    }
    let mut out = String::new();
    let mut tokens = 0;
    let ids = gold.ids();
    let progress = crate::logging::progress_bar(
        ids.len() as u64,
        "evaluating: {bar:30} {pos}/{len} texts · {elapsed} elapsed, ETA {eta}",
        false,
    );
    match gold {
        Gold::Documents { path, documents } => {
            let heads = pipeline.classification_head_names();
            match &args.head {
                Some(name) if !heads.contains(name) => {
                    bail!("the model has no classification head {name:?}; it has {heads:?}")
                }
                None if heads.is_empty() => bail!("the model has no classification head"),
                _ => {}
            }
            // The gold file's reader, as `classify` would name it.
            let extractor = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                Some("csv") => "csv",
                Some("jsonl" | "ndjson") => "jsonl",
                _ => "tsv",
            };
            let items: Vec<Item> = documents
                .iter()
                .zip(&ids)
                .map(|(d, id)| {
                    let source = Source { path: path.display().to_string(), line: Some(d.line as u64) };
                    Ok(Document {
                        id: id.clone(),
                        source,
                        text: d.text.clone(),
                        encoding: "UTF-8",
                        extractor,
                        fields: Default::default(),
                    })
                })
                .collect();
            let chunks = ChunkLimits { documents: CHUNK, bytes: u64::MAX };
            let mut runner = Runner::new(
                Documents::Memory(items.into_iter()),
                Records::Memory(Vec::new()),
                &pipeline.identity.record_name,
                chunks,
            );
            let mut done = 0;
            runner.run(&pipeline, &options, |_, counts| {
                progress.inc(counts.read - done);
                done = counts.read;
            })?;
            let (records, _, counts) = runner.finish();
            tokens += counts.tokens as usize;
            let Records::Memory(records) = records else { unreachable!("records kept in memory") };
            for record in records {
                out += &serde_json::to_string(&record)?;
                out.push('\n');
            }
        }
        Gold::Sentences { sentences, .. } => {
            let (texts, spans): (Vec<String>, Vec<Vec<(usize, usize)>>) =
                sentences.iter().map(TaggedSentence::text_and_spans).unzip();
            for ((text_chunk, span_chunk), id_chunk) in
                texts.chunks(CHUNK).zip(spans.chunks(CHUNK)).zip(ids.chunks(CHUNK))
            {
                let (tags, chunk_tokens) = pipeline.tag_pretokenized(text_chunk, span_chunk, &options)?;
                tokens += chunk_tokens;
                progress.inc(text_chunk.len() as u64);
                for (id, tags) in id_chunk.iter().zip(tags) {
                    out += &json!({"id": id, "tags": tags, "model": pipeline.identity.record_name}).to_string();
                    out.push('\n');
                }
            }
        }
    }
    progress.finish_and_clear();
    let run = ModelRun { identity: pipeline.identity.clone(), dir, tokens, from_cache: false };
    Ok((out, run))
}

/// Predictions of the model's one trained head from cached encoder features (encoding
/// and storing the texts the cache lacks), as JSONL.
fn predict_from_cache(args: &EvalArgs, pipeline: &Pipeline, gold: &Gold, cache: &Path) -> Result<String> {
    let task = match gold {
        Gold::Documents { .. } => Task::ClassifyDocuments,
        Gold::Sentences { .. } => Task::TagWords,
    };
    let heads: Vec<&dyn TaskHead> = pipeline
        .heads
        .iter()
        .map(|h| h.as_ref())
        .filter(|h| h.task() == task && args.head.as_ref().is_none_or(|name| name == h.name()))
        .collect();
    let [head] = heads[..] else {
        bail!(
            "--cache scores one head trained by docclass train; the model has {} to choose from here (--head NAME)",
            heads.len()
        );
    };
    let (texts, spans): (Vec<String>, Vec<Vec<(usize, usize)>>) = match gold {
        Gold::Documents { documents, .. } => documents.iter().map(|d| (d.text.clone(), Vec::new())).unzip(),
        Gold::Sentences { sentences, .. } => sentences.iter().map(TaggedSentence::text_and_spans).unzip(),
    };
    let label = gold.path().display().to_string();
    let request = FeatureRequest { label: &label, texts: &texts, word_spans: &spans };
    let encoder_layers = pipeline.encoder.config().layers;
    let whole_texts = PipelineOptions::whole_texts(pipeline, args.run.batch_tokens)?;
    let features = features(pipeline, &head.layers(encoder_layers), encoder_layers, &whole_texts, cache, &request)?;
    let as_f32 = |values: &[half::f16]| values.iter().map(|v| v.to_f32()).collect::<Vec<f32>>();
    let model = &pipeline.identity.record_name;
    let mut out = String::new();
    for (i, id) in gold.ids().iter().enumerate() {
        let record = if let Some(tagger) = head.as_any().downcast_ref::<Tagger>() {
            // Word spans count characters.
            let chars: Vec<char> = texts[i].chars().collect();
            let words: Vec<String> = spans[i].iter().map(|&(a, b)| chars[a..b].iter().collect()).collect();
            json!({"id": id, "tags": tagger.tags_of_word_features(&as_f32(features.words(i)), &words)?, "model": model})
        } else if let Some(classifier) = head.as_any().downcast_ref::<DocumentClassifier>() {
            let decided =
                classifier.classify_pooled(&as_f32(features.mean(i)), &as_f32(features.max(i)), &texts[i], None);
            let mut record = serde_json::to_value(&decided)?;
            record["id"] = json!(id);
            record["model"] = json!(model);
            record
        } else {
            bail!("--cache scores heads trained by docclass train; {:?} is not one", head.name());
        };
        out += &record.to_string();
        out.push('\n');
    }
    Ok(out)
}

/// metrics.json, documents.jsonl.gz, report.md and report.html, each written whole or not at all.
pub fn write_report(dir: &Path, metrics: &MetricsFile, documents: &[String]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_durably(&dir.join("metrics.json"), (serde_json::to_string_pretty(metrics)? + "\n").as_bytes())?;
    if !documents.is_empty() {
        write_durably(&dir.join(render::DOCUMENTS_FILE), &gzip((documents.join("\n") + "\n").as_bytes()))?;
    }
    write_durably(&dir.join("report.md"), render::markdown(metrics).as_bytes())?;
    write_durably(&dir.join("report.html"), render::html(metrics).as_bytes())?;
    // A report replaced with --force must not keep the plain files of an older docclass
    // beside the compressed ones.
    for stale in render::PLAIN_FILES {
        let path = dir.join(stale);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    Ok(())
}

/// The CPU's model name, where /proc/cpuinfo tells it.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}
