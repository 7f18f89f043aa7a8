//! Fitting a document classifier: logistic regression (softmax, or a sigmoid per label
//! for multi-label data) on the standardised mean encoder features of each text plus
//! the TF-IDF of its hashed word uni- and bigrams, trained with Adam on mini-batches
//! and selected on the development macro-F1 (micro-F1 for multi-label). Its scores are
//! calibrated by a temperature fitted on the development data; blocked cross-validation
//! of the selected run can estimate how it generalises.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Result};
use rayon::prelude::*;
use serde_json::json;

use super::data::LabelledDocument;
use super::head_record;
use super::optim::{Adam, EpochLoop, Standardizer};
use crate::commands::train::{Example, Split, TrainContext};
use crate::decode::scores::{sigmoid, softmax};
use crate::eval::classification::{classification_metrics, prf};
use crate::logging;
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

/// The temperatures searched (logits divided by at most 10 or at least 0.1).
const TEMPERATURE_RANGE: (f32, f32) = (0.1, 10.0);

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
    let fitted = epochs(train_set.len()).run(
        vec![0.0; model.len()],
        model.adam_steps(&train_set, args.learning_rate, args.l2),
        |params| model.dev_score(params, &dev_set, &labels),
    )?;
    logging::info(
        "selected",
        &format!("best epoch {}, dev {score_name} {:.4}", fitted.best_epoch, fitted.best_score),
        json!({"best_epoch": fitted.best_epoch, "dev_score": fitted.best_score, "score": score_name}),
    );
    let temperature = if args.no_temperature {
        1.0
    } else {
        let temperature = model.fit_temperature(&fitted.params, &dev_set);
        logging::info(
            "temperature",
            &format!("temperature {temperature:.3} (fitted on dev: lowest log loss)"),
            json!({"temperature": temperature}),
        );
        if !(TEMPERATURE_RANGE.0 * 1.01..=TEMPERATURE_RANGE.1 / 1.01).contains(&temperature) {
            logging::warning(
                "temperature_at_limit",
                &format!(
                    "the temperature is at the end of its range {TEMPERATURE_RANGE:?}: the dev data may be too small \
                     or too easy to calibrate on (--no-temperature leaves the scores as trained)"
                ),
                json!({"temperature": temperature}),
            );
        }
        temperature
    };

    // Training and development examples in file order, for the refit and the folds.
    let all: Vec<WithCounts> =
        split.train.iter().chain(&split.dev).zip(train_counts.iter().chain(&dev_counts)).collect();
    let schedule = fitted.selected_schedule();
    // Fits standardisation, IDF and weights on `examples`, replaying the selected epochs.
    let replay = |examples: &[WithCounts], what: &str| -> Result<(Inputs, Vec<f32>)> {
        let inputs = Inputs::fit(examples.iter().copied(), dim, buckets);
        let set = inputs.prepare(examples.iter().copied(), label_indices);
        let params = epochs(set.len()).replay(
            vec![0.0; model.len()],
            model.adam_steps(&set, args.learning_rate, args.l2),
            &schedule,
            what,
        )?;
        Ok((inputs, params))
    };

    let cross_validation = match args.cross_validate {
        Some(k) if k < 2 || k > all.len() => bail!("--cross-validate: K must be between 2 and {}", all.len()),
        Some(k) => {
            let mut scores = Vec::with_capacity(k);
            let first_labels: Vec<usize> = all.iter().map(|(e, _)| label_indices(e)[0]).collect();
            for (f, held_out) in blocked_folds(&first_labels, k).iter().enumerate() {
                let what = format!("fold {}/{k}", f + 1);
                if held_out.is_empty() {
                    bail!("--cross-validate {k}: {what} would hold out no document (labels with fewer documents than folds); use fewer folds");
                }
                let fit: Vec<WithCounts> =
                    (0..all.len()).filter(|i| held_out.binary_search(i).is_err()).map(|i| all[i]).collect();
                let (inputs, params) = replay(&fit, &what)?;
                let held_set = inputs.prepare(held_out.iter().map(|&i| all[i]), label_indices);
                let score = model.dev_score(&params, &held_set, &labels);
                logging::info(
                    "fold",
                    &format!("{what}: held-out {score_name} {score:.4} ({} documents)", held_set.len()),
                    json!({"fold": f + 1, "folds": k, "score": score, "documents": held_set.len()}),
                );
                scores.push(score);
            }
            let mean = scores.iter().sum::<f64>() / k as f64;
            let summary = json!({"folds": k, "score": score_name, "fold_scores": scores, "mean": mean});
            logging::info(
                "cross_validation",
                &format!("{k}-fold blocked cross-validation: mean {score_name} {mean:.4}"),
                summary.clone(),
            );
            Some(summary)
        }
        None => None,
    };

    let (inputs, mut params) = if args.refit_with_dev {
        // Everything the inputs are computed from (standardisation, IDF) is refitted too.
        replay(&all, "refit")?
    } else {
        (inputs, fitted.params.clone())
    };
    let Inputs { standardizer, idf } = inputs;
    // Every part of the logits is linear in the weights, so the temperature is folded
    // into them and inference needs nothing new. With --refit-with-dev the refitted head
    // gets the selected run's temperature (dev is in its training data).
    params.iter_mut().for_each(|w| *w /= temperature);

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
        training: {
            let mut record =
                head_record(context, &split.dev_source, split.train.len(), split.dev.len(), &fitted, score_name)?;
            record["temperature"] = json!(temperature);
            if let Some(cv) = cross_validation {
                record["cross_validation"] = cv;
            }
            record
        },
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

/// `k` folds of examples whose (first) labels are `labels` (indices, ascending): each
/// label's examples, in order, cut into `k` contiguous blocks, block `f` of every label
/// going to fold `f`.
fn blocked_folds(labels: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut by_label: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        by_label.entry(label).or_default().push(i);
    }
    let mut folds = vec![Vec::new(); k];
    for positions in by_label.values() {
        let n = positions.len();
        for (f, fold) in folds.iter_mut().enumerate() {
            fold.extend(&positions[f * n / k..(f + 1) * n / k]);
        }
    }
    folds.iter_mut().for_each(|fold| fold.sort_unstable());
    folds
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
        self.activate(&self.logits(p, x))
    }

    fn activate(&self, logits: &[f32]) -> Vec<f32> {
        if self.multi_label {
            sigmoid(logits)
        } else {
            softmax(logits)
        }
    }

    fn logits(&self, p: &[f32], x: &Prepared) -> Vec<f32> {
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
        logits
    }

    /// The negative log-likelihood of an example's labels under `probs`.
    fn example_loss(&self, probs: &[f32], x: &Prepared) -> f64 {
        if self.multi_label {
            probs
                .iter()
                .enumerate()
                .map(|(l, &p)| -f64::from(if x.labels.contains(&l) { p } else { 1.0 - p }).max(1e-12).ln())
                .sum()
        } else {
            -f64::from(probs[x.labels[0]]).max(1e-12).ln()
        }
    }

    /// The temperature T (logits divided by it) with the lowest log loss on `dev`:
    /// golden-section search over ln T within [`TEMPERATURE_RANGE`], where the loss is
    /// unimodal. Dev data the head separates perfectly would drive T to 0; the range
    /// bounds how far the scores are sharpened.
    fn fit_temperature(&self, params: &[f32], dev: &[Prepared]) -> f32 {
        let logits: Vec<Vec<f32>> = dev.par_iter().map(|x| self.logits(params, x)).collect();
        let loss_at = |log_t: f64| {
            let t = log_t.exp() as f32;
            let total: f64 = logits
                .iter()
                .zip(dev)
                .map(|(l, x)| self.example_loss(&self.activate(&l.iter().map(|v| v / t).collect::<Vec<_>>()), x))
                .sum();
            total / dev.len().max(1) as f64
        };
        let ratio = (5f64.sqrt() - 1.0) / 2.0;
        let (mut a, mut b) = (f64::from(TEMPERATURE_RANGE.0).ln(), f64::from(TEMPERATURE_RANGE.1).ln());
        let (mut c, mut d) = (b - ratio * (b - a), a + ratio * (b - a));
        let (mut loss_c, mut loss_d) = (loss_at(c), loss_at(d));
        while b - a > 1e-4 {
            if loss_c < loss_d {
                (b, d, loss_d) = (d, c, loss_c);
                c = b - ratio * (b - a);
                loss_c = loss_at(c);
            } else {
                (a, c, loss_c) = (c, d, loss_d);
                d = a + ratio * (b - a);
                loss_d = loss_at(d);
            }
        }
        ((a + b) / 2.0).exp() as f32
    }

    /// The training step for an epoch loop over `set`: one Adam step per batch of
    /// indices, at the loop's learning rate, returning the batch's summed loss.
    fn adam_steps<'a>(
        &'a self,
        set: &'a [Prepared],
        learning_rate: f32,
        l2: f32,
    ) -> impl FnMut(&mut Vec<f32>, f32, &[usize]) -> f64 + 'a {
        let mut adam = Adam::new(self.len(), learning_rate, l2);
        move |params, learning_rate, batch| {
            adam.learning_rate = learning_rate;
            self.step(params, &mut adam, batch.iter().map(|&i| &set[i]))
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
            loss += self.example_loss(&probs, x);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_contiguous_blocks_of_each_label() {
        // Label 0 at positions 0-5, label 1 at 6-9: each cut into 2 blocks.
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1];
        assert_eq!(blocked_folds(&labels, 2), vec![vec![0, 1, 2, 6, 7], vec![3, 4, 5, 8, 9]]);
        // Interleaved labels keep their own order.
        assert_eq!(blocked_folds(&[0, 1, 0, 1, 0, 1], 3), vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
    }

    #[test]
    fn temperature_matches_the_closed_form() {
        // Two labels, one feature x = ±1, logits (5x, -5x): P(label 0 | x = 1) = σ(10 / T).
        // Four in five examples agree with the sign, so the best T has σ(10 / T) = 0.8,
        // T = 10 / ln 4.
        let model = Model { k: 2, dim: 1, buckets: 0, multi_label: false, dense_rate: 1.0 };
        let params = vec![5.0, -5.0, 0.0, 0.0];
        let example = |x: f32, label: usize| Prepared { dense: vec![x], lexical: Vec::new(), labels: vec![label] };
        let dev: Vec<Prepared> = (0..10)
            .map(|i| {
                let x = if i % 2 == 0 { 1.0 } else { -1.0 };
                let agrees = i < 8;
                example(x, usize::from((x > 0.0) != agrees))
            })
            .collect();
        let t = model.fit_temperature(&params, &dev);
        assert!((t - 10.0 / 4f32.ln()).abs() < 1e-2, "{t}");
    }
}
