//! Fitting a tagger: a linear-chain CRF over words whose emission scores are linear in
//! the word's standardised encoder features and its hashed word features, with learned
//! transition scores under IOB2 constraints. Trained with Adam on mini-batches of
//! sentences (the negative log-likelihood, by forward-backward) and selected on the
//! development set's strict IOB2 entity F1.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use rayon::prelude::*;
use serde_json::json;

use super::cache::FeatureSet;
use super::optim::{Adam, EpochLoop, Standardizer};
use super::{head_record, Example, Split, TrainContext};
use crate::decode::iob2::{self, SpanMode};
use crate::eval::entities::entity_metrics;
use crate::ingest::labelled::TaggedSentence;
use crate::logging;
use crate::model::head_file::{save_head, HeadKind, HeadSpec, LexicalTable, HEAD_FORMAT};
use crate::model::heads::tagger::{forward_backward, viterbi, Transitions};
use crate::text::lexical::word_features;

/// A word ending in a period must occur this often in training to count as an abbreviation.
const MIN_ABBREVIATION_COUNT: usize = 2;

struct Prepared<'a> {
    features: &'a FeatureSet,
    index: usize,
    gold: &'a [String],
    /// Hashed word features, per word.
    lexical: Vec<Vec<u32>>,
    tags: Vec<usize>,
}

pub fn train(context: &TrainContext, split: Split<TaggedSentence>) -> Result<()> {
    let args = context.config;
    let tagging = &args.tagger;
    // Tags: O first, then B-/I- of each type in alphabetical order.
    let kinds: BTreeSet<String> = split
        .train
        .iter()
        .flat_map(|e| e.item.tags.iter())
        .filter_map(|t| iob2::entity_type(t).map(String::from))
        .collect();
    if kinds.is_empty() {
        bail!("{}: no entity tags in the training data", args.train.display());
    }
    let mut tags = vec!["O".to_string()];
    for kind in &kinds {
        tags.push(format!("B-{kind}"));
        tags.push(format!("I-{kind}"));
    }
    for kind in &kinds {
        let n = split.train.iter().flat_map(|e| &e.item.tags).filter(|t| **t == format!("B-{kind}")).count();
        if n < super::MIN_EXAMPLES {
            bail!(
                "{}: entity type {kind:?} begins {n} time(s); at least {} are needed",
                args.train.display(),
                super::MIN_EXAMPLES
            );
        }
    }
    let index = super::label_index(&tags, split.dev.iter().map(|e| (e.item.line, &e.item.tags[..])), "tag", args)?;

    let buckets = args.lexical_buckets;
    let dim = split.train[0].features.dim;
    let standardizer =
        Standardizer::fit(split.train.iter().flat_map(|e| e.features.words(e.index).chunks_exact(dim)), dim);
    let (train_set, repaired) = prepare(&split.train, &tags, &index, buckets, true);
    let (dev_set, _) = prepare(&split.dev, &tags, &index, buckets, false);
    if repaired > 0 {
        logging::warning(
            "repaired_tags",
            &format!("{repaired} training tag(s) were I- without a B- before them; trained as B-"),
            json!({"repaired": repaired}),
        );
    }
    let abbreviations = abbreviations(&split.train);

    let k = tags.len();
    let model = Model {
        k,
        dim,
        buckets,
        dense_rate: tagging.dense_learning_rate / tagging.learning_rate,
        standardizer: &standardizer,
        constraints: iob2::allowed_transitions(&tags),
    };
    let mut adam = Adam::new(model.len(), tagging.learning_rate, tagging.l2);
    let log_path = context.staging.join("train-log.jsonl");
    let words_total: usize = train_set.iter().map(|s| s.tags.len()).sum();
    logging::info(
        "training_data",
        &format!(
            "{} training sentences ({words_total} words), {} development sentences, {k} tags, {dim} feature dimensions",
            train_set.len(),
            dev_set.len()
        ),
        json!({"train_sentences": train_set.len(), "train_words": words_total, "dev_sentences": dev_set.len(), "tags": k, "dim": dim}),
    );
    let fitted = EpochLoop {
        learning_rate: tagging.learning_rate,
        max_epochs: tagging.epochs,
        patience: tagging.patience,
        score_name: "strict_iob2_f1",
        log_path: &log_path,
        examples: train_set.len(),
        batch_size: tagging.batch_size,
        seed: args.seed,
    }
    .run(
        vec![0.0; model.len()],
        |params, learning_rate, batch| {
            adam.learning_rate = learning_rate;
            let sentences: Vec<&Prepared> = batch.iter().map(|&i| &train_set[i]).collect();
            model.step(params, &mut adam, &sentences)
        },
        |params| {
            let predicted: Vec<Vec<String>> = dev_set
                .par_iter()
                .map(|s| model.decode(params, s).into_iter().map(|t| tags[t].clone()).collect())
                .collect();
            let gold: Vec<Vec<String>> = dev_set.iter().map(|s| s.gold.to_vec()).collect();
            entity_metrics(&gold, &predicted, SpanMode::StrictIob2).f1
        },
    )?;

    let p = &fitted.params;
    let (dense, bias) = standardizer.fold(model.dense(p), model.bias(p));
    let spec = HeadSpec {
        format: HEAD_FORMAT.into(),
        kind: HeadKind::Tagger,
        name: super::head_name(args),
        labels: tags.clone(),
        multi_label: false,
        layers: context.layers.to_vec(),
        encoder: super::relative_encoder_path(context.staging, context.encoder_dir),
        encoder_fingerprint: context.encoder_fingerprint.to_string(),
        encoder_precision: context.encoder_precision,
        lexical_buckets: buckets,
        lexical_scheme: None,
        pooling: Default::default(),
        abbreviations,
        training: head_record(
            context,
            &split.dev_source,
            split.train.len(),
            split.dev.len(),
            super::epoch_fit_record(tagging, &fitted, "strict_iob2_f1"),
        )?,
        weights_sha256: String::new(), // set by save_head
    };
    let (transitions, start, end) = model.transition_params(p);
    let f32_tensors: BTreeMap<&str, Vec<f32>> = [
        ("dense", dense),
        ("bias", bias),
        ("transitions", transitions.to_vec()),
        ("start", start.to_vec()),
        ("end", end.to_vec()),
    ]
    .into_iter()
    .collect();
    let lexical = LexicalTable::prune(model.lexical(p), k, args.max_lexical_rows);
    save_head(context.staging, &spec, &f32_tensors, &BTreeMap::new(), &lexical)?;
    logging::info(
        "selected",
        &format!("best epoch {}, dev strict IOB2 F1 {:.4}", fitted.best_epoch, fitted.best_score),
        json!({"best_epoch": fitted.best_epoch, "dev_score": fitted.best_score, "score": "strict_iob2_f1"}),
    );
    Ok(())
}

/// Hashed word features and tag indices of each sentence; with `repair`, stray `I-`
/// tags become `B-` (returns how many).
fn prepare<'a>(
    examples: &'a [Example<'a, TaggedSentence>],
    tags: &[String],
    index: &BTreeMap<&str, usize>,
    buckets: usize,
    repair: bool,
) -> (Vec<Prepared<'a>>, usize) {
    let mut repaired = 0;
    let prepared = examples
        .iter()
        .map(|e| {
            let words = &e.item.words;
            let lexical = (0..words.len())
                .map(|i| {
                    let mut out = Vec::new();
                    if buckets > 0 {
                        word_features(words, i, buckets, &mut out);
                    }
                    out
                })
                .collect();
            let mut tag_ids: Vec<usize> = e.item.tags.iter().map(|t| index[t.as_str()]).collect();
            if repair {
                repaired += iob2::repair(&mut tag_ids, tags);
            }
            Prepared { features: e.features, index: e.index, gold: &e.item.tags, lexical, tags: tag_ids }
        })
        .collect();
    (prepared, repaired)
}

/// Words ending in a period, seen often enough in training, that the corpus keeps as
/// one word (`Abs.`, `vgl.`): the word splitter of `classify` keeps them too.
fn abbreviations(train: &[Example<TaggedSentence>]) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in train {
        for w in &e.item.words {
            if w.len() > 1 && w.ends_with('.') && w[..w.len() - 1].chars().any(char::is_alphabetic) {
                *counts.entry(w.as_str()).or_default() += 1;
            }
        }
    }
    counts.into_iter().filter(|(_, n)| *n >= MIN_ABBREVIATION_COUNT).map(|(w, _)| w.to_string()).collect()
}

/// Parameter layout: dense `[k, dim]`, bias `[k]`, lexical `[buckets, k]`, transitions
/// `[k, k]`, start `[k]`, end `[k]`.
struct Model<'a> {
    k: usize,
    dim: usize,
    buckets: usize,
    /// The dense weights' learning rate relative to the lexical weights'.
    dense_rate: f32,
    standardizer: &'a Standardizer,
    constraints: (Vec<bool>, Vec<bool>),
}

/// The gradient of one sentence.
struct SentenceGradient {
    loss: f64,
    /// Dense weights and bias.
    dense: Vec<f32>,
    /// Per word: its buckets' gradient row (the same for all its buckets).
    words: Vec<Vec<f32>>,
    /// Transitions, start, end.
    transitions: Vec<f32>,
}

impl Model<'_> {
    fn lexical_at(&self) -> usize {
        self.k * self.dim + self.k
    }

    fn transitions_at(&self) -> usize {
        self.lexical_at() + self.buckets * self.k
    }

    fn len(&self) -> usize {
        self.transitions_at() + self.k * self.k + 2 * self.k
    }

    fn dense<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[..self.k * self.dim]
    }

    fn bias<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[self.k * self.dim..self.lexical_at()]
    }

    fn lexical<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[self.lexical_at()..self.transitions_at()]
    }

    fn transition_params<'p>(&self, p: &'p [f32]) -> (&'p [f32], &'p [f32], &'p [f32]) {
        let at = self.transitions_at();
        let k = self.k;
        (&p[at..at + k * k], &p[at + k * k..at + k * k + k], &p[at + k * k + k..at + k * k + 2 * k])
    }

    fn transitions(&self, p: &[f32]) -> Transitions {
        let (scores, start, end) = self.transition_params(p);
        Transitions {
            scores: scores.to_vec(),
            start: start.to_vec(),
            end: end.to_vec(),
            allowed: self.constraints.0.clone(),
            allowed_start: self.constraints.1.clone(),
        }
    }

    /// Standardised features `[n, dim]` and emissions `[n, k]` of a sentence.
    fn emissions(&self, p: &[f32], s: &Prepared) -> (Vec<f32>, Vec<f32>) {
        let (k, dim) = (self.k, self.dim);
        let raw = s.features.words(s.index);
        let n = s.tags.len();
        let mut x = vec![0.0f32; n * dim];
        for (row, out) in raw.chunks_exact(dim).zip(x.chunks_exact_mut(dim)) {
            self.standardizer.apply(row, out);
        }
        let (dense, bias, lexical) = (self.dense(p), self.bias(p), self.lexical(p));
        let mut emissions = vec![0.0f32; n * k];
        for i in 0..n {
            let xi = &x[i * dim..(i + 1) * dim];
            let e = &mut emissions[i * k..(i + 1) * k];
            for (y, ey) in e.iter_mut().enumerate() {
                *ey = bias[y] + dense[y * dim..(y + 1) * dim].iter().zip(xi).map(|(a, b)| a * b).sum::<f32>();
            }
            for &b in &s.lexical[i] {
                e.iter_mut().zip(&lexical[b as usize * k..(b as usize + 1) * k]).for_each(|(e, w)| *e += w);
            }
        }
        (x, emissions)
    }

    fn decode(&self, p: &[f32], s: &Prepared) -> Vec<usize> {
        let (_, emissions) = self.emissions(p, s);
        viterbi(&self.transitions(p), &emissions, self.k)
    }

    fn gradient(&self, p: &[f32], transitions: &Transitions, s: &Prepared) -> SentenceGradient {
        let (k, dim) = (self.k, self.dim);
        let (x, emissions) = self.emissions(p, s);
        let (marginals, pairs, log_z) = forward_backward(transitions, &emissions, k);
        let n = s.tags.len();
        let gold = &s.tags;
        let mut gold_score = transitions.start[gold[0]] + transitions.end[gold[n - 1]];
        for i in 0..n {
            gold_score += emissions[i * k + gold[i]];
            if i > 0 {
                gold_score += transitions.scores[gold[i - 1] * k + gold[i]];
            }
        }
        let mut g = marginals;
        for i in 0..n {
            g[i * k + gold[i]] -= 1.0;
        }
        let mut dense = vec![0.0f32; k * dim + k];
        for i in 0..n {
            let xi = &x[i * dim..(i + 1) * dim];
            for y in 0..k {
                let gy = g[i * k + y];
                if gy.abs() < 1e-7 {
                    continue;
                }
                for (d, &xd) in dense[y * dim..(y + 1) * dim].iter_mut().zip(xi) {
                    *d += gy * xd;
                }
                dense[k * dim + y] += gy;
            }
        }
        let words = (0..n).map(|i| g[i * k..(i + 1) * k].to_vec()).collect();
        let mut trans = pairs;
        trans.resize(k * k + 2 * k, 0.0);
        for i in 1..n {
            trans[gold[i - 1] * k + gold[i]] -= 1.0;
        }
        for y in 0..k {
            // Start and end scores get the same gradient as the first and last emissions.
            trans[k * k + y] = g[y];
            trans[k * k + k + y] = g[(n - 1) * k + y];
        }
        SentenceGradient { loss: f64::from(log_z - gold_score), dense, words, transitions: trans }
    }

    /// One Adam step on a batch of sentences; returns the summed loss.
    fn step(&self, params: &mut [f32], adam: &mut Adam, batch: &[&Prepared]) -> f64 {
        let transitions = self.transitions(params);
        let p: &[f32] = params;
        let gradients: Vec<SentenceGradient> = batch.par_iter().map(|s| self.gradient(p, &transitions, s)).collect();
        let scale = 1.0 / batch.len() as f32;
        let k = self.k;
        let mut dense = vec![0.0f32; self.k * self.dim + self.k];
        let mut trans = vec![0.0f32; k * k + 2 * k];
        let mut lexical: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        let mut loss = 0.0;
        for (s, g) in batch.iter().zip(&gradients) {
            loss += g.loss;
            dense.iter_mut().zip(&g.dense).for_each(|(a, b)| *a += b * scale);
            trans.iter_mut().zip(&g.transitions).for_each(|(a, b)| *a += b * scale);
            for (buckets, row) in s.lexical.iter().zip(&g.words) {
                for &b in buckets {
                    let entry = lexical.entry(b).or_insert_with(|| vec![0.0; k]);
                    entry.iter_mut().zip(row).for_each(|(a, r)| *a += r * scale);
                }
            }
        }
        adam.next_step();
        adam.update(params, 0, &dense, self.dense_rate);
        let lexical_at = self.lexical_at();
        for (b, row) in lexical {
            adam.update(params, lexical_at + b as usize * k, &row, 1.0);
        }
        adam.update(params, self.transitions_at(), &trans, 1.0);
        loss
    }
}
