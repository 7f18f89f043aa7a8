//! `docclass bench`: the encoder's throughput on a corpus, measured as the anchors in
//! ../shared/anchors measure PyTorch and ONNX Runtime: timed region = tokenization +
//! encoder + mean pooling; raw text without the e5 prefix; each document truncated to
//! one window; documents sorted by length.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{configure_run, peak_memory_bytes, Outcome};
use crate::cli::BenchArgs;
use crate::fsutil::write_durably;
use crate::infer::{Pipeline, PipelineOptions};
use crate::model::cpu::CpuFeatures;
use crate::model::int8::Int8Kernel;
use crate::model::ModelBundle;

pub fn run(args: BenchArgs) -> Result<Outcome> {
    let threads = configure_run(&args.run)?;
    let text = std::fs::read_to_string(&args.corpus)
        .with_context(|| format!("{}: cannot read corpus", args.corpus.display()))?;
    let mut docs: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if let Some(limit) = args.limit {
        docs.truncate(limit);
    }
    if docs.is_empty() {
        bail!("{}: the corpus has no documents", args.corpus.display());
    }
    let dir = args.model.model.unwrap_or_else(|| super::resolve_default(super::DEFAULT_ENCODER));
    let mut bundle = ModelBundle::load_at(&dir, args.run.inference_precision())
        .with_context(|| format!("loading model {}", dir.display()))?;
    let identity = bundle.identity.clone();
    let attention = bundle.encoder.attention_arithmetic();
    bundle.settings.input_prefix.clear();
    let pipeline = Pipeline::new(bundle, args.run.max_len)?;
    let options = PipelineOptions::first_window_only(args.run.batch_tokens);

    // Untimed warm-up on a few documents from the middle of the corpus.
    let mid = docs.len() / 2;
    pipeline.embed_texts(&docs[mid..(mid + 16).min(docs.len())], &options)?;
    let mut runs = Vec::new();
    let mut tokens = 0;
    let mut embeddings = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let started = Instant::now();
        let (embedded, n) = pipeline.embed_texts(&docs, &options)?;
        runs.push(started.elapsed().as_secs_f64());
        tokens = n;
        embeddings = embedded;
    }
    runs.sort_by(f64::total_cmp);
    let seconds = runs[runs.len() / 2];
    let maxrss_mb = peak_memory_bytes().map(|b| round(b as f64 / 1048576.0, 1));
    if let Some(path) = &args.save_embeddings {
        let bytes: Vec<u8> = embeddings.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
        write_durably(path, &bytes)?;
    }
    let cosine = match &args.compare_embeddings {
        Some(path) => Some(compare_embeddings(path, &embeddings)?),
        None => None,
    };
    let mut result = serde_json::json!({
        "system": "docclass",
        "corpus": args.corpus.display().to_string(),
        "docs": docs.len(),
        "tokens": tokens,
        "wall_s": round(seconds, 4),
        "tok_per_s": round(tokens as f64 / seconds, 2),
        "docs_per_s": round(docs.len() as f64 / seconds, 3),
        "runs_s": runs.iter().map(|s| round(*s, 4)).collect::<Vec<_>>(),
        "maxrss_mb": maxrss_mb,
        "threads": threads,
        "batch_tokens": options.batch_tokens,
        "model": identity.record_name,
        "precision": identity.precision,
        "int8_kernel": (!identity.precision.is_f32()).then(|| Int8Kernel::detect().name()),
        "attention": attention.name(),
        "cpu_features": CpuFeatures::get().names(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some((mean, min)) = cosine {
        result["cosine_to_reference"] = serde_json::json!({ "mean": round(mean, 6), "min": round(min, 6) });
    }
    println!("{result}");
    if let Some(path) = &args.record {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        writeln!(file, "{result}").with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(Outcome::Complete)
}

/// Mean and minimum cosine similarity of each embedding to its row in `path` (written by
/// `--save-embeddings`).
fn compare_embeddings(path: &Path, embeddings: &[Vec<f32>]) -> Result<(f64, f64)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read embeddings", path.display()))?;
    let dim = embeddings.first().map_or(0, Vec::len);
    if bytes.len() != embeddings.len() * dim * 4 {
        bail!(
            "{}: {} bytes, but {} embeddings of {dim} values need {}: not saved from the same corpus",
            path.display(),
            bytes.len(),
            embeddings.len(),
            embeddings.len() * dim * 4
        );
    }
    let reference: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let cosines: Vec<f64> = embeddings
        .iter()
        .zip(reference.chunks_exact(dim.max(1)))
        .map(|(a, b)| {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            dot / (norm(a) * norm(b))
        })
        .collect();
    let mean = cosines.iter().sum::<f64>() / cosines.len().max(1) as f64;
    Ok((mean, cosines.iter().copied().fold(f64::INFINITY, f64::min)))
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}
