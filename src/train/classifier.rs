//! Fitting a document classifier: logistic regression (softmax, or a sigmoid per label
//! for multi-label data) on the standardised mean encoder features of each text plus
//! the TF-IDF of its hashed word uni- and bigrams, trained with Adam on mini-batches
//! and selected on the development macro-F1 (micro-F1 for multi-label).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::data::LabelledDocument;
use super::head_record;
use super::optim::{Adam, EpochLoop, Standardizer};
use crate::commands::train::{Example, Split, TrainContext};
use crate::decode::scores::{sigmoid, softmax};
use crate::eval::classification::{classification_metrics, prf};
use crate::model::trained::{save_head, HeadKind, HeadSpec, LexicalTable, HEAD_FORMAT};
use crate::text::lexical::{document_term_counts, inverse_document_frequency, tf_idf};

use super::MIN_EXAMPLES;

/// Refuses labels with fewer than [`MIN_EXAMPLES`] examples.
pub fn check_label_counts<'a>(path: &Path, labels: impl Iterator<Item = &'a Vec<String>>) -> Result<()> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in labels.flatten() {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    if let Some((label, n)) = counts.iter().find(|(_, &n)| n < MIN_EXAMPLES) {
        bail!("{}: label {label:?} has {n} training example(s); at least {MIN_EXAMPLES} are needed", path.display());
    }
    Ok(())
}

struct Prepared {
    dense: Vec<f32>,
    lexical: Vec<(u32, f32)>,
    /// Label indices.
    labels: Vec<usize>,
}

pub fn train(context: &TrainContext, split: Split<LabelledDocument>) -> Result<()> {
    let args = context.args;
    let multi_label = args.label_separator.is_some() || split.train.iter().any(|e| e.item.labels.len() > 1);
    let labels: Vec<String> =
        split.train.iter().flat_map(|e| e.item.labels.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
    if labels.len() < 2 {
        bail!("{}: a classifier needs at least two labels, found {labels:?}", args.train.display());
    }
    check_label_counts(&args.train, split.train.iter().map(|e| &e.item.labels))?;
    let index =
        super::label_index(&labels, split.dev.iter().map(|e| (e.item.line, &e.item.labels[..])), "label", args)?;

    let buckets = args.lexical_buckets;
    let dim = split.train[0].features.dim;
    let counts = |examples: &[Example<LabelledDocument>]| -> Vec<Vec<(u32, f32)>> {
        examples
            .par_iter()
            .map(|e| if buckets > 0 { document_term_counts(&e.item.text, buckets) } else { Vec::new() })
            .collect()
    };
    let label_indices =
        |e: &Example<LabelledDocument>| -> Vec<usize> { e.item.labels.iter().map(|l| index[l.as_str()]).collect() };
    let (train_counts, dev_counts) = (counts(&split.train), counts(&split.dev));
    let inputs = Inputs::fit(split.train.iter().zip(&train_counts), dim, buckets);
    let train_set = inputs.prepare(split.train.iter().zip(&train_counts), label_indices);
    let dev_set = inputs.prepare(split.dev.iter().zip(&dev_counts), label_indices);

    let k = labels.len();
    let model = Model { k, dim, buckets, multi_label, dense_rate: args.dense_learning_rate / args.learning_rate };
    let log_path = context.staging.join("train-log.jsonl");
    let score_name = if multi_label { "micro_f1" } else { "macro_f1" };
    let epochs = |examples: usize| EpochLoop {
        learning_rate: args.learning_rate,
        max_epochs: args.epochs,
        patience: args.patience,
        score_name,
        log_path: &log_path,
        examples,
        batch_size: args.batch_size,
        seed: args.seed,
    };
    let mut adam = Adam::new(model.len(), args.learning_rate, args.l2);
    let fitted = epochs(train_set.len()).run(
        vec![0.0; model.len()],
        |params, learning_rate, batch| {
            adam.learning_rate = learning_rate;
            model.step(params, &mut adam, batch.iter().map(|&i| &train_set[i]))
        },
        |params| model.dev_score(params, &dev_set, &labels),
    )?;
    eprintln!("docclass: best epoch {}, dev {score_name} {:.4}", fitted.best_epoch, fitted.best_score);

    let (inputs, params) = if args.refit_with_dev {
        // Everything the inputs are computed from (standardisation, IDF) is refitted too.
        let all = || split.train.iter().chain(&split.dev).zip(train_counts.iter().chain(&dev_counts));
        let inputs = Inputs::fit(all(), dim, buckets);
        let all_set = inputs.prepare(all(), label_indices);
        let mut adam = Adam::new(model.len(), args.learning_rate, args.l2);
        let params = epochs(all_set.len()).replay(
            vec![0.0; model.len()],
            |params, learning_rate, batch| {
                adam.learning_rate = learning_rate;
                model.step(params, &mut adam, batch.iter().map(|&i| &all_set[i]))
            },
            &fitted.selected_schedule(),
        )?;
        (inputs, params)
    } else {
        (inputs, fitted.params.clone())
    };
    let Inputs { standardizer, idf } = inputs;

    let (dense, bias) = standardizer.fold(model.dense(&params), model.bias(&params));
    let spec = HeadSpec {
        format: HEAD_FORMAT.into(),
        kind: HeadKind::DocumentClassifier,
        name: super::head_name(args),
        labels: labels.clone(),
        multi_label,
        layers: context.layers.to_vec(),
        encoder: super::relative_encoder_path(context.staging, context.encoder_dir),
        encoder_fingerprint: context.encoder_fingerprint.to_string(),
        lexical_buckets: buckets,
        abbreviations: Vec::new(),
        training: head_record(context, &split.dev_source, split.train.len(), split.dev.len(), &fitted, score_name)?,
        weights_sha256: String::new(), // set by save_head
    };
    let f32_tensors: BTreeMap<&str, Vec<f32>> = [("dense", dense), ("bias", bias)].into_iter().collect();
    let lexical = LexicalTable::prune(model.lexical(&params), k, args.max_lexical_rows);
    let f16_tensors: BTreeMap<&str, Vec<f32>> = [("idf", idf)].into_iter().filter(|(_, v)| !v.is_empty()).collect();
    save_head(context.staging, &spec, &f32_tensors, &f16_tensors, &lexical)
}

/// What the classifier's inputs are computed with, fitted on its training examples:
/// the standardisation of the mean encoder features and the IDF of the lexical terms.
struct Inputs {
    standardizer: Standardizer,
    idf: Vec<f32>,
}

type WithCounts<'e, 'a> = (&'e Example<'a, LabelledDocument>, &'e Vec<(u32, f32)>);

impl Inputs {
    fn fit<'e, 'a: 'e>(examples: impl Iterator<Item = WithCounts<'e, 'a>> + Clone, dim: usize, buckets: usize) -> Self {
        let standardizer = Standardizer::fit(examples.clone().map(|(e, _)| e.features.mean(e.index)), dim);
        let idf =
            if buckets > 0 { inverse_document_frequency(examples.map(|(_, c)| &c[..]), buckets) } else { Vec::new() };
        Self { standardizer, idf }
    }

    fn prepare<'e, 'a: 'e>(
        &self,
        examples: impl Iterator<Item = WithCounts<'e, 'a>>,
        label_indices: impl Fn(&Example<LabelledDocument>) -> Vec<usize>,
    ) -> Vec<Prepared> {
        examples
            .map(|(e, c)| {
                let mut dense = vec![0.0; self.standardizer.mean.len()];
                self.standardizer.apply(e.features.mean(e.index), &mut dense);
                let lexical = if self.idf.is_empty() { Vec::new() } else { tf_idf(c, &self.idf) };
                Prepared { dense, lexical, labels: label_indices(e) }
            })
            .collect()
    }
}

/// Parameter layout: dense weights `[k, dim]`, bias `[k]`, lexical `[buckets, k]`.
struct Model {
    k: usize,
    dim: usize,
    buckets: usize,
    multi_label: bool,
    /// The dense weights' learning rate relative to the lexical weights'.
    dense_rate: f32,
}

impl Model {
    fn len(&self) -> usize {
        self.k * self.dim + self.k + self.buckets * self.k
    }

    fn dense<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[..self.k * self.dim]
    }

    fn bias<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[self.k * self.dim..self.k * self.dim + self.k]
    }

    fn lexical<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[self.k * self.dim + self.k..]
    }

    fn probabilities(&self, p: &[f32], x: &Prepared) -> Vec<f32> {
        let lexical_at = self.k * self.dim + self.k;
        let mut logits: Vec<f32> = self
            .dense(p)
            .chunks_exact(self.dim)
            .zip(self.bias(p))
            .map(|(w, b)| b + w.iter().zip(&x.dense).map(|(a, b)| a * b).sum::<f32>())
            .collect();
        for &(bucket, value) in &x.lexical {
            let row = &p[lexical_at + bucket as usize * self.k..lexical_at + (bucket as usize + 1) * self.k];
            logits.iter_mut().zip(row).for_each(|(l, w)| *l += value * w);
        }
        if self.multi_label {
            sigmoid(&logits)
        } else {
            softmax(&logits)
        }
    }

    /// One Adam step on a batch; returns the summed loss.
    fn step<'a>(&self, params: &mut [f32], adam: &mut Adam, batch: impl Iterator<Item = &'a Prepared>) -> f64 {
        let (k, dim) = (self.k, self.dim);
        let mut dense_grad = vec![0.0f32; k * dim + k];
        let mut lexical_grad: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        let mut loss = 0.0f64;
        let batch: Vec<&Prepared> = batch.collect();
        let scale = 1.0 / batch.len() as f32;
        for x in &batch {
            let probs = self.probabilities(params, x);
            let mut target = vec![0.0f32; k];
            for &l in &x.labels {
                target[l] = 1.0;
            }
            loss += if self.multi_label {
                probs
                    .iter()
                    .zip(&target)
                    .map(|(&p, &t)| -f64::from(if t > 0.0 { p } else { 1.0 - p }).max(1e-12).ln())
                    .sum::<f64>()
            } else {
                -f64::from(probs[x.labels[0]]).max(1e-12).ln()
            };
            let g: Vec<f32> = probs.iter().zip(&target).map(|(p, t)| (p - t) * scale).collect();
            for (y, &gy) in g.iter().enumerate() {
                for (d, &xd) in dense_grad[y * dim..(y + 1) * dim].iter_mut().zip(&x.dense) {
                    *d += gy * xd;
                }
                dense_grad[k * dim + y] += gy;
            }
            for &(bucket, value) in &x.lexical {
                let row = lexical_grad.entry(bucket).or_insert_with(|| vec![0.0; k]);
                row.iter_mut().zip(&g).for_each(|(r, gy)| *r += value * gy);
            }
        }
        adam.next_step();
        adam.update(params, 0, &dense_grad, self.dense_rate);
        let lexical_at = k * dim + k;
        for (bucket, row) in lexical_grad {
            adam.update(params, lexical_at + bucket as usize * k, &row, 1.0);
        }
        loss
    }

    fn dev_score(&self, params: &[f32], dev: &[Prepared], labels: &[String]) -> f64 {
        let probs: Vec<Vec<f32>> = dev.par_iter().map(|x| self.probabilities(params, x)).collect();
        if self.multi_label {
            let (mut tp, mut predicted, mut gold) = (0, 0, 0);
            for (p, x) in probs.iter().zip(dev) {
                for (l, &pl) in p.iter().enumerate() {
                    let (is_predicted, is_gold) = (pl >= 0.5, x.labels.contains(&l));
                    tp += usize::from(is_predicted && is_gold);
                    predicted += usize::from(is_predicted);
                    gold += usize::from(is_gold);
                }
            }
            prf(tp, predicted, gold).2
        } else {
            let gold: Vec<usize> = dev.iter().map(|x| x.labels[0]).collect();
            let predicted: Vec<usize> = probs.iter().map(|p| crate::decode::scores::argmax(p)).collect();
            classification_metrics(labels, &gold, &predicted).macro_f1
        }
    }
}
