//! Parity with transformers: tiny random checkpoints of BERT, XLM-RoBERTa and DistilBERT,
//! bare and with sequence- and token-classification heads, made by
//! scripts/make_parity_fixtures.py together with what transformers computed for a few
//! German texts in one padded batch. docclass must give the same token ids and the same
//! hidden states / logits to 1e-4.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use docclass::infer::{Pipeline, PipelineOptions};
use docclass::model::encoder::first_token;
use docclass::model::{ClassificationHead, ModelBundle, PackedBatch, Precision, TokenClassificationHead};
use docclass::text::Window;
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name)
}

fn rows(value: &Value) -> Vec<Vec<f32>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

fn assert_close(what: &str, got: &[Vec<f32>], expected: &[Vec<f32>]) {
    assert_eq!(got.len(), expected.len(), "{what}: row count");
    let mut worst = 0.0f32;
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g.len(), e.len(), "{what}: row length");
        for (a, b) in g.iter().zip(e) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst <= TOLERANCE, "{what}: max abs difference {worst} > {TOLERANCE}");
}

/// Loads a fixture, checks the token ids and returns the pipeline, the packed batch of
/// all texts (special tokens included, as transformers frames them) and the expectations.
fn load(name: &str) -> (Pipeline, PackedBatch, Value) {
    let dir = fixture(name);
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let pipeline = Pipeline::new(ModelBundle::load(&dir).unwrap(), None).unwrap();
    let mut batch = PackedBatch::default();
    for (text, ids) in expected["texts"].as_array().unwrap().iter().zip(expected["ids"].as_array().unwrap()) {
        let tokens = pipeline.text.tokenize(text.as_str().unwrap()).unwrap();
        let window = Window { content: 0..tokens.len() };
        let got = pipeline.text.window_ids(&tokens, &window);
        let want: Vec<u32> = ids.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(got, want, "{name}: token ids of {text}");
        batch.push(&got);
    }
    (pipeline, batch, expected)
}

fn split_rows(t: &Tensor, lens: &[usize]) -> Vec<Vec<Vec<f32>>> {
    let all = t.to_vec2::<f32>().unwrap();
    let mut out = Vec::new();
    let mut start = 0;
    for &len in lens {
        out.push(all[start..start + len].to_vec());
        start += len;
    }
    out
}

fn check_base(name: &str) {
    let (pipeline, batch, expected) = load(name);
    let hidden = pipeline.encoder.forward(&batch).unwrap();
    for (i, (got, want)) in
        split_rows(&hidden, &batch.lens).iter().zip(expected["last_hidden_state"].as_array().unwrap()).enumerate()
    {
        assert_close(&format!("{name} text {i} hidden states"), got, &rows(want));
    }
}

fn check_sequence_classification(name: &str) {
    let (pipeline, batch, expected) = load(name);
    let hidden = pipeline.encoder.forward(&batch).unwrap();
    let Some(head) = pipeline.heads.first().and_then(|h| h.as_any().downcast_ref::<ClassificationHead>()) else {
        panic!("{name}: no classification head")
    };
    let logits = head.logits(&first_token(&hidden, &batch.starts()).unwrap()).unwrap().to_vec2::<f32>().unwrap();
    assert_close(&format!("{name} logits"), &logits, &rows(&expected["logits"]));
}

fn check_token_classification(name: &str) {
    let (pipeline, batch, expected) = load(name);
    let hidden = pipeline.encoder.forward(&batch).unwrap();
    let Some(head) = pipeline.heads.first().and_then(|h| h.as_any().downcast_ref::<TokenClassificationHead>()) else {
        panic!("{name}: no token head")
    };
    let logits = head.logits(&hidden).unwrap();
    for (i, (got, want)) in
        split_rows(&logits, &batch.lens).iter().zip(expected["token_logits"].as_array().unwrap()).enumerate()
    {
        assert_close(&format!("{name} text {i} token logits"), got, &rows(want));
    }
}

#[test]
fn bert_encoder_matches_transformers() {
    check_base("bert-base");
}

#[test]
fn bert_sequence_classification_matches_transformers() {
    check_sequence_classification("bert-seqcls");
}

#[test]
fn bert_token_classification_matches_transformers() {
    check_token_classification("bert-tokcls");
}

#[test]
fn xlm_roberta_encoder_matches_transformers() {
    check_base("xlm-roberta-base");
}

#[test]
fn xlm_roberta_sequence_classification_matches_transformers() {
    check_sequence_classification("xlm-roberta-seqcls");
}

#[test]
fn xlm_roberta_multi_label_classification_matches_transformers() {
    check_sequence_classification("xlm-roberta-multilabel");
    let (pipeline, _, _) = load("xlm-roberta-multilabel");
    let Some(head) = pipeline.heads.first().and_then(|h| h.as_any().downcast_ref::<ClassificationHead>()) else {
        panic!("no classification head")
    };
    assert!(head.multi_label, "problem_type multi_label_classification must select sigmoid scores");
}

#[test]
fn xlm_roberta_token_classification_matches_transformers() {
    check_token_classification("xlm-roberta-tokcls");
}

#[test]
fn distilbert_encoder_matches_transformers() {
    check_base("distilbert-base");
}

#[test]
fn distilbert_sequence_classification_matches_transformers() {
    check_sequence_classification("distilbert-seqcls");
}

#[test]
fn distilbert_token_classification_matches_transformers() {
    check_token_classification("distilbert-tokcls");
}

/// The real encoder's directory (after scripts/setup.sh) and transformers' embeddings of
/// a few texts with it.
fn real_e5() -> (PathBuf, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/multilingual-e5-small");
    assert!(dir.join("model.safetensors").exists(), "{} is missing: run scripts/setup.sh", dir.display());
    let expected = serde_json::from_str(&std::fs::read_to_string(fixture("../e5-embeddings.json")).unwrap()).unwrap();
    (dir, expected)
}

/// The real encoder (when fetched) against transformers' mean-pooled embeddings of the
/// same texts, computed in one padded batch from the same converted weights.
#[test]
#[ignore = "needs the real encoder or datasets: run scripts/setup.sh"]
fn real_e5_embeddings_match_transformers() {
    let (dir, expected) = real_e5();
    let pipeline = Pipeline::new(ModelBundle::load(&dir).unwrap(), None).unwrap();
    let texts: Vec<&str> = expected["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let options = PipelineOptions::first_window_only(std::num::NonZeroUsize::new(4096).unwrap());
    let (embeddings, _) = pipeline.embed_texts(&texts, &options).unwrap();
    assert_close("e5 mean-pooled embeddings", &embeddings, &rows(&expected["embeddings"]));
}

/// The real encoder at int8 gives the same bits however its windows are batched. On a CPU
/// with AMX-BF16 this covers attention in bf16, which the tiny fixtures (heads of 8, not
/// 32) never run.
#[test]
#[ignore = "needs the real encoder or datasets: run scripts/setup.sh"]
fn real_e5_int8_output_does_not_depend_on_the_batch() {
    let (dir, expected) = real_e5();
    let texts: Vec<&str> = expected["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let pipeline = Pipeline::new(ModelBundle::load_at(&dir, Precision::Int8).unwrap(), None).unwrap();
    let embed = |batch_tokens: usize| {
        let options = PipelineOptions::first_window_only(std::num::NonZeroUsize::new(batch_tokens).unwrap());
        pipeline.embed_texts(&texts, &options).unwrap().0
    };
    // One batch for all texts, then about one text per batch.
    assert_eq!(embed(4096), embed(8), "int8 embeddings depend on the batch");
}

/// The real encoder at int8 against itself at f32, on the same texts: every mean-pooled
/// embedding within a cosine of 0.999 (bench/README.md has the corpus-wide numbers).
#[test]
#[ignore = "needs the real encoder or datasets: run scripts/setup.sh"]
fn real_e5_int8_embeddings_stay_close_to_f32() {
    let (dir, expected) = real_e5();
    let texts: Vec<&str> = expected["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let options = PipelineOptions::first_window_only(std::num::NonZeroUsize::new(4096).unwrap());
    let embed = |precision: Precision| {
        let pipeline = Pipeline::new(ModelBundle::load_at(&dir, precision).unwrap(), None).unwrap();
        pipeline.embed_texts(&texts, &options).unwrap().0
    };
    let (exact, quantized) = (embed(Precision::F32), embed(Precision::Int8));
    for ((a, b), text) in exact.iter().zip(&quantized).zip(&texts) {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cosine = dot / (norm(a) * norm(b));
        assert!(cosine > 0.999, "int8 embedding of {text:?}: cosine {cosine} to f32");
    }
}
