//! Fitting a document classifier with its settings chosen by cross-validation on the
//! training data itself (a small development split gives noisy choices: 82 documents
//! for 9 labels on a set of 1,000 articles).
//!
//! Two linear models are fitted to convergence (L2 logistic regression, see
//! [`super::logistic`]), each on one half of what a document offers:
//! - **lexical**: TF-IDF of word uni- and bigrams beside character 2- to 5-grams (the
//!   classical baseline people already trust);
//! - **dense**: the standardised encoder features, pooled over windows by their mean,
//!   or by their mean and maximum (chosen by cross-validation when documents have more
//!   than one window).
//!
//! Each model's `C` is chosen on K blocked folds, and the two are stacked: the
//! combined logits are `α · dense + β · lexical + c`, with α, β and the per-label c
//! fitted on the out-of-fold logits (lowest log loss, which also calibrates the
//! scores). Both models are then refitted on all the data and folded into one linear
//! head, so inference and explanations see a plain linear classifier. Every head
//! reports the same folds' scores for lexical only, dense only and combined: whether
//! the encoder earns its cost on the user's own data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use half::f16;
use rayon::prelude::*;
use serde_json::json;

use super::data::LabelledDocument;
use super::logistic::{balanced_weights, example_loss, minimize, Fit, Linear, Row, Shape};
use super::optim::Standardizer;
use super::{decimal, head_record, Example, PoolingChoice, Split, TrainContext};
use crate::decode::scores::argmax;
use crate::eval::classification::{classification_metrics, prf};
use crate::logging;
use crate::model::trained::{save_head, DocumentPooling, HeadKind, HeadSpec, LexicalTable, HEAD_FORMAT};
use crate::text::lexical::LexicalScheme;

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

/// The `C` values tried for the lexical model (unit-length TF-IDF rows): the classical
/// baseline's grid shifted up by one step, as the blend's bias makes up for what the
/// smallest C was there for (frequent labels).
const LEXICAL_GRID: [f64; 5] = [1.0, 3.0, 10.0, 30.0, 100.0];
/// The `C` values tried for the dense model (hundreds of standardised features).
const DENSE_GRID: [f64; 5] = [0.0003, 0.001, 0.003, 0.01, 0.03];
/// Folds when --cross-validate is not given.
pub const DEFAULT_FOLDS: usize = 5;

/// One document's inputs before a fold's fitting: its pooled encoder features, its
/// lexical term counts and its labels.
struct Document<'e> {
    mean: &'e [f16],
    max: &'e [f16],
    counts: Vec<(u32, f32)>,
    labels: Vec<usize>,
}

impl Document<'_> {
    fn pooled(&self, pooling: DocumentPooling) -> Vec<f32> {
        let mut out: Vec<f32> = self.mean.iter().map(|x| x.to_f32()).collect();
        if pooling == DocumentPooling::MeanMax {
            out.extend(self.max.iter().map(|x| x.to_f32()));
        }
        out
    }
}

/// What a model's inputs are computed with, fitted on its training documents: the
/// standardisation of the pooled features, or the IDF of the terms and the columns
/// the terms that pass the minimum document frequency get.
enum Inputs {
    Dense { pooling: DocumentPooling, standardizer: Standardizer },
    Lexical { idf: Vec<f32>, columns: Vec<u32>, buckets_of_columns: Vec<u32> },
}

const NO_COLUMN: u32 = u32::MAX;

impl Inputs {
    fn dense(documents: &[&Document], pooling: DocumentPooling) -> Self {
        let rows: Vec<Vec<f16>> =
            documents.iter().map(|d| d.pooled(pooling).iter().map(|&x| f16::from_f32(x)).collect()).collect();
        let dim = rows.first().map_or(0, Vec::len);
        Inputs::Dense { pooling, standardizer: Standardizer::fit(rows.iter().map(|r| &r[..]), dim) }
    }

    fn lexical(documents: &[&Document], buckets: usize) -> Self {
        let idf = SCHEME.inverse_document_frequency(documents.iter().map(|d| &d.counts[..]), buckets);
        let mut columns = vec![NO_COLUMN; buckets];
        let mut buckets_of_columns = Vec::new();
        for (b, &v) in idf.iter().enumerate() {
            if v > 0.0 {
                columns[b] = buckets_of_columns.len() as u32;
                buckets_of_columns.push(b as u32);
            }
        }
        Inputs::Lexical { idf, columns, buckets_of_columns }
    }

    fn shape(&self, labels: usize, multi_label: bool) -> Shape {
        match self {
            Inputs::Dense { standardizer, .. } => {
                Shape { labels, dense: standardizer.mean.len(), sparse: 0, multi_label }
            }
            Inputs::Lexical { buckets_of_columns, .. } => {
                Shape { labels, dense: 0, sparse: buckets_of_columns.len(), multi_label }
            }
        }
    }

    fn row(&self, document: &Document) -> Row {
        let labels = document.labels.clone();
        match self {
            Inputs::Dense { pooling, standardizer } => {
                let pooled: Vec<f16> = document.pooled(*pooling).iter().map(|&x| f16::from_f32(x)).collect();
                let mut dense = vec![0.0; standardizer.mean.len()];
                standardizer.apply(&pooled, &mut dense);
                Row { dense, sparse: Vec::new(), labels }
            }
            Inputs::Lexical { idf, columns, .. } => {
                let sparse = SCHEME
                    .tf_idf(&document.counts, idf)
                    .into_iter()
                    .map(|(b, v)| (columns[b as usize], v))
                    .filter(|&(c, _)| c != NO_COLUMN)
                    .collect();
                Row { dense: Vec::new(), sparse, labels }
            }
        }
    }
}

/// The lexical features every head `train` writes reads.
const SCHEME: LexicalScheme = LexicalScheme::WORDS_AND_CHARS;

/// One of the settings cross-validation compares.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Setting {
    Lexical { c: f64 },
    Dense { pooling: DocumentPooling, c: f64 },
}

impl Setting {
    fn describe(&self) -> serde_json::Value {
        match self {
            Setting::Lexical { c } => json!({"model": "lexical", "c": c}),
            Setting::Dense { pooling, c } => json!({"model": "dense", "pooling": pooling, "c": c}),
        }
    }
}

/// The task: labels, single- or multi-label, and the score settings are chosen on.
struct Task<'l> {
    labels: &'l [String],
    multi_label: bool,
}

impl Task<'_> {
    fn score_name(&self) -> &'static str {
        if self.multi_label {
            "micro_f1"
        } else {
            "macro_f1"
        }
    }

    /// Macro-F1 of the argmax (micro-F1 of p ≥ 0.5 for multi-label) of `logits`.
    fn score(&self, logits: &[Vec<f32>], gold: &[&[usize]]) -> f64 {
        if self.multi_label {
            let (mut tp, mut predicted, mut total) = (0, 0, 0);
            for (l, g) in logits.iter().zip(gold) {
                for (label, &z) in l.iter().enumerate() {
                    let (is_predicted, is_gold) = (z >= 0.0, g.contains(&label));
                    tp += usize::from(is_predicted && is_gold);
                    predicted += usize::from(is_predicted);
                    total += usize::from(is_gold);
                }
            }
            prf(tp, predicted, total).2
        } else {
            let gold: Vec<usize> = gold.iter().map(|g| g[0]).collect();
            let predicted: Vec<usize> = logits.iter().map(|l| argmax(l)).collect();
            classification_metrics(self.labels, &gold, &predicted).macro_f1
        }
    }

    fn log_loss(&self, logits: &[Vec<f32>], gold: &[&[usize]]) -> f64 {
        let total: f64 = logits
            .iter()
            .zip(gold)
            .map(|(l, g)| example_loss(self.multi_label, &Linear::activate(self.multi_label, l), g))
            .sum();
        total / logits.len().max(1) as f64
    }
}

/// Out-of-fold logits and their scores: the mean over the folds and the log loss.
struct Scored {
    logits: Vec<Vec<f32>>,
    fold_scores: Vec<f64>,
    mean: f64,
    log_loss: f64,
}

impl Scored {
    fn summary(&self) -> serde_json::Value {
        json!({"mean": self.mean, "fold_scores": self.fold_scores, "log_loss": self.log_loss})
    }
}

/// One setting's out-of-fold logits as fitted, and scored after its own blend.
struct Evaluated {
    setting: Setting,
    raw: Vec<Vec<f32>>,
    blend: Blend,
    scored: Scored,
}

/// A blend of models' logits: `Σ weight_m · logits_m + c`, with the per-label bias c.
/// Over the two models it is the stacking; over one, it rescales and shifts that
/// model's logits, which is how each model alone is scored (so that the lexical-only,
/// dense-only and combined scores are measured alike).
#[derive(Clone, Debug)]
struct Blend {
    weights: Vec<f32>,
    bias: Vec<f32>,
    /// Whether every label weighed the same in the loss it was fitted on.
    balanced: bool,
}

impl Blend {
    fn logits(&self, parts: &[&[f32]]) -> Vec<f32> {
        let mut out = self.bias.clone();
        for (part, w) in parts.iter().zip(&self.weights) {
            out.iter_mut().zip(*part).for_each(|(o, z)| *o += w * z);
        }
        out
    }

    /// The weights and bias with the lowest (label-weighted) log loss of the blended
    /// logits of `models` (each: one logit row per example).
    fn fit(task: &Task, models: &[&[Vec<f32>]], gold: &[&[usize]], balanced: bool) -> Blend {
        let (k, m) = (task.labels.len(), models.len());
        let label_weights: Vec<f32> = if balanced {
            let rows: Vec<Row> =
                gold.iter().map(|g| Row { dense: vec![], sparse: vec![], labels: g.to_vec() }).collect();
            balanced_weights(&rows, k)
        } else {
            vec![1.0; k]
        };
        let n = gold.len().max(1) as f32;
        let mut objective = |p: &[f32], grad: &mut [f32]| -> f64 {
            let blend = Blend { weights: p[..m].to_vec(), bias: p[m..].to_vec(), balanced };
            grad.fill(0.0);
            let mut loss = 0.0f64;
            for (i, g) in gold.iter().enumerate() {
                let parts: Vec<&[f32]> = models.iter().map(|l| &l[i][..]).collect();
                let w = if task.multi_label { 1.0 } else { label_weights[g[0]] };
                let probs = Linear::activate(task.multi_label, &blend.logits(&parts));
                loss += f64::from(w) * example_loss(task.multi_label, &probs, g);
                for y in 0..k {
                    let dy = w * (probs[y] - f32::from(u8::from(g.contains(&y)))) / n;
                    for (gm, part) in grad[..m].iter_mut().zip(&parts) {
                        *gm += dy * part[y];
                    }
                    grad[m + y] += dy;
                }
            }
            loss / f64::from(n)
        };
        let mut start = vec![0.0f32; m + k];
        start[..m].fill(1.0 / m as f32);
        let p = minimize(start, 1e-6, &mut objective);
        Blend { weights: p[..m].to_vec(), bias: p[m..].to_vec(), balanced }
    }

    /// The better blend of `models`, fitted with and without balanced label weights
    /// (by the mean fold score), and its evaluation.
    fn choose(
        task: &Task,
        models: &[&[Vec<f32>]],
        gold: &[&[usize]],
        evaluate: impl Fn(Vec<Vec<f32>>) -> Scored,
    ) -> (Blend, Scored) {
        let options: &[bool] = if task.multi_label { &[false] } else { &[false, true] };
        options
            .iter()
            .map(|&balanced| {
                let blend = Blend::fit(task, models, gold, balanced);
                let logits = (0..gold.len())
                    .map(|i| blend.logits(&models.iter().map(|l| &l[i][..]).collect::<Vec<_>>()))
                    .collect();
                (blend, evaluate(logits))
            })
            .reduce(|a, b| if b.1.mean > a.1.mean { b } else { a })
            .expect("at least one option")
    }
}

pub fn train<'a>(context: &TrainContext, split: Split<'a, LabelledDocument>) -> Result<()> {
    let started = Instant::now();
    let args = context.config;
    let multi_label = args.classifier.multi_label || split.train.iter().any(|e| e.item.labels.len() > 1);
    let labels: Vec<String> =
        split.train.iter().flat_map(|e| e.item.labels.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
    if labels.len() < 2 {
        bail!("{}: a classifier needs at least two labels, found {labels:?}", args.train.display());
    }
    check_label_counts(&args.train, split.train.iter().map(|e| &e.item.labels))?;
    let index =
        super::label_index(&labels, split.dev.iter().map(|e| (e.item.line, &e.item.labels[..])), "label", args)?;
    let task = Task { labels: &labels, multi_label };
    let k = labels.len();
    let buckets = args.lexical_buckets;
    let document = |e: &&Example<'a, LabelledDocument>| -> Document<'a> {
        Document {
            mean: e.features.mean(e.index),
            max: e.features.max(e.index),
            counts: if buckets > 0 { SCHEME.term_counts(&e.item.text, buckets) } else { Vec::new() },
            labels: e.item.labels.iter().map(|l| index[l.as_str()]).collect(),
        }
    };
    // With --refit-with-dev the development data joins the data settings are chosen on
    // and the head is fitted on; else it only measures the finished head.
    let (fitted_on, held): (Vec<&Example<LabelledDocument>>, Vec<&Example<LabelledDocument>>) =
        if args.classifier.refit_with_dev {
            (split.train.iter().chain(&split.dev).collect(), Vec::new())
        } else {
            (split.train.iter().collect(), split.dev.iter().collect())
        };
    let documents: Vec<Document> = fitted_on.par_iter().map(document).collect();
    let held: Vec<Document> = held.par_iter().map(document).collect();

    let folds = args.classifier.folds;
    if folds < 2 || folds > documents.len() {
        bail!("--cross-validate: K must be between 2 and {}", documents.len());
    }
    let first_labels: Vec<usize> = documents.iter().map(|d| d.labels[0]).collect();
    let fold_members = blocked_folds(&first_labels, folds);
    if let Some(f) = fold_members.iter().position(Vec::is_empty) {
        bail!(
            "--cross-validate {folds}: fold {}/{folds} would hold out no document (labels with fewer documents than folds); use fewer folds",
            f + 1
        );
    }
    // Max pooling differs from the mean only where a document has several windows.
    let poolings: Vec<DocumentPooling> = match args.classifier.pooling {
        PoolingChoice::Mean => vec![DocumentPooling::Mean],
        PoolingChoice::MeanMax => vec![DocumentPooling::MeanMax],
        PoolingChoice::Auto if documents.iter().any(|d| d.mean != d.max) => {
            vec![DocumentPooling::Mean, DocumentPooling::MeanMax]
        }
        PoolingChoice::Auto => vec![DocumentPooling::Mean],
    };
    let mut settings: Vec<Vec<Setting>> =
        poolings.iter().map(|&pooling| DENSE_GRID.iter().map(|&c| Setting::Dense { pooling, c }).collect()).collect();
    if buckets > 0 {
        settings.push(LEXICAL_GRID.iter().map(|&c| Setting::Lexical { c }).collect());
    }

    // Out-of-fold logits of every setting; each grid runs from its smallest C up, each
    // fit starting from the one before.
    let n = documents.len();
    let mut oof: Vec<Vec<Vec<Vec<f32>>>> = settings.iter().map(|grid| vec![vec![Vec::new(); n]; grid.len()]).collect();
    // The training log: a line per fold, per setting, and the summary.
    let mut log_lines: Vec<serde_json::Value> = Vec::new();
    for (f, held_out) in fold_members.iter().enumerate() {
        let fold_started = Instant::now();
        let fit_part: Vec<&Document> =
            (0..n).filter(|i| held_out.binary_search(i).is_err()).map(|i| &documents[i]).collect();
        for (g, grid) in settings.iter().enumerate() {
            let inputs = inputs_for(&grid[0], &fit_part, buckets);
            let rows: Vec<Row> = fit_part.par_iter().map(|d| inputs.row(d)).collect();
            let held_rows: Vec<Row> = held_out.par_iter().map(|&i| inputs.row(&documents[i])).collect();
            let shape = inputs.shape(k, multi_label);
            let mut previous: Option<Linear> = None;
            for (s, setting) in grid.iter().enumerate() {
                let c = match setting {
                    Setting::Lexical { c } | Setting::Dense { c, .. } => *c,
                };
                let model = Fit { rows: &rows, shape, c, label_weights: None }.run(previous.as_ref());
                for (&i, row) in held_out.iter().zip(&held_rows) {
                    oof[g][s][i] = model.logits(row);
                }
                previous = Some(model);
            }
        }
        logging::info(
            "fold",
            &format!(
                "fold {}/{folds}: {} settings fitted ({:.1} s)",
                f + 1,
                settings.iter().map(Vec::len).sum::<usize>(),
                fold_started.elapsed().as_secs_f64()
            ),
            json!({"fold": f + 1, "folds": folds, "seconds": fold_started.elapsed().as_secs_f64()}),
        );
        log_lines.push(json!({"fold": f + 1, "folds": folds, "documents_held_out": held_out.len(), "seconds": fold_started.elapsed().as_secs_f64()}));
    }
    let gold: Vec<&[usize]> = documents.iter().map(|d| &d.labels[..]).collect();
    let evaluate = |logits: Vec<Vec<f32>>| -> Scored {
        let fold_scores: Vec<f64> = fold_members
            .iter()
            .map(|members| {
                let l: Vec<Vec<f32>> = members.iter().map(|&i| logits[i].clone()).collect();
                let g: Vec<&[usize]> = members.iter().map(|&i| gold[i]).collect();
                task.score(&l, &g)
            })
            .collect();
        let mean = fold_scores.iter().sum::<f64>() / folds as f64;
        let log_loss = task.log_loss(&logits, &gold);
        Scored { logits, fold_scores, mean, log_loss }
    };
    let mut evaluated: Vec<Evaluated> = Vec::new();
    for (grid, logits) in settings.iter().zip(oof) {
        for (&setting, raw) in grid.iter().zip(logits) {
            let (blend, scored) = Blend::choose(&task, &[&raw], &gold, evaluate);
            evaluated.push(Evaluated { setting, raw, blend, scored });
        }
    }
    // The best of each model: the highest mean score, ties to the lower log loss.
    let best = |lexical: bool| -> Option<&Evaluated> {
        evaluated.iter().filter(|e| matches!(e.setting, Setting::Lexical { .. }) == lexical).max_by(|a, b| {
            a.scored.mean.total_cmp(&b.scored.mean).then(b.scored.log_loss.total_cmp(&a.scored.log_loss))
        })
    };
    let dense_best = best(false).expect("dense settings are always tried");
    let lexical_best = best(true);
    warn_at_grid_edge(dense_best.setting, lexical_best.map(|e| e.setting));
    // The stacking: dense and lexical logits blended (the dense model alone without
    // lexical features).
    let (stack, combined) = match lexical_best {
        Some(lexical) => Blend::choose(&task, &[&dense_best.raw, &lexical.raw], &gold, evaluate),
        None => (dense_best.blend.clone(), evaluate(dense_best.scored.logits.clone())),
    };
    // The head is always the stacking: fitted for log loss on the out-of-fold logits, it
    // can give a useless half a weight near 0 itself. Choosing a half alone by the fold
    // scores was tried and dropped: on small or imbalanced data those scores are noisy
    // (macro-F1 over labels with a handful of documents per fold), and the choice lost
    // as often as it won on held-out folds of the book blurbs.
    let score_name = task.score_name();
    let model_summary = |e: &Evaluated| {
        let mut summary = e.scored.summary();
        summary["setting"] = e.setting.describe();
        summary["balanced"] = json!(e.blend.balanced);
        summary
    };
    let grid: Vec<serde_json::Value> = evaluated.iter().map(model_summary).collect();
    let cross_validation = json!({
        "folds": folds,
        "score": score_name,
        "how": "blocked: each label's documents in file order cut into K contiguous blocks",
        "fold_scores": combined.fold_scores,
        "mean": combined.mean,
        "combined": combined.summary(),
        "dense_only": model_summary(dense_best),
        "lexical_only": lexical_best.map(model_summary),
        "stack": {
            "weights": {"dense": decimal(stack.weights[0]), "lexical": stack.weights.get(1).map(|&w| decimal(w))},
            "label_bias": stack.bias.iter().map(|&b| decimal(b)).collect::<Vec<_>>(),
            "balanced": stack.balanced,
        },
        "grid": grid,
    });
    log_lines.extend(evaluated.iter().map(model_summary));
    log_lines.push(json!({"cross_validation": cross_validation.clone()}));
    let log: String = log_lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(context.staging.join(TRAIN_LOG), log)?;
    let show = |e: Option<&Evaluated>| e.map_or_else(|| "–".to_string(), |e| format!("{:.4}", e.scored.mean));
    logging::info(
        "cross_validation",
        &format!(
            "{folds}-fold cross-validation, mean {score_name}: lexical only {}, dense only {}, combined {:.4} (the head)",
            show(lexical_best),
            show(Some(dense_best)),
            combined.mean,
        ),
        cross_validation.clone(),
    );

    // The final head: both models refitted on all the documents, folded into one.
    let all: Vec<&Document> = documents.iter().collect();
    let (pooling, dense_c) = match dense_best.setting {
        Setting::Dense { pooling, c } => (pooling, c),
        Setting::Lexical { .. } => unreachable!("the dense model's best setting is dense"),
    };
    let dense_inputs = Inputs::dense(&all, pooling);
    let dense_model = refit(&dense_inputs, &all, k, multi_label, dense_c);
    let Inputs::Dense { standardizer, .. } = &dense_inputs else { unreachable!("dense inputs") };
    let (dense_weight, lexical_weight) = (stack.weights[0], stack.weights.get(1).copied().unwrap_or(0.0));
    let scaled_dense: Vec<f32> = dense_model.dense().iter().map(|w| w * dense_weight).collect();
    let mut bias: Vec<f32> = dense_model.bias().iter().zip(&stack.bias).map(|(b, c)| dense_weight * b + c).collect();
    let lexical_setting = lexical_best.map(|e| e.setting);
    let mut lexical_table = vec![0.0f32; if lexical_setting.is_some() { buckets * k } else { 0 }];
    let mut idf_tensor = Vec::new();
    if let Some(Setting::Lexical { c }) = lexical_setting {
        let lexical_inputs = Inputs::lexical(&all, buckets);
        let lexical_model = refit(&lexical_inputs, &all, k, multi_label, c);
        let Inputs::Lexical { idf, buckets_of_columns, .. } = lexical_inputs else { unreachable!("lexical inputs") };
        for (column, &b) in buckets_of_columns.iter().enumerate() {
            let weights = &lexical_model.sparse()[column * k..(column + 1) * k];
            for (t, w) in lexical_table[b as usize * k..(b as usize + 1) * k].iter_mut().zip(weights) {
                *t = lexical_weight * w;
            }
        }
        bias.iter_mut().zip(lexical_model.bias()).for_each(|(b, l)| *b += lexical_weight * l);
        idf_tensor = idf;
    }
    let (dense, bias) = standardizer.fold(&scaled_dense, &bias);
    // The head keeps the strongest lexical rows, as f16: measured against the full
    // table on the training documents, and the development data is scored as saved.
    let lexical = LexicalTable::prune(&lexical_table, k, args.max_lexical_rows);
    let mut saved_table = vec![0.0f32; lexical_table.len()];
    for (i, &b) in lexical.ids.iter().enumerate() {
        for (t, &w) in
            saved_table[b as usize * k..(b as usize + 1) * k].iter_mut().zip(&lexical.rows[i * k..(i + 1) * k])
        {
            *t = f16::from_f32(w).to_f32();
        }
    }
    let full = FoldedHead { dense: &dense, bias: &bias, lexical: &lexical_table, idf: &idf_tensor, k, pooling };
    let saved_idf: Vec<f32> = idf_tensor.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
    let saved = FoldedHead { lexical: &saved_table, idf: &saved_idf, ..full };
    let same_label = documents.par_iter().filter(|d| argmax(&full.logits(d)) == argmax(&saved.logits(d))).count();
    let touched_rows = lexical_table.chunks_exact(k.max(1)).filter(|r| r.iter().any(|&w| w != 0.0)).count();
    let storage = json!({
        "lexical_rows": touched_rows,
        "lexical_rows_kept": lexical.ids.len(),
        "same_label_on_training_documents": same_label as f64 / n as f64,
    });
    if lexical.ids.len() < touched_rows {
        logging::info(
            "lexical_rows",
            &format!(
                "the head keeps the {} strongest of {touched_rows} lexical rows (--max-lexical-rows); \
                 it gives the same label as the full table on {:.2}% of the training documents",
                lexical.ids.len(),
                100.0 * same_label as f64 / n as f64
            ),
            storage.clone(),
        );
    }
    let spec = HeadSpec {
        format: HEAD_FORMAT.into(),
        kind: HeadKind::DocumentClassifier,
        name: super::head_name(args),
        labels: labels.clone(),
        multi_label,
        layers: context.layers.to_vec(),
        encoder: super::relative_encoder_path(context.staging, context.encoder_dir),
        encoder_fingerprint: context.encoder_fingerprint.to_string(),
        lexical_buckets: if lexical_setting.is_some() { buckets } else { 0 },
        lexical_scheme: lexical_setting.map(|_| SCHEME),
        pooling,
        abbreviations: Vec::new(),
        training: {
            let mut fit = json!({
                "fit": "L2 logistic regression (L-BFGS) per model, C chosen by cross-validation, stacked on out-of-fold logits",
                "cross_validation": cross_validation,
                "refit_with_dev": args.classifier.refit_with_dev,
                "fit_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                "storage": storage,
            });
            if !held.is_empty() {
                let logits: Vec<Vec<f32>> = held.par_iter().map(|d| saved.logits(d)).collect();
                let gold: Vec<&[usize]> = held.iter().map(|d| &d.labels[..]).collect();
                let score = task.score(&logits, &gold);
                logging::info(
                    "dev_score",
                    &format!("development data ({}): {score_name} {score:.4}", split.dev_source),
                    json!({"score": score_name, "value": score, "documents": held.len()}),
                );
                fit["dev_score"] = json!({"name": score_name, "value": score});
            }
            head_record(context, &split.dev_source, split.train.len(), split.dev.len(), fit)?
        },
        weights_sha256: String::new(), // set by save_head
    };
    // A hand-written model card in the head folder is kept; else one is written.
    if !args.out.join(MODEL_CARD).exists() {
        let card = model_card(&spec, dense_best, lexical_best, &combined, &split.dev_source);
        std::fs::write(context.staging.join(MODEL_CARD), card)?;
    }
    let f32_tensors: BTreeMap<&str, Vec<f32>> = [("dense", dense), ("bias", bias)].into_iter().collect();
    let f16_tensors: BTreeMap<&str, Vec<f32>> =
        [("idf", idf_tensor)].into_iter().filter(|(_, v)| !v.is_empty()).collect();
    save_head(context.staging, &spec, &f32_tensors, &f16_tensors, &lexical)
}

/// The settings cross-validation compared, fold by fold.
const TRAIN_LOG: &str = "train-log.jsonl";

/// The model card `train` writes beside a head that has none.
const MODEL_CARD: &str = "README.md";

fn model_card(
    spec: &HeadSpec,
    dense: &Evaluated,
    lexical: Option<&Evaluated>,
    combined: &Scored,
    dev_source: &str,
) -> String {
    let training = &spec.training;
    let cv = &training["cross_validation"];
    let score = cv["score"].as_str().unwrap_or("score");
    let row = |name: &str, scored: Option<&Scored>, setting: String| match scored {
        Some(s) => format!(
            "| {name} | {:.4} | {} | {:.4} | {setting} |\n",
            s.mean,
            s.fold_scores.iter().map(|f| format!("{f:.4}")).collect::<Vec<_>>().join(" / "),
            s.log_loss
        ),
        None => format!("| {name} | – | – | – | lexical features switched off |\n"),
    };
    let setting = |e: &Evaluated| {
        let weighting = if e.blend.balanced { ", labels weighted alike" } else { "" };
        match e.setting {
            Setting::Lexical { c } => format!("C = {c}{weighting}"),
            Setting::Dense { pooling: DocumentPooling::Mean, c } => format!("mean of the windows, C = {c}{weighting}"),
            Setting::Dense { pooling: DocumentPooling::MeanMax, c } => {
                format!("mean and maximum of the windows, C = {c}{weighting}")
            }
        }
    };
    let mut card = format!(
        "# {name}\n\nA document classifier trained by `docclass train` (written by it; replace this file with your \
         own card and retraining keeps yours).\n\n- **Labels** ({n}): {labels}\n- **Data**: `{train}` ({examples} \
         documents); development data: {dev_source}\n- **Encoder layers** {layers:?}, fingerprint `{fingerprint}…`\n\
         - **Command**: `{command}`\n\n## What each half adds\n\n{folds}-fold cross-validation on the training data \
         (blocked: each label's documents in file order cut into contiguous blocks), {score} by fold, on the same folds \
         for each model. The head `classify` runs is the combination, fitted for the lowest log loss on the \
         out-of-fold logits.\n\n| model | mean {score} | folds | log loss | chosen \
         setting |\n| --- | --- | --- | --- | --- |\n",
        name = spec.name,
        n = spec.labels.len(),
        labels = spec.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", "),
        train = training["train"]["path"].as_str().unwrap_or("?"),
        examples = training["train_examples"],
        layers = spec.layers,
        fingerprint = &spec.encoder_fingerprint[..12.min(spec.encoder_fingerprint.len())],
        command = training["command"].as_str().unwrap_or("?"),
        folds = cv["folds"],
    );
    card += &row(
        "lexical only (word and character n-gram TF-IDF)",
        lexical.map(|e| &e.scored),
        lexical.map_or(String::new(), setting),
    );
    card += &row("dense only (encoder features)", Some(&dense.scored), setting(dense));
    let weights = &cv["stack"]["weights"];
    card += &row(
        "combined",
        Some(combined),
        format!("dense weight {}, lexical weight {}", weights["dense"], weights["lexical"]),
    );
    if let Some(dev) = training.get("dev_score") {
        card += &format!(
            "\nOn the development data the head scores {} {}.\n",
            dev["name"].as_str().unwrap_or(score),
            dev["value"]
        );
    }
    card
}

fn inputs_for(setting: &Setting, documents: &[&Document], buckets: usize) -> Inputs {
    match setting {
        Setting::Lexical { .. } => Inputs::lexical(documents, buckets),
        Setting::Dense { pooling, .. } => Inputs::dense(documents, *pooling),
    }
}

/// Fits one model on all `documents`, reaching `c` along the grid below it (each fit
/// starting from the one before, as in cross-validation).
fn refit(inputs: &Inputs, documents: &[&Document], k: usize, multi_label: bool, c: f64) -> Linear {
    let rows: Vec<Row> = documents.par_iter().map(|d| inputs.row(d)).collect();
    let shape = inputs.shape(k, multi_label);
    let grid: &[f64] = if matches!(inputs, Inputs::Lexical { .. }) { &LEXICAL_GRID } else { &DENSE_GRID };
    let mut model: Option<Linear> = None;
    for &step in grid.iter().filter(|&&g| g <= c) {
        model = Some(Fit { rows: &rows, shape, c: step, label_weights: None }.run(model.as_ref()));
    }
    model.expect("c is on its grid")
}

/// A chosen C at the end of its grid may mean the grid is too narrow for this data.
fn warn_at_grid_edge(dense: Setting, lexical: Option<Setting>) {
    let edge = |c: f64, grid: &[f64]| c == grid[0] || c == grid[grid.len() - 1];
    for (setting, grid) in [(Some(dense), &DENSE_GRID[..]), (lexical, &LEXICAL_GRID[..])] {
        if let Some(setting @ (Setting::Lexical { c } | Setting::Dense { c, .. })) = setting {
            if edge(c, grid) {
                logging::warning(
                    "c_at_grid_edge",
                    &format!("cross-validation chose C = {c} at the end of the grid {grid:?}"),
                    json!({"setting": setting.describe()}),
                );
            }
        }
    }
}

/// The saved head's function, for scoring the development data: dense weights on raw
/// pooled features, bias, lexical table by bucket, IDF.
#[derive(Clone, Copy)]
struct FoldedHead<'a> {
    dense: &'a [f32],
    bias: &'a [f32],
    lexical: &'a [f32],
    idf: &'a [f32],
    k: usize,
    pooling: DocumentPooling,
}

impl FoldedHead<'_> {
    fn logits(&self, document: &Document) -> Vec<f32> {
        let pooled = document.pooled(self.pooling);
        let mut logits: Vec<f32> = self
            .dense
            .chunks_exact(pooled.len())
            .zip(self.bias)
            .map(|(w, b)| b + w.iter().zip(&pooled).map(|(a, x)| a * x).sum::<f32>())
            .collect();
        if !self.idf.is_empty() {
            for (b, v) in SCHEME.tf_idf(&document.counts, self.idf) {
                let row = &self.lexical[b as usize * self.k..(b as usize + 1) * self.k];
                logits.iter_mut().zip(row).for_each(|(l, w)| *l += v * w);
            }
        }
        logits
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
    fn stacking_weighs_the_informative_model() {
        // The lexical logits know the label, the dense ones are noise: β ≫ |α|.
        let labels = ["a".to_string(), "b".to_string()];
        let task = Task { labels: &labels, multi_label: false };
        let gold_labels: Vec<Vec<usize>> = (0..40).map(|i| vec![i % 2]).collect();
        let gold: Vec<&[usize]> = gold_labels.iter().map(|g| &g[..]).collect();
        let lexical: Vec<Vec<f32>> = gold_labels
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let sure = if i % 10 == 0 { -1.0 } else { 1.0 };
                if g[0] == 0 {
                    vec![sure, -sure]
                } else {
                    vec![-sure, sure]
                }
            })
            .collect();
        let dense: Vec<Vec<f32>> =
            (0..40).map(|i| if (i / 2) % 2 == 0 { vec![1.0, -1.0] } else { vec![-1.0, 1.0] }).collect();
        let blend = Blend::fit(&task, &[&dense, &lexical], &gold, false);
        assert!(blend.weights[1] > 0.5 && blend.weights[0].abs() < 0.2 * blend.weights[1], "{blend:?}");
    }
}
